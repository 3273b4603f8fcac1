"""The Kafka side of the token-risk service: ``tidegate.gen-chunks.v1`` in, ``tidegate.verdicts.v1`` out."""
from __future__ import annotations

import logging

from kafka import KafkaProducer

from tidegate.services.token_risk.engine import RiskEngine
from tidegate.shared import topics
from tidegate.shared.config import Settings
from tidegate.shared.kafka import Inbound, Rejected, publish
from tidegate.shared.observability import RECORDS

log = logging.getLogger(__name__)


class ChunkHandler:
    """``TopicConsumer`` handler: one engine pass per polled batch, verdicts made durable before state moves."""

    def __init__(self, settings: Settings, engine: RiskEngine, producer: KafkaProducer):
        self.settings = settings
        self.engine = engine
        self.producer = producer

    def __call__(self, batch: list[Inbound]) -> list[Rejected]:
        result = self.engine.process([item.message for item in batch])
        rejected = []
        duplicates = 0
        for item, outcome in zip(batch, result.outcomes):
            if outcome.verdict is not None:
                publish(self.producer, self.settings, topics.VERDICTS, outcome.verdict)
            if outcome.rejected is not None:
                rejected.append(Rejected(item, outcome.rejected, outcome.rejected_kind))
            duplicates += outcome.duplicate
        if duplicates:
            RECORDS.labels(topics.GEN_CHUNKS, "duplicate").inc(duplicates)
        self.producer.flush()              # verdicts durable (acks=all) ...
        self.engine.commit_states(result)  # ... before the sessions advance; a crash in between replays safely
        return rejected
