import subprocess
import sys
import urllib.request
from pathlib import Path

from google.protobuf import descriptor_pb2

from tidegate.shared.observability import RECORDS, start_metrics_server
from tidegate.shared.stack import free_port
from tidegate.v1 import events_pb2, services_pb2

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_in_step_with_the_proto_files(tmp_path):
    """`make proto` output must be regenerated whenever protos/ changes (compared as descriptors, not text)."""
    out = tmp_path / "set.pb"
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'protos'}", f"--descriptor_set_out={out}",
                    *map(str, sorted((ROOT / "protos/tidegate/v1").glob("*.proto")))], check=True)
    fresh = {f.name: _without_json_names(f)
             for f in descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file}
    for module in (events_pb2, services_pb2):
        committed = descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)
        assert committed == fresh[committed.name], f"{committed.name}: run `make proto`"


def _without_json_names(file: descriptor_pb2.FileDescriptorProto) -> descriptor_pb2.FileDescriptorProto:
    """protoc's descriptor sets spell out default JSON names; generated code leaves them implicit."""
    def strip(messages):
        for message in messages:
            for f in message.field:
                f.ClearField("json_name")
            strip(message.nested_type)
    strip(file.message_type)
    return file


def test_metrics_endpoint_serves_tidegate_counters():
    port = free_port()
    start_metrics_server(port, host="127.0.0.1")
    RECORDS.labels("tidegate.test.v1", "ok").inc(3)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'tidegate_records_total{outcome="ok",topic="tidegate.test.v1"} 3.0' in body
