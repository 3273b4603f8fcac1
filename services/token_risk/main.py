"""Entry point of the token-risk deployable: Kafka worker + gRPC server + /metrics in one process.

    python -m tidegate.services.token_risk        (or: tidegate text serve)

Configuration comes from ``TIDEGATE_*`` (shared) and ``TIDEGATE_TOKEN_RISK_*`` (this service) variables.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import threading

from typing import TYPE_CHECKING

from tidegate.services.token_risk.config import TokenRiskSettings
from tidegate.shared.config import Settings, get_settings
from tidegate.shared.observability import setup_logging, start_metrics_server

if TYPE_CHECKING:  # torch loads only when the service starts, not for `tidegate --help`
    from tidegate.services.token_risk.engine import RiskEngine

log = logging.getLogger("tidegate.token_risk")


def build_engine(settings: Settings, risk: TokenRiskSettings, protected_model=None) -> RiskEngine:
    """Load the head and connect to Redis. Without a ``protected_model`` (loaded lazily for text mode), the model's
    tokenizer is still loaded for exact character offsets, unless ``exact_char_offsets`` is off."""
    from tidegate.services.token_risk.engine import RiskEngine
    from tidegate.services.token_risk.kelp.sld import load_head
    from tidegate.services.token_risk.sessions import SessionStore
    from tidegate.shared.redis_client import make_redis

    head, card = load_head(risk.head_dir)
    store = SessionStore(make_redis(settings), settings.redis_namespace, risk.session_ttl_s, risk.finished_ttl_s)
    tok = None
    if protected_model is None and risk.exact_char_offsets:
        tok = load_tokenizer(risk.protected_model)
    return RiskEngine(head, card, store, risk, protected_model=protected_model, tokenizer=tok)


def load_tokenizer(source: str | None):
    from pathlib import Path

    from transformers import AutoTokenizer

    from tidegate.services.token_risk.kelp.lm import default_gguf
    path = Path(source) if source else default_gguf()
    if path.suffix == ".gguf":
        return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    return AutoTokenizer.from_pretrained(path)


async def serve(settings: Settings, risk: TokenRiskSettings, kafka: bool = True, grpc_api: bool = True) -> None:
    from tidegate.services.token_risk.server import TokenRiskServicer
    from tidegate.services.token_risk.worker import ChunkHandler
    from tidegate.shared import topics
    from tidegate.shared.grpc_server import GrpcServer, Service
    from tidegate.shared.kafka import TopicConsumer, make_producer
    from tidegate.v1 import services_pb2, services_pb2_grpc

    engine = build_engine(settings, risk)
    producer = make_producer(settings)
    stop = threading.Event()
    worker_thread = None
    consumer = None
    if kafka:
        consumer = TopicConsumer(settings, topics.GEN_CHUNKS, risk.group_id, ChunkHandler(settings, engine, producer),
                                 producer=producer, service="token-risk")
        worker_thread = threading.Thread(target=consumer.run, args=(stop,), name="kafka-worker", daemon=True)
        worker_thread.start()
    try:
        if grpc_api:
            name = services_pb2.DESCRIPTOR.services_by_name["TokenRisk"].full_name
            servicer = TokenRiskServicer(engine, settings, producer)
            await GrpcServer(settings, [Service(services_pb2_grpc.add_TokenRiskServicer_to_server, servicer, name)]
                             ).serve()
        else:
            await asyncio.get_running_loop().run_in_executor(None, stop.wait)
    finally:
        stop.set()
        if worker_thread is not None:
            worker_thread.join(timeout=30)
            consumer.close()
        producer.flush()
        producer.close()


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    setup_logging(settings.log_level, settings.log_format)
    start_metrics_server(settings.metrics_port)
    asyncio.run(serve(settings, TokenRiskSettings(), kafka=not args.no_kafka, grpc_api=not args.no_grpc))
    return 0


def register(groups: dict[str, argparse._SubParsersAction]) -> None:
    p = groups["text"].add_parser(
        "serve", help="Run the token-risk service (Kafka worker + gRPC TokenRisk + /metrics).",
        description="Consume tidegate.gen-chunks.v1, keep per-session SLD state in Redis, publish a verdict per "
                    "chunk to tidegate.verdicts.v1, and serve TokenRisk.StreamGeneration over gRPC. "
                    "Configured by TIDEGATE_* and TIDEGATE_TOKEN_RISK_* environment variables.")
    p.add_argument("--no-kafka", action="store_true", help="gRPC only")
    p.add_argument("--no-grpc", action="store_true", help="Kafka worker only")
    p.set_defaults(func=run)


