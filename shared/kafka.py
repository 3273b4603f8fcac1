"""Kafka plumbing shared by every worker: topic creation, an idempotent producer, and a consumer loop that commits
only after a batch is fully handled and sends poison records to the dead-letter topic.

Delivery is at-least-once: a crash between producing results and committing replays the batch, so handlers must be
idempotent (deterministic ids, ``last_seq`` guards). Outputs are flushed (acks=all) before the offsets are committed.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import CommitFailedError, KafkaError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata

from tidegate.shared import codec, topics
from tidegate.shared.config import Settings
from tidegate.shared.observability import BATCH_SECONDS, DEAD_LETTERS, RECORDS
from tidegate.v1 import events_pb2 as pb

log = logging.getLogger(__name__)


def topic_name(settings: Settings, name: str) -> str:
    return settings.kafka_topic_prefix + name


def client_config(settings: Settings) -> dict:
    """Connection options common to producers, consumers and the admin client."""
    cfg: dict = {"bootstrap_servers": settings.kafka_bootstrap.split(","),
                 "security_protocol": settings.kafka_security_protocol}
    if settings.kafka_sasl_mechanism:
        cfg.update(sasl_mechanism=settings.kafka_sasl_mechanism, sasl_plain_username=settings.kafka_sasl_username,
                   sasl_plain_password=settings.kafka_sasl_password)
    if settings.kafka_ssl_cafile:
        cfg["ssl_cafile"] = settings.kafka_ssl_cafile
    return cfg


def ensure_topics(settings: Settings, table: Iterable[topics.Topic] = topics.TOPICS) -> list[str]:
    """Create the topics that do not exist yet; returns the names created. Safe to call concurrently."""
    admin = KafkaAdminClient(client_id=f"{settings.kafka_client_id}-admin", **client_config(settings))
    try:
        existing = set(admin.list_topics())
        new = [NewTopic(topic_name(settings, t.name), t.partitions, settings.kafka_replication_factor,
                        topic_configs=dict(t.config))
               for t in table if topic_name(settings, t.name) not in existing]
        created = []
        for item in new:  # one by one: a race with another creator must not hide the others' results
            try:
                admin.create_topics([item])
                created.append(item.name)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        admin.close()


def make_producer(settings: Settings, **overrides) -> KafkaProducer:
    """acks=all + idempotence: a retried send is written once, in order, per partition."""
    cfg = dict(client_config(settings), client_id=f"{settings.kafka_client_id}-producer", acks="all",
               enable_idempotence=True, linger_ms=1, retries=2**31 - 1, max_in_flight_requests_per_connection=5)
    cfg.update(overrides)
    return KafkaProducer(**cfg)


def record_key(topic: topics.Topic, message: Message) -> bytes:
    value: object = message
    for part in topic.key.split("."):
        value = getattr(value, part)
    return str(value).encode()


def publish(producer: KafkaProducer, settings: Settings, name: str, message: Message,
            content_type: str = codec.PROTOBUF, key: bytes | None = None,
            headers: list[tuple[str, bytes]] | None = None):
    """Send one message to a table topic, keyed by the topic's key field; returns the send future."""
    table_topic = topics.topic(name)
    if not isinstance(message, table_topic.message):
        raise TypeError(f"{name} carries {table_topic.message.DESCRIPTOR.name}, not {message.DESCRIPTOR.name}")
    all_headers = [(codec.CONTENT_TYPE, content_type.encode())] + list(headers or [])
    return producer.send(topic_name(settings, name), value=codec.encode(message, content_type),
                         key=key if key is not None else record_key(table_topic, message), headers=all_headers)


@dataclass
class Inbound:
    """A consumed record and its decoded message."""
    record: object  # kafka.consumer.fetcher.ConsumerRecord
    message: Message


@dataclass
class Rejected:
    """A record a handler could not accept; it goes to the dead-letter topic with this reason."""
    inbound: Inbound
    reason: str
    kind: str = "validation"


def dead_letter(record, error: str, kind: str, service: str) -> pb.DeadLetter:
    failed_at = Timestamp()
    failed_at.GetCurrentTime()
    headers = {k: (v.decode("utf-8", "replace") if isinstance(v, (bytes, bytearray)) else str(v))
               for k, v in (record.headers or [])}
    return pb.DeadLetter(source_topic=record.topic, source_partition=record.partition, source_offset=record.offset,
                         key=record.key or b"", value=record.value or b"", headers=headers, error=error,
                         error_type=kind, service=service, failed_at=failed_at)


Handler = Callable[[list[Inbound]], Iterable[Rejected] | None]


class TopicConsumer:
    """Consume one table topic in a consumer group and hand decoded batches to ``handle``.

    Per poll: decode every record (undecodable ones go to the DLQ), call ``handle`` once with the good ones (it may
    return ``Rejected`` items for the DLQ), flush the producer, then commit. If ``handle`` raises, nothing is committed:
    the consumer seeks back to the batch's first offsets and retries with exponential back-off (Redis down, broker
    hiccup), so no record is lost and the service keeps running.
    """

    def __init__(self, settings: Settings, name: str, group_id: str, handle: Handler, *,
                 producer: KafkaProducer | None = None, service: str = "tidegate", poll_timeout_ms: int = 100,
                 max_backoff_s: float = 5.0, **consumer_overrides):
        self.settings = settings
        self.topic = topics.topic(name)
        self.handle = handle
        self.service = service
        self.poll_timeout_ms = poll_timeout_ms
        self.max_backoff_s = max_backoff_s
        self.producer = producer or make_producer(settings)
        self._own_producer = producer is None
        cfg = dict(client_config(settings), client_id=f"{settings.kafka_client_id}-{service}", group_id=group_id,
                   enable_auto_commit=False, auto_offset_reset="earliest",
                   session_timeout_ms=settings.kafka_session_timeout_ms,
                   heartbeat_interval_ms=max(1000, settings.kafka_session_timeout_ms // 3),
                   max_poll_records=settings.kafka_max_poll_records,
                   max_poll_interval_ms=settings.kafka_max_poll_interval_ms,
                   fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
                   group_instance_id=settings.kafka_group_instance_id)
        cfg.update(consumer_overrides)
        self.consumer = KafkaConsumer(topic_name(settings, name), **cfg)
        self._failures = 0
        self._dead_lettered: set[tuple[int, int]] = set()  # (partition, offset) sent to the DLQ, not yet committed

    def _send_dead_letter(self, record, error: str, kind: str) -> None:
        if (record.partition, record.offset) in self._dead_lettered:
            return  # a retried batch meets it again: one dead letter is enough
        self._dead_lettered.add((record.partition, record.offset))
        log.warning("dead-lettered record", extra={"topic": record.topic, "partition": record.partition,
                                                     "offset": record.offset, "error": error, "error_type": kind})
        DEAD_LETTERS.labels(self.topic.name, kind).inc()
        publish(self.producer, self.settings, topics.DLQ, dead_letter(record, error, kind, self.service))

    def run_once(self) -> int:
        """Poll, handle and commit one batch; returns how many records it covered."""
        polled = self.consumer.poll(timeout_ms=self.poll_timeout_ms)
        records = [r for batch in polled.values() for r in batch]
        if not records:
            return 0
        started = time.perf_counter()
        try:
            good: list[Inbound] = []
            for record in records:
                try:
                    message = codec.decode(record.value, self.topic.message,
                                           codec.header_value(record.headers, codec.CONTENT_TYPE))
                except codec.DecodeFailure as exc:
                    self._send_dead_letter(record, str(exc), exc.kind)
                    continue
                good.append(Inbound(record, message))
            rejected = list(self.handle(good) or ()) if good else []
            for item in rejected:
                self._send_dead_letter(item.inbound.record, item.reason, item.kind)
            self.producer.flush()  # outputs durable (acks=all) before the offsets move
        except Exception:
            self._failures += 1
            backoff = min(self.max_backoff_s, 0.1 * 2 ** min(self._failures, 10))
            log.exception("batch failed; will retry from the same offsets",
                          extra={"topic": self.topic.name, "records": len(records), "backoff_s": backoff})
            RECORDS.labels(self.topic.name, "retried").inc(len(records))
            for tp, batch in polled.items():
                self.consumer.seek(tp, batch[0].offset)
            time.sleep(backoff)
            return 0
        self._failures = 0
        self.commit(polled)
        self._dead_lettered.clear()
        RECORDS.labels(self.topic.name, "ok").inc(len(records) - len(rejected))
        BATCH_SECONDS.labels(self.topic.name).observe(time.perf_counter() - started)
        return len(records)

    def commit(self, polled: dict) -> None:
        offsets = {tp: OffsetAndMetadata(batch[-1].offset + 1, "", -1) for tp, batch in polled.items()}
        try:
            self.consumer.commit(offsets)
        except CommitFailedError:  # the group rebalanced: the new owner replays these records; handlers are idempotent
            log.warning("commit failed after a rebalance; records will be redelivered", extra={"topic": self.topic.name})
        except KafkaError:
            log.exception("commit failed; records will be redelivered", extra={"topic": self.topic.name})

    def run(self, stop: threading.Event) -> None:
        log.info("consuming", extra={"topic": self.topic.name, "service": self.service})
        while not stop.is_set():
            self.run_once()

    def close(self) -> None:
        self.consumer.close()
        if self._own_producer:
            self.producer.flush()
            self.producer.close()


def read_records(settings: Settings, name: str, count: int, timeout: float = 30.0,
                 done: Callable[[list], bool] | None = None) -> list:
    """Read up to ``count`` raw records of a table topic from the beginning (or until ``done(records)``), with a
    throw-away consumer group. For tools, demos and tests; services use ``TopicConsumer``."""
    import uuid

    consumer = KafkaConsumer(topic_name(settings, name), group_id=f"reader-{uuid.uuid4().hex[:8]}",
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             session_timeout_ms=settings.kafka_session_timeout_ms,
                             heartbeat_interval_ms=max(1000, settings.kafka_session_timeout_ms // 3),
                             fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms, **client_config(settings))
    records: list = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < count and time.monotonic() < deadline and not (done and done(records)):
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
    finally:
        consumer.close()
    return records


def decode_record(record, name: str) -> Message:
    """Decode a raw record of a table topic, honouring its content-type header."""
    return codec.decode(record.value, topics.topic(name).message,
                        codec.header_value(record.headers, codec.CONTENT_TYPE))
