"""The Kafka contract on real brokers (every test runs on noida and on tansu)."""
import threading
import time

import pytest

from tidegate.samples import sample_messages
from tidegate.shared import codec, topics
from tidegate.shared.kafka import Rejected, TopicConsumer, decode_record, make_producer, publish, read_records
from tidegate.shared.kafka import topic_name
from tidegate.v1 import events_pb2 as pb

pytestmark = pytest.mark.integration


def _chunk(session: str, seq: int) -> pb.TokenChunk:
    return pb.TokenChunk(tenant_id="t", session_id=session, model_id="m", seq=seq, token_ids=[seq], text=f"<{seq}>")


def _drain(consumer: TopicConsumer, until, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while not until() and time.monotonic() < deadline:
        consumer.run_once()
    assert until(), "timed out"


def test_every_message_round_trips_through_the_broker_in_both_encodings(settings):
    producer = make_producer(settings)
    samples = sample_messages()
    for name, message in samples.items():
        publish(producer, settings, name, message, codec.PROTOBUF)
        publish(producer, settings, name, message, codec.JSON)
    producer.flush()
    for name, message in samples.items():
        records = read_records(settings, name, 2)
        assert len(records) == 2, name
        for record in records:
            assert decode_record(record, name) == message
        assert {codec.header_value(r.headers, codec.CONTENT_TYPE) for r in records} == {codec.PROTOBUF, codec.JSON}


def test_chunks_of_one_session_keep_their_order_across_a_multi_partition_topic(settings):
    assert topics.topic(topics.GEN_CHUNKS).partitions > 1
    producer = make_producer(settings)
    sessions = [f"s{i}" for i in range(8)]
    for seq in range(25):
        for session in sessions:
            publish(producer, settings, topics.GEN_CHUNKS, _chunk(session, seq))
    producer.flush()
    records = read_records(settings, topics.GEN_CHUNKS, 25 * len(sessions))
    assert len(records) == 25 * len(sessions)
    seen: dict[str, list[int]] = {}
    partitions: dict[str, set[int]] = {}
    for r in records:
        chunk = codec.decode(r.value, pb.TokenChunk)
        seen.setdefault(chunk.session_id, []).append(chunk.seq)
        partitions.setdefault(chunk.session_id, set()).add(r.partition)
    assert all(seqs == list(range(25)) for seqs in seen.values())
    assert all(len(p) == 1 for p in partitions.values())
    assert len({p for ps in partitions.values() for p in ps}) > 1, "sessions should spread over partitions"


def test_malformed_records_go_to_the_dlq_with_their_reason_and_the_consumer_keeps_going(settings):
    producer = make_producer(settings)
    raw_topic = topic_name(settings, topics.GEN_CHUNKS)
    publish(producer, settings, topics.GEN_CHUNKS, _chunk("a", 0))
    producer.send(raw_topic, key=b"a", value=b"\xff\x00not-protobuf")
    producer.send(raw_topic, key=b"a", value=b'{"tenantId": "t"}', headers=[("content-type", b"application/json")])
    publish(producer, settings, topics.GEN_CHUNKS, _chunk("a", 1))
    publish(producer, settings, topics.GEN_CHUNKS, _chunk("a", 2))
    producer.flush()

    handled: list[int] = []

    def handle(batch):
        for item in batch:
            if item.message.seq == 2:  # a handler may refuse a decodable record too
                yield Rejected(item, "seq 2 refused by the handler", "processing")
            else:
                handled.append(item.message.seq)

    consumer = TopicConsumer(settings, topics.GEN_CHUNKS, "dlq-test", handle, service="test")
    try:
        _drain(consumer, lambda: len(handled) == 2 and consumer._failures == 0)
    finally:
        consumer.close()
    assert handled == [0, 1]
    letters = [codec.decode(r.value, pb.DeadLetter) for r in read_records(settings, topics.DLQ, 3)]
    assert len(letters) == 3
    by_value = {letter.value: letter for letter in letters}
    garbage = by_value[b"\xff\x00not-protobuf"]
    assert garbage.error_type == "decode" and "not a valid protobuf TokenChunk" in garbage.error
    assert garbage.source_topic == raw_topic and garbage.key == b"a" and garbage.service == "test"
    invalid = by_value[b'{"tenantId": "t"}']
    assert invalid.error_type == "validation" and "session_id" in invalid.error
    assert invalid.headers["content-type"] == "application/json"
    refused = [x for x in letters if x.error_type == "processing"][0]
    assert codec.decode(refused.value, pb.TokenChunk).seq == 2 and "refused" in refused.error


def test_a_restarted_consumer_resumes_from_its_committed_offset_without_loss_or_skips(settings):
    producer = make_producer(settings)
    for seq in range(40):
        publish(producer, settings, topics.GEN_CHUNKS, _chunk("solo", seq))
    producer.flush()
    handled: list[int] = []

    def handle(batch):
        handled.extend(item.message.seq for item in batch)

    first = TopicConsumer(settings, topics.GEN_CHUNKS, "resume-test", handle, max_poll_records=10)
    _drain(first, lambda: len(handled) >= 10)
    first.close()
    upto = len(handled)
    assert handled == list(range(upto))

    for seq in range(40, 60):  # more arrives while no consumer runs
        publish(producer, settings, topics.GEN_CHUNKS, _chunk("solo", seq))
    producer.flush()
    second = TopicConsumer(settings, topics.GEN_CHUNKS, "resume-test", handle)
    try:
        _drain(second, lambda: len(handled) >= 60)
    finally:
        second.close()
    assert handled == list(range(60)), "the second consumer must start exactly where the first committed"


def test_a_failing_handler_commits_nothing_and_retries_the_same_records(settings):
    producer = make_producer(settings)
    for seq in range(5):
        publish(producer, settings, topics.GEN_CHUNKS, _chunk("flaky", seq))
    producer.flush()
    producer.send(topic_name(settings, topics.GEN_CHUNKS), key=b"flaky", value=b"\xffbroken")
    producer.flush()
    attempts, handled = [0], []

    def handle(batch):
        attempts[0] += 1
        if attempts[0] <= 2:
            raise ConnectionError("Redis is down")
        handled.extend(item.message.seq for item in batch)

    consumer = TopicConsumer(settings, topics.GEN_CHUNKS, "retry-test", handle)
    try:
        _drain(consumer, lambda: len(handled) >= 5)
    finally:
        consumer.close()
    assert handled == list(range(5)) and attempts[0] >= 3
    letters = read_records(settings, topics.DLQ, 2, timeout=5)
    assert len(letters) == 1, "a retried batch must not dead-letter the same record twice"


def test_consumer_run_loop_stops_on_request(settings):
    consumer = TopicConsumer(settings, topics.GEN_CHUNKS, "stop-test", lambda batch: None)
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,))
    thread.start()
    time.sleep(0.5)
    stop.set()
    thread.join(timeout=10)
    consumer.close()
    assert not thread.is_alive()
