"""``tidegate demo``: the end-to-end tour on the embedded stack.

Today it proves the plumbing: every contract is published (binary and JSON), consumed and decoded from its topic, and a
malformed record is dead-lettered while the consumer keeps going.
"""
from __future__ import annotations

import logging
import sys
import time
import uuid

from tidegate.samples import sample_messages
from tidegate.shared import codec, topics
from tidegate.shared.config import get_settings
from tidegate.shared.kafka import TopicConsumer, decode_record, make_producer, publish, read_records, topic_name
from tidegate.shared.observability import setup_logging
from tidegate.shared.stack import Stack, StackError


def _say(text: str) -> None:
    print(text, flush=True)


def plumbing_tour(settings) -> bool:
    """Publish one sample per topic in both encodings plus a malformed chunk; check what arrives."""
    producer = make_producer(settings)
    samples = sample_messages()
    _say("\n== 1. Contracts: one sample per topic, as binary protobuf and as canonical JSON ==")
    for name, message in samples.items():
        for ctype in (codec.PROTOBUF, codec.JSON):
            publish(producer, settings, name, message, ctype)
    producer.send(topic_name(settings, topics.GEN_CHUNKS), key=b"demo-bad", value=b"\x08\x96\x01garbage")
    producer.flush()
    ok = True
    for name, message in samples.items():
        records = read_records(settings, name, 3 if name == topics.GEN_CHUNKS else 2)
        decoded = []
        for r in records:
            try:
                decoded.append(decode_record(r, name))
            except codec.DecodeFailure:  # the malformed chunk, dead-lettered below
                pass
        good = sum(d == message for d in decoded)
        ok &= good == 2
        _say(f"  {name:<30} {len(records)} record(s), {good}/2 samples decoded intact "
             f"[{message.DESCRIPTOR.name}]")

    _say("\n== 2. Dead letters: a consumer meets a malformed chunk and keeps going ==")
    handled: list[str] = []
    consumer = TopicConsumer(settings, topics.GEN_CHUNKS, f"demo-{uuid.uuid4().hex[:6]}",
                             lambda batch: handled.extend(i.message.session_id for i in batch), service="demo",
                             session_timeout_ms=settings.kafka_session_timeout_ms)
    deadline = time.monotonic() + 30
    while len(handled) < 2 and time.monotonic() < deadline:
        consumer.run_once()
    consumer.close()
    _say(f"  handled {len(handled)} good chunk(s) for sessions {sorted(set(handled))}")
    letters = [decode_record(r, topics.DLQ) for r in read_records(settings, topics.DLQ, 3)]
    fresh = [x for x in letters if x.service == "demo" and x.key == b"demo-bad"]
    for letter in fresh:
        _say(f"  DLQ <- {letter.source_topic}[{letter.source_partition}]@{letter.source_offset}: "
             f"{letter.error_type}: {letter.error}")
    ok &= len(handled) == 2 and len(fresh) == 1
    producer.close()
    return ok


def main(args) -> int:
    settings = get_settings()
    setup_logging("WARNING", settings.log_format)
    stack = Stack(settings.run_dir, broker=settings.broker)
    already_running = stack.status()["running"]
    _say(f"Tidegate demo: embedded stack ({settings.broker} broker + redis-server) in {stack.run_dir}")
    try:
        state = stack.up()
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    settings = settings.model_copy(update={"kafka_bootstrap": state.kafka_bootstrap, "redis_url": state.redis_url,
                                           "kafka_topic_prefix": f"demo-{uuid.uuid4().hex[:6]}."})
    try:
        from tidegate.shared.kafka import ensure_topics
        ensure_topics(settings)
        ok = plumbing_tour(settings)
    finally:
        if not (already_running or args.keep_stack):
            stack.down()
            _say("\nstack stopped")
    _say("\ndemo " + ("passed" if ok else "FAILED"))
    logging.shutdown()
    return 0 if ok else 1
