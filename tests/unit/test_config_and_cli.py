import subprocess
import sys

from tidegate.cli import build_parser
from tidegate.shared.config import Settings


def test_settings_come_from_tidegate_prefixed_environment(monkeypatch):
    monkeypatch.setenv("TIDEGATE_KAFKA_BOOTSTRAP", "k1:9092,k2:9092")
    monkeypatch.setenv("TIDEGATE_GRPC_AUTH_TOKENS", '["a", "b"]')
    s = Settings()
    assert s.kafka_bootstrap == "k1:9092,k2:9092"
    assert s.grpc_auth_tokens == ["a", "b"]


def test_cli_help_lists_every_group():
    out = subprocess.run([sys.executable, "-m", "tidegate.cli", "--help"], capture_output=True, text=True, check=True)
    for group in ("stack", "data", "train", "eval", "text", "image", "demo"):
        assert group in out.stdout


def test_cli_rejects_a_missing_command_with_usage_error():
    proc = subprocess.run([sys.executable, "-m", "tidegate.cli", "stack"], capture_output=True, text=True)
    assert proc.returncode == 2 and "usage:" in proc.stderr


def test_stack_commands_are_registered():
    args = build_parser().parse_args(["stack", "up", "--broker", "tansu", "--kafka-port", "0"])
    assert args.broker == "tansu" and args.kafka_port == 0 and callable(args.func)


def test_cli_help_stays_fast_by_not_importing_torch():
    code = "import sys; from tidegate.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
