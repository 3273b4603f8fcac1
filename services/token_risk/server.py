"""The gRPC side of the token-risk service: ``TokenRisk.StreamGeneration`` (bidi), same engine as the Kafka path."""
from __future__ import annotations

import asyncio
import logging

from tidegate.services.token_risk.engine import RiskEngine
from tidegate.shared import codec, topics
from tidegate.shared.config import Settings
from tidegate.shared.errors import InvalidArgument
from tidegate.shared.kafka import publish
from tidegate.v1 import services_pb2_grpc as sgrpc

log = logging.getLogger(__name__)


class TokenRiskServicer(sgrpc.TokenRiskServicer):
    """Streams one verdict per chunk (with ``stream.stop``); malformed chunks get an error verdict, not a hang-up.

    The engine is shared by every stream; one lock keeps its batches from interleaving. If a Kafka producer is given,
    verdicts are also published to ``tidegate.verdicts.v1`` so policy and audit see gRPC sessions too.
    """

    def __init__(self, engine: RiskEngine, settings: Settings, producer=None):
        self.engine = engine
        self.settings = settings
        self.producer = producer
        self._lock = asyncio.Lock()

    async def StreamGeneration(self, request_iterator, context):
        async for chunk in request_iterator:
            try:
                codec.validate(chunk)
            except codec.DecodeFailure as exc:
                raise InvalidArgument(str(exc)) from None
            async with self._lock:
                result = await asyncio.to_thread(self.engine.process, [chunk])
                outcome = result.outcomes[0]
                if outcome.duplicate:
                    continue  # the caller re-sent a chunk it already has a verdict for
                if self.producer is not None:
                    publish(self.producer, self.settings, topics.VERDICTS, outcome.verdict)
                await asyncio.to_thread(self.engine.commit_states, result)
            yield outcome.verdict
