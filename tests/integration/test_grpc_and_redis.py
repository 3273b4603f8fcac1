"""The gRPC bootstrap (health, reflection, error mapping, TLS + bearer auth), Redis AUTH and the stack CLI."""
import asyncio
import subprocess
import sys

import grpc
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tidegate.shared.config import Settings
from tidegate.shared.errors import InvalidArgument, Unavailable
from tidegate.shared.grpc_server import GrpcServer, Service
from tidegate.shared.redis_client import make_redis
from tidegate.shared.stack import Stack, free_port, redis_command
from tidegate.v1 import events_pb2 as pb
from tidegate.v1 import services_pb2 as spb
from tidegate.v1 import services_pb2_grpc as sgrpc

pytestmark = pytest.mark.integration

POLICY = spb.DESCRIPTOR.services_by_name["Policy"].full_name


class FailingPolicy(sgrpc.PolicyServicer):
    """Raises the errors the interceptor must translate."""

    async def Evaluate(self, request, context):
        if not request.verdicts:
            raise InvalidArgument("at least one verdict is required")
        raise Unavailable("policy store is down")

    async def GetPolicy(self, request, context):
        return spb.PolicyDocument(tenant_id=request.tenant_id, policy_id="p")


def _server(**overrides) -> GrpcServer:
    settings = Settings(grpc_port=0, metrics_port=0, grpc_grace_s=1.0, **overrides)
    return GrpcServer(settings, [Service(sgrpc.add_PolicyServicer_to_server, FailingPolicy(), POLICY)])


def test_health_answers_serving_and_reflection_lists_the_services():
    async def scenario():
        server = _server()
        port = await server.start()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for name in ("", POLICY):
                reply = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            call = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
            names = [s.name async for reply in call for s in reply.list_services_response.service]
            assert POLICY in names and "grpc.health.v1.Health" in names
            await server.stop(grace=0.5)
            with pytest.raises(grpc.aio.AioRpcError):
                await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
    asyncio.run(scenario())


def test_handler_errors_map_to_status_codes():
    async def scenario():
        server = _server()
        port = await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = sgrpc.PolicyStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as bad:
                    await stub.Evaluate(spb.EvaluateRequest(), timeout=5)
                assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert "at least one verdict" in bad.value.details()
                with pytest.raises(grpc.aio.AioRpcError) as down:
                    await stub.Evaluate(spb.EvaluateRequest(verdicts=[pb.Verdict(verdict_id="v")]), timeout=5)
                assert down.value.code() == grpc.StatusCode.UNAVAILABLE
                with pytest.raises(grpc.aio.AioRpcError) as missing:
                    await stub.ReloadPolicy(spb.ReloadPolicyRequest(), timeout=5)
                assert missing.value.code() == grpc.StatusCode.UNIMPLEMENTED
        finally:
            await server.stop(grace=0)
    asyncio.run(scenario())


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")], check=True, capture_output=True)
    return d / "cert.pem", d / "key.pem"


def test_tls_with_bearer_tokens_rejects_unauthenticated_calls(tls_files):
    cert, key = tls_files

    async def scenario():
        server = _server(grpc_tls_cert=cert, grpc_tls_key=key, grpc_auth_tokens=["s3cret"])
        port = await server.start()
        creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        try:
            async with grpc.aio.secure_channel(f"localhost:{port}", creds) as channel:
                stub = sgrpc.PolicyStub(channel)
                for metadata in (None, (("authorization", "Bearer wrong"),)):
                    with pytest.raises(grpc.aio.AioRpcError) as denied:
                        await stub.GetPolicy(spb.GetPolicyRequest(tenant_id="acme"), metadata=metadata, timeout=5)
                    assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED
                ok = await stub.GetPolicy(spb.GetPolicyRequest(tenant_id="acme"),
                                          metadata=(("authorization", "Bearer s3cret"),), timeout=5)
                assert ok.tenant_id == "acme"
                # probes carry no token and must still work
                reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as plain:  # no TLS at all
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await sgrpc.PolicyStub(plain).GetPolicy(spb.GetPolicyRequest(), timeout=3)
                assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        finally:
            await server.stop(grace=0)
    asyncio.run(scenario())


def test_redis_auth_is_applied_from_settings(tmp_path):
    port = free_port()
    proc = subprocess.Popen(redis_command(port, tmp_path) + ["--requirepass", "pw1"], stdout=subprocess.DEVNULL)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        client = make_redis(Settings(redis_url=url, redis_password="pw1"))
        for _ in range(50):
            try:
                assert client.ping()
                break
            except redis.ConnectionError:
                import time
                time.sleep(0.1)
        client.set("k", "v")
        assert client.get("k") == b"v"
        with pytest.raises(redis.AuthenticationError):
            make_redis(Settings(redis_url=url, redis_password="wrong")).ping()
    finally:
        proc.terminate()
        proc.wait(10)


def test_stack_up_is_idempotent_and_down_stops_everything(tmp_path):
    run = [sys.executable, "-m", "tidegate.cli", "stack"]
    common = ["--run-dir", str(tmp_path), "--broker", "tansu", "--kafka-port", "0", "--redis-port", "0"]
    first = subprocess.run(run + ["up", *common], capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    pids = Stack(tmp_path).load().pids
    second = subprocess.run(run + ["up", *common], capture_output=True, text=True, timeout=120)
    assert second.returncode == 0 and Stack(tmp_path).load().pids == pids
    assert "TIDEGATE_KAFKA_BOOTSTRAP=127.0.0.1:" in second.stdout
    assert subprocess.run(run + ["status", *common], capture_output=True).returncode == 0
    assert subprocess.run(run + ["down", *common], capture_output=True).returncode == 0
    assert subprocess.run(run + ["status", *common], capture_output=True).returncode == 3
