"""The token-risk engine and worker on real Redis and real brokers, with a small random-init head
(scores are deterministic, which is all these behaviours need; the trained head is exercised in test_kelp_*)."""
import asyncio
import os
import signal
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
import torch

from tidegate.services.token_risk.config import TokenRiskSettings
from tidegate.services.token_risk.kelp.score import stream_scores
from tidegate.services.token_risk.kelp.sld import SLDHead, save_head
from tidegate.services.token_risk.main import build_engine
from tidegate.services.token_risk.server import TokenRiskServicer
from tidegate.services.token_risk.worker import ChunkHandler
from tidegate.shared import topics
from tidegate.shared.grpc_server import GrpcServer, Service
from tidegate.shared.kafka import TopicConsumer, decode_record, make_producer, publish, read_records
from tidegate.v1 import events_pb2 as pb
from tidegate.v1 import services_pb2, services_pb2_grpc

pytestmark = pytest.mark.integration

DIM, LAYER, MODEL = 32, 3, "test-lm"


@pytest.fixture(scope="module")
def head_dir(tmp_path_factory):
    torch.manual_seed(0)
    head = SLDHead(DIM, proj_dim=16, mem_dim=24, window=4, risk_hidden=16)
    return save_head(head, {"layer": LAYER, "threshold": 0.55, "protected_model": MODEL, "version": "test-1"},
                     tmp_path_factory.mktemp("head"))


@pytest.fixture
def risk_settings(head_dir):
    return TokenRiskSettings(head_dir=head_dir, model_ids=[MODEL], text_mode=False, exact_char_offsets=False,
                             max_chunk_tokens=64, group_id="token-risk-test")


@pytest.fixture
def engine(settings, risk_settings):
    return build_engine(settings, risk_settings)


def latents(x: np.ndarray, dtype=pb.Latents.FLOAT32, layer=LAYER) -> pb.Latents:
    return pb.Latents(layer=layer, dim=x.shape[1], dtype=dtype, data=x.astype(np.float32).tobytes())


def session_chunks(session: str, n_chunks: int = 5, chunk_tokens: int = 4, seed: int = 0, final: bool = False):
    rng = np.random.default_rng(seed)
    prompt = rng.normal(size=(7, DIM)).astype(np.float32)
    tokens = rng.normal(size=(n_chunks * chunk_tokens, DIM)).astype(np.float32) * 3
    chunks = [pb.TokenChunk(tenant_id="t", session_id=session, model_id=MODEL, seq=0, prompt="p",
                            prompt_latents=latents(prompt))]
    for i in range(n_chunks):
        part = tokens[i * chunk_tokens:(i + 1) * chunk_tokens]
        chunks.append(pb.TokenChunk(tenant_id="t", session_id=session, model_id=MODEL, seq=i + 1,
                                    token_ids=list(range(chunk_tokens)), text="abcd", latents=latents(part),
                                    final=final and i == n_chunks - 1))
    return prompt, tokens, chunks


def run(engine, chunks):
    result = engine.process(chunks)
    engine.commit_states(result)
    return result.outcomes


def test_chunk_by_chunk_through_redis_equals_one_offline_pass(engine):
    prompt, tokens, chunks = session_chunks("s1")
    verdicts = [run(engine, [c])[0].verdict for c in chunks]   # state saved to and restored from Redis each time
    probs = stream_scores(engine.head, torch.from_numpy(prompt), torch.from_numpy(tokens))
    running = torch.cummax(probs, 0).values
    for i, v in enumerate(verdicts[1:]):
        assert v.stream.max_risk == pytest.approx(float(running[4 * i + 3]), abs=1e-5)
        assert v.stream.current_risk == pytest.approx(float(probs[4 * i + 3]), abs=1e-5)
        assert v.stream.tokens_seen == 4 * (i + 1)
    flagged = (running >= engine.threshold).nonzero()
    expected_flag = int(flagged[0]) if len(flagged) else -1
    assert verdicts[-1].stream.first_flag_token == expected_flag
    assert verdicts[-1].stream.stop == (expected_flag >= 0)


def test_many_sessions_in_one_batch_score_as_if_alone(engine):
    batch = []
    alone = {}
    for k in range(6):
        _, _, chunks = session_chunks(f"b{k}", n_chunks=1 + k % 3, seed=k)
        batch += chunks
        alone[f"b{k}"] = chunks
    together = {o.verdict.verdict_id: o.verdict.risk for o in run(engine, batch)}
    for session, chunks in alone.items():
        engine.store.client.delete(engine.store.key("t", session))
        for o in run(engine, chunks):
            assert o.verdict.risk == pytest.approx(together[o.verdict.verdict_id], abs=1e-5)


def test_a_redelivered_chunk_does_not_advance_the_state_twice(engine):
    _, _, chunks = session_chunks("dup")
    run(engine, chunks[:3])
    key = engine.store.key("t", "dup")
    before = engine.store.client.hgetall(key)
    again = run(engine, [chunks[2], chunks[1]])
    assert all(o.duplicate and o.verdict is None for o in again)
    assert engine.store.client.hgetall(key) == before


def test_state_record_is_the_same_size_for_any_length(engine):
    sizes = []
    for n_chunks in (1, 40):
        session = f"len{n_chunks}"
        _, _, chunks = session_chunks(session, n_chunks=n_chunks, chunk_tokens=16)
        for i in range(0, len(chunks), 8):
            run(engine, chunks[i:i + 8])
        sizes.append(engine.store.client.hstrlen(engine.store.key("t", session), "blob"))
    assert sizes[0] == sizes[1] > 0


@pytest.mark.parametrize("mutate,needle", [
    (lambda c: c.latents.__setattr__("dim", DIM + 1), "width"),
    (lambda c: c.latents.__setattr__("layer", LAYER + 1), "layer"),
    (lambda c: c.latents.__setattr__("dtype", 0), "dtype"),
    (lambda c: c.__setattr__("model_id", "other-lm"), "unknown model_id"),
    (lambda c: c.latents.__setattr__("data", c.latents.data[:-4]), "not a whole number of 128-byte rows"),
    (lambda c: c.latents.__setattr__("data", c.latents.data[:-128]), "4 token ids but 3 rows"),
    (lambda c: (c.token_ids.extend(range(100))), "limit is 64"),
    (lambda c: c.latents.__setattr__("data", np.full((4, DIM), np.nan, np.float32).tobytes()), "NaN"),
])
def test_bad_chunks_get_an_error_verdict_and_leave_the_session_intact(engine, mutate, needle):
    _, _, chunks = session_chunks("bad")
    run(engine, chunks[:2])
    bad = pb.TokenChunk()
    bad.CopyFrom(chunks[2])
    mutate(bad)
    (outcome,) = run(engine, [bad])
    assert outcome.rejected and needle in outcome.rejected
    assert outcome.verdict.label == "error" and needle in outcome.verdict.error
    (after,) = run(engine, [chunks[3]])  # the session goes on; the missing seq is reported
    assert after.verdict.label != "error" and "sequence gap: expected seq 2, got 3" in after.verdict.error


def test_final_chunk_leaves_only_a_tombstone_that_blocks_replays(engine):
    _, _, chunks = session_chunks("fin", final=True)
    run(engine, chunks)
    state = engine.store.load_many([("t", "fin")])[0]
    assert state.finished and state.head_state is None and state.last_seq == len(chunks) - 1
    assert run(engine, [chunks[1]])[0].duplicate


def test_kafka_worker_publishes_a_verdict_per_chunk_and_dead_letters_bad_ones(settings, engine):
    producer = make_producer(settings)
    _, _, chunks = session_chunks("kafka", n_chunks=3)
    bad = pb.TokenChunk()
    bad.CopyFrom(chunks[2])
    bad.model_id = "nope"
    for c in chunks[:2] + [bad] + chunks[2:]:
        publish(producer, settings, topics.GEN_CHUNKS, c)
    producer.flush()
    consumer = TopicConsumer(settings, topics.GEN_CHUNKS, "worker-test", ChunkHandler(settings, engine, producer))
    try:
        deadline = time.monotonic() + 40
        while engine.store.load_many([("t", "kafka")])[0].last_seq < 3 and time.monotonic() < deadline:
            consumer.run_once()
    finally:
        consumer.close()
    verdicts = [decode_record(r, topics.VERDICTS) for r in read_records(settings, topics.VERDICTS, 5)]
    assert sorted(v.stream.seq for v in verdicts if v.label != "error") == [0, 1, 2, 3]
    assert [v.error for v in verdicts if v.label == "error"] == ["unknown model_id 'nope'; this worker serves test-lm"]
    (letter,) = [decode_record(r, topics.DLQ) for r in read_records(settings, topics.DLQ, 1)]
    assert "unknown model_id" in letter.error and decode_record(
        type("R", (), {"value": letter.value, "headers": []})(), topics.GEN_CHUNKS).model_id == "nope"


def _worker_env(settings, risk_settings) -> dict:
    env = dict(os.environ, TIDEGATE_KAFKA_BOOTSTRAP=settings.kafka_bootstrap, TIDEGATE_REDIS_URL=settings.redis_url,
               TIDEGATE_KAFKA_TOPIC_PREFIX=settings.kafka_topic_prefix, TIDEGATE_REDIS_NAMESPACE=settings.redis_namespace,
               TIDEGATE_METRICS_PORT="0", TIDEGATE_KAFKA_SESSION_TIMEOUT_MS="6000", TIDEGATE_KAFKA_MAX_POLL_RECORDS="20",
               TIDEGATE_KAFKA_MAX_POLL_INTERVAL_MS="10000", TIDEGATE_KAFKA_GROUP_INSTANCE_ID="token-risk-0",
               TIDEGATE_TOKEN_RISK_HEAD_DIR=str(risk_settings.head_dir), TIDEGATE_TOKEN_RISK_MODEL_IDS=f'["{MODEL}"]',
               TIDEGATE_TOKEN_RISK_TEXT_MODE="false", TIDEGATE_TOKEN_RISK_EXACT_CHAR_OFFSETS="false")
    return env


def test_sigkilled_worker_restarts_with_every_chunk_scored_once_as_if_uninterrupted(settings, risk_settings, engine,
                                                                                 tmp_path):
    producer = make_producer(settings)
    sessions = {f"k{i}": session_chunks(f"k{i}", n_chunks=8, seed=100 + i)[2] for i in range(12)}
    for step in range(9):
        for chunks in sessions.values():
            publish(producer, settings, topics.GEN_CHUNKS, chunks[step])
    producer.flush()
    total = sum(len(c) for c in sessions.values())
    command = [sys.executable, "-m", "tidegate.services.token_risk", "--no-grpc"]
    env = _worker_env(settings, risk_settings)
    log = open(tmp_path / "worker.log", "wb")
    worker = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while len(read_records(settings, topics.VERDICTS, 1, timeout=1)) == 0 and time.monotonic() < deadline:
            pass
        worker.send_signal(signal.SIGKILL)  # mid-stream: some verdicts out, some offsets not committed
        worker.wait(10)
        worker = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        records = read_records(settings, topics.VERDICTS, 10 * total, timeout=120,
                               done=lambda rs: len({decode_record(r, topics.VERDICTS).verdict_id for r in rs}) >= total)
        got: dict[str, pb.Verdict] = {}
        for r in records:
            v = decode_record(r, topics.VERDICTS)
            if v.verdict_id in got:  # a replayed chunk reproduces its verdict exactly
                assert got[v.verdict_id].risk == v.risk
            got[v.verdict_id] = v
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(20)
    assert len(got) == total, (tmp_path / "worker.log").read_text()[-3000:]
    # the uninterrupted reference, in-process, in a separate namespace
    reference = build_engine(settings.model_copy(update={"redis_namespace": settings.redis_namespace + "-ref"}),
                             risk_settings)
    for chunks in sessions.values():
        for outcome in run(reference, chunks):
            v = got[outcome.verdict.verdict_id]
            assert v.risk == pytest.approx(outcome.verdict.risk, abs=1e-6)
            assert v.stream.first_flag_token == outcome.verdict.stream.first_flag_token
            assert not v.error
    states = engine.store.load_many([("t", s) for s in sessions])
    assert all(s.last_seq == 8 and s.tokens_seen == 32 for s in states), "no session advanced twice"


def test_redis_outage_pauses_the_worker_and_loses_nothing(stack, settings, engine):
    producer = make_producer(settings)
    consumer = TopicConsumer(settings, topics.GEN_CHUNKS, "outage-test", ChunkHandler(settings, engine, producer),
                             max_backoff_s=0.5)
    _, _, chunks = session_chunks("outage", n_chunks=3)
    try:
        stack.stop_service("redis")
        for c in chunks:
            publish(producer, settings, topics.GEN_CHUNKS, c)
        producer.flush()
        deadline = time.monotonic() + 40
        while consumer._failures < 2 and time.monotonic() < deadline:
            consumer.run_once()  # fails, backs off, commits nothing
        assert consumer._failures >= 2
    finally:
        stack.start_service("redis")
    try:
        deadline = time.monotonic() + 40
        while engine.store.load_many([("t", "outage")])[0].last_seq < 3 and time.monotonic() < deadline:
            consumer.run_once()
    finally:
        consumer.close()
    seqs = sorted(decode_record(r, topics.VERDICTS).stream.seq for r in read_records(settings, topics.VERDICTS, 4))
    assert seqs == [0, 1, 2, 3]


def test_grpc_stream_returns_a_verdict_per_chunk_with_stop_and_survives_bad_chunks(settings, engine):
    _, _, chunks = session_chunks("grpc", n_chunks=4)
    bad = pb.TokenChunk()
    bad.CopyFrom(chunks[2])
    bad.latents.dim = 7
    reference = build_engine(settings.model_copy(update={"redis_namespace": settings.redis_namespace + "-ref"}),
                             TokenRiskSettings(**{**engine.settings.model_dump()}))
    expected = {o.verdict.stream.seq: o.verdict for o in run(reference, chunks)}

    async def scenario():
        name = services_pb2.DESCRIPTOR.services_by_name["TokenRisk"].full_name
        server = GrpcServer(settings.model_copy(update={"grpc_port": 0}), [
            Service(services_pb2_grpc.add_TokenRiskServicer_to_server, TokenRiskServicer(engine, settings), name)])
        port = await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = services_pb2_grpc.TokenRiskStub(channel)

                async def requests():
                    for c in chunks[:2] + [bad] + chunks[2:]:
                        yield c
                return [v async for v in stub.StreamGeneration(requests(), timeout=30)]
        finally:
            await server.stop(grace=0)

    verdicts = asyncio.run(scenario())
    assert len(verdicts) == len(chunks) + 1
    assert [v.label == "error" for v in verdicts].count(True) == 1
    for v in verdicts:
        if v.label != "error":
            assert v.risk == pytest.approx(expected[v.stream.seq].risk, abs=1e-6)
            assert v.stream.stop == (v.stream.first_flag_token >= 0)
