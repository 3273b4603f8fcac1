"""Structured logs and Prometheus metrics, set up in one place for every service."""
from __future__ import annotations

import json
import logging
import sys
import time

from prometheus_client import Counter, Histogram, start_http_server

# Low-cardinality labels only (topic, service, outcome): never tenant or session ids.
RECORDS = Counter("tidegate_records_total", "Kafka records handled", ["topic", "outcome"])
DEAD_LETTERS = Counter("tidegate_dead_letters_total", "Records sent to the dead-letter topic", ["topic", "error_type"])
BATCH_SECONDS = Histogram("tidegate_batch_seconds", "Time to handle one polled batch", ["topic"],
                          buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
RPC_SECONDS = Histogram("tidegate_rpc_seconds", "gRPC handler time", ["method", "code"],
                        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; ``extra={...}`` fields become top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update({k: v for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_")})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("kafka", "urllib3"):  # client libraries log every reconnect at INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # kafka-python warns whenever its I/O loop waited on a busy CPU; not actionable for operators
    logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)


def start_metrics_server(port: int, host: str = "0.0.0.0") -> None:
    """Expose /metrics; port 0 disables it (tests, CLI runs)."""
    if port:
        start_http_server(port, addr=host)
