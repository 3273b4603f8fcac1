"""gRPC bootstrap shared by every service: ``grpc.aio`` server, health checking, reflection, error->status mapping,
optional TLS/mTLS and bearer-token auth, Prometheus timings and graceful shutdown.

A service's ``main`` builds its servicers and calls ``GrpcServer(settings, [...]).serve()``.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import inspect
import logging
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from tidegate.shared.config import Settings
from tidegate.shared.errors import status_code_for
from tidegate.shared.observability import RPC_SECONDS

log = logging.getLogger(__name__)

# Probes and tooling must work without a token (Kubernetes' gRPC probes send none).
UNAUTHENTICATED_SERVICES = (health.SERVICE_NAME, reflection.SERVICE_NAME, "grpc.reflection.v1.ServerReflection")


@dataclass
class Service:
    """One servicer to register: the generated ``add_XServicer_to_server`` function, the instance, its full name."""
    add_to_server: Callable[[Any, grpc.aio.Server], None]
    servicer: Any
    name: str


def _replace_behavior(handler: grpc.RpcMethodHandler, wrap: Callable[[Callable, bool], Callable]):
    """Return ``handler`` with its behaviour function wrapped; ``wrap(fn, response_streaming)``."""
    if handler.request_streaming and handler.response_streaming:
        return handler._replace(stream_stream=wrap(handler.stream_stream, True))
    if handler.request_streaming:
        return handler._replace(stream_unary=wrap(handler.stream_unary, False))
    if handler.response_streaming:
        return handler._replace(unary_stream=wrap(handler.unary_stream, True))
    return handler._replace(unary_unary=wrap(handler.unary_unary, False))


async def _abort_for(context: grpc.aio.ServicerContext, exc: Exception, method: str):
    code = status_code_for(exc)
    if code == grpc.StatusCode.INTERNAL:
        log.exception("unhandled error in %s", method)
        details = "internal error"  # never leak internals to callers
    else:
        details = str(exc) or code.name
    await context.abort(code, details)


@contextlib.asynccontextmanager
async def _mapped_errors(context: grpc.aio.ServicerContext, method: str):
    """Turn an exception from the handler into a status code, and time the call."""
    started, code = time.perf_counter(), "OK"
    try:
        yield
    except (grpc.aio.AbortError, asyncio.CancelledError):
        code = "ABORTED_BY_HANDLER"
        raise
    except Exception as exc:
        code = status_code_for(exc).name
        await _abort_for(context, exc, method)
    finally:
        RPC_SECONDS.labels(method, code).observe(time.perf_counter() - started)


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):
    """Exceptions become proper status codes (INVALID_ARGUMENT, UNAVAILABLE, ...); every call is timed."""

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method

        def wrap(fn, streaming):
            if streaming:
                async def stream_wrapper(request, context):
                    async with _mapped_errors(context, method):
                        result = fn(request, context)
                        if inspect.isasyncgen(result):
                            async for item in result:
                                yield item
                        else:  # a handler that writes with context.write()
                            await result
                return stream_wrapper

            async def unary_wrapper(request, context):
                async with _mapped_errors(context, method):
                    return await fn(request, context)
            return unary_wrapper

        return _replace_behavior(handler, wrap)


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Rejects calls without ``authorization: Bearer <token>`` naming one of the configured tokens."""

    def __init__(self, tokens: Sequence[str]):
        self._tokens = [t.encode() for t in tokens]

    def _authorized(self, metadata) -> bool:
        for key, value in metadata or ():
            if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
                offered = value[len("Bearer "):].encode()
                return any(hmac.compare_digest(offered, token) for token in self._tokens)
        return False

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        service = details.method.lstrip("/").split("/")[0]
        if handler is None or service in UNAUTHENTICATED_SERVICES or self._authorized(details.invocation_metadata):
            return handler

        def wrap(fn, streaming):
            async def deny(request, context):
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")
            if streaming:
                async def deny_stream(request, context):
                    await deny(request, context)
                    yield  # pragma: no cover - makes this an async generator
                return deny_stream
            return deny

        return _replace_behavior(handler, wrap)


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    if not settings.grpc_tls_cert:
        return None
    key = settings.grpc_tls_key.read_bytes() if settings.grpc_tls_key else None
    if key is None:
        raise ValueError("TIDEGATE_GRPC_TLS_CERT is set but TIDEGATE_GRPC_TLS_KEY is not")
    client_ca = settings.grpc_tls_client_ca.read_bytes() if settings.grpc_tls_client_ca else None
    return grpc.ssl_server_credentials([(key, settings.grpc_tls_cert.read_bytes())], root_certificates=client_ca,
                                       require_client_auth=client_ca is not None)


class GrpcServer:
    def __init__(self, settings: Settings, services: Sequence[Service], *, max_message_mb: int = 16):
        self.settings = settings
        self.services = list(services)
        interceptors: list[grpc.aio.ServerInterceptor] = []
        if settings.grpc_auth_tokens:
            interceptors.append(BearerTokenInterceptor(settings.grpc_auth_tokens))
        interceptors.append(ErrorMappingInterceptor())
        limit = max_message_mb * 1024 * 1024
        self.server = grpc.aio.server(interceptors=interceptors, options=[
            ("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)])
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        for service in self.services:
            service.add_to_server(service.servicer, self.server)
        reflection.enable_server_reflection(
            [s.name for s in self.services] + [health.SERVICE_NAME, reflection.SERVICE_NAME], self.server)
        self.port: int | None = None

    async def start(self) -> int:
        address = f"{self.settings.grpc_host}:{self.settings.grpc_port}"
        creds = server_credentials(self.settings)
        self.port = (self.server.add_secure_port(address, creds) if creds else self.server.add_insecure_port(address))
        await self.server.start()
        for name in ["", *(s.name for s in self.services)]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("gRPC serving", extra={"address": f"{self.settings.grpc_host}:{self.port}", "tls": creds is not None,
                                         "services": [s.name for s in self.services]})
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        """Report NOT_SERVING first (load balancers drain), then give in-flight calls ``grace`` seconds."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(self.settings.grpc_grace_s if grace is None else grace)

    async def serve(self) -> None:
        """Start, then run until SIGTERM/SIGINT."""
        await self.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("shutting down gRPC", extra={"grace_s": self.settings.grpc_grace_s})
        await self.stop()
