"""How the plug-in talks to the token-risk service: a gRPC bidi stream, or Kafka topics."""
from __future__ import annotations

import queue
import threading
from typing import Protocol

from tidegate.v1 import events_pb2 as pb


class Transport(Protocol):
    def open(self, session_id: str) -> None: ...
    def send(self, chunk: pb.TokenChunk) -> None: ...
    def poll(self, timeout: float = 0.0) -> list[pb.Verdict | pb.Action]: ...
    def close(self) -> None: ...


class GrpcTransport:
    """``TokenRisk.StreamGeneration``: chunks go up the stream, verdicts come back on a reader thread."""

    _END = object()

    def __init__(self, target: str, *, credentials=None, token: str | None = None, timeout_s: float = 600.0):
        self.target, self.credentials, self.timeout_s = target, credentials, timeout_s
        self.metadata = (("authorization", f"Bearer {token}"),) if token else None
        self._out: queue.Queue = queue.Queue()
        self._in: queue.Queue = queue.Queue()
        self._channel = None
        self._reader: threading.Thread | None = None
        self.error: Exception | None = None

    def open(self, session_id: str) -> None:
        import grpc

        from tidegate.v1 import services_pb2_grpc as sgrpc
        self._channel = (grpc.secure_channel(self.target, self.credentials) if self.credentials
                         else grpc.insecure_channel(self.target))
        stub = sgrpc.TokenRiskStub(self._channel)
        requests = iter(self._out.get, self._END)
        responses = stub.StreamGeneration(requests, metadata=self.metadata, timeout=self.timeout_s)

        def read():
            try:
                for verdict in responses:
                    self._in.put(verdict)
            except Exception as exc:  # surfaced to the caller through .error
                self.error = exc
        self._reader = threading.Thread(target=read, name=f"tidegate-verdicts-{session_id}", daemon=True)
        self._reader.start()

    def send(self, chunk: pb.TokenChunk) -> None:
        self._out.put(chunk)

    def poll(self, timeout: float = 0.0) -> list:
        items = []
        try:
            items.append(self._in.get(timeout=timeout) if timeout else self._in.get_nowait())
            while True:
                items.append(self._in.get_nowait())
        except queue.Empty:
            pass
        if not items and self.error is not None:
            raise self.error
        return items

    def close(self) -> None:
        self._out.put(self._END)
        if self._reader is not None:
            self._reader.join(timeout=10)
        if self._channel is not None:
            self._channel.close()


class KafkaTransport:
    """Publishes chunks to ``tidegate.gen-chunks.v1`` and follows this session's verdicts and actions.

    Verdicts and actions are keyed by the session id, so the plug-in reads only the one partition that can hold them.
    """

    def __init__(self, settings=None, *, follow_actions: bool = True):
        from tidegate.shared.config import get_settings
        self.settings = settings or get_settings()
        self.follow_actions = follow_actions
        self._producer = None
        self._consumer = None
        self._session = ""

    def open(self, session_id: str) -> None:
        from kafka import KafkaConsumer, TopicPartition
        from kafka.partitioner.default import murmur2

        from tidegate.shared import topics
        from tidegate.shared.kafka import client_config, make_producer, topic_name
        self._session = session_id
        self._producer = make_producer(self.settings, linger_ms=0)
        self._consumer = KafkaConsumer(enable_auto_commit=False, **client_config(self.settings))
        names = [topics.VERDICTS] + ([topics.ACTIONS] if self.follow_actions else [])
        assignment = []
        for name in names:
            full = topic_name(self.settings, name)
            partitions = sorted(self._consumer.partitions_for_topic(full) or [])
            if not partitions:
                raise RuntimeError(f"topic {full} does not exist")
            # the producer's default partitioner (murmur2 of the key, as the Java client) decides where it lands
            chosen = partitions[(murmur2(session_id.encode()) & 0x7FFFFFFF) % len(partitions)]
            assignment.append(TopicPartition(full, chosen))
        self._consumer.assign(assignment)
        # Start from "now": only this session's future verdicts matter.
        self._consumer.seek_to_end(*assignment)
        for tp in assignment:
            self._consumer.position(tp)

    def send(self, chunk: pb.TokenChunk) -> None:
        from tidegate.shared import topics
        from tidegate.shared.kafka import publish
        publish(self._producer, self.settings, topics.GEN_CHUNKS, chunk)
        self._producer.flush()

    def poll(self, timeout: float = 0.0) -> list:
        from tidegate.shared.kafka import decode_record
        out = []
        for tp, records in self._consumer.poll(timeout_ms=int(timeout * 1000)).items():
            name = tp.topic[len(self.settings.kafka_topic_prefix):]
            for record in records:
                message = decode_record(record, name)
                if message.subject.session_id == self._session or message.subject.id == self._session:
                    out.append(message)
        return out

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
        if self._producer is not None:
            self._producer.close()
