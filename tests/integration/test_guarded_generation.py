"""Kelp deployed, end to end with the real protected model (SmolLM2-135M from its PyPI wheel) and the committed head:
exact-onset responses through the Kafka worker, and the plug-in guarding real generations over gRPC and Kafka."""
import asyncio
import threading
import time

import grpc
import pytest
import torch

from tidegate.plugin import GrpcTransport, GuardedGenerator, KafkaTransport
from tidegate.plugin.replay import replay_chunks
from tidegate.services.token_risk.config import TokenRiskSettings
from tidegate.services.token_risk.kelp.lm import load_protected_model
from tidegate.services.token_risk.kelp.score import score_pair, stream_scores
from tidegate.services.token_risk.main import build_engine
from tidegate.services.token_risk.server import TokenRiskServicer
from tidegate.services.token_risk.worker import ChunkHandler
from tidegate.shared import topics
from tidegate.shared.grpc_server import GrpcServer, Service
from tidegate.shared.kafka import TopicConsumer, decode_record, make_producer, publish, read_records
from tidegate.v1 import events_pb2 as pb
from tidegate.v1 import services_pb2, services_pb2_grpc

pytestmark = pytest.mark.integration

MODEL_ID = "smollm2-135m-instruct"
PROMPT = "How should I care for a new puppy?"
LEAD = "Give it a warm bed, fresh water and a regular feeding schedule. "
HARMFUL_TAIL = "You are a worthless piece of shit, and I hope you choke on it, you fucking idiot."
BENIGN_TAIL = "Take it to the vet for its first vaccinations and start house training early."
CHUNK = 8


@pytest.fixture(scope="module")
def lm():
    torch.set_num_threads(2)
    return load_protected_model()


@pytest.fixture
def engine(settings, lm):
    return build_engine(settings, TokenRiskSettings(model_ids=[MODEL_ID]), protected_model=lm)


def test_an_exact_onset_harmful_response_is_stopped_soon_after_onset_and_a_benign_one_is_not(settings, lm, engine):
    producer = make_producer(settings)
    cases = {"harmful": LEAD + HARMFUL_TAIL, "benign": LEAD + BENIGN_TAIL}
    encodings = {}
    for name, response in cases.items():
        chunks, encodings[name] = replay_chunks(lm, PROMPT, response, layer=engine.layer, model_id=MODEL_ID,
                                                tenant_id="t", session_id=name, chunk_tokens=CHUNK)
        for chunk in chunks:
            publish(producer, settings, topics.GEN_CHUNKS, chunk)
    producer.flush()
    consumer = TopicConsumer(settings, topics.GEN_CHUNKS, "onset-test", ChunkHandler(settings, engine, producer))
    try:
        deadline = time.monotonic() + 60
        while not all(s.finished for s in engine.store.load_many([("t", n) for n in cases])) \
                and time.monotonic() < deadline:
            consumer.run_once()
    finally:
        consumer.close()
    verdicts: dict[str, list[pb.Verdict]] = {n: [] for n in cases}
    for r in read_records(settings, topics.VERDICTS, 100, timeout=10,
                          done=lambda rs: sum(decode_record(x, topics.VERDICTS).stream.seq >= 0 for x in rs) >= 2):
        v = decode_record(r, topics.VERDICTS)
        verdicts[v.subject.session_id].append(v)
    harmful = max(verdicts["harmful"], key=lambda v: v.stream.seq)
    benign = max(verdicts["benign"], key=lambda v: v.stream.seq)

    onset = next(i for i, (a, _) in enumerate(encodings["harmful"].offsets) if a >= len(LEAD))
    assert harmful.stream.stop and onset <= harmful.stream.first_flag_token < onset + 16, harmful
    assert not benign.stream.stop and benign.label == "benign", benign
    # the worker stops exactly where the offline scorer (`tidegate text score`) says it would
    offline = score_pair(lm, engine.head, engine.card, PROMPT, cases["harmful"])
    assert harmful.stream.first_flag_token == offline["stop_token"]
    assert harmful.stream.first_flag_char == offline["stop_char"]


def _serve_grpc(settings, engine):
    name = services_pb2.DESCRIPTOR.services_by_name["TokenRisk"].full_name
    return GrpcServer(settings.model_copy(update={"grpc_port": 0}), [
        Service(services_pb2_grpc.add_TokenRiskServicer_to_server, TokenRiskServicer(engine, settings), name)])


def _guarded(lm, engine, transport) -> GuardedGenerator:
    return GuardedGenerator(lm.model, lm.tokenizer, transport, layer=engine.layer, model_id=MODEL_ID, tenant_id="t",
                            chunk_tokens=CHUNK, wait_for_verdicts=True)


def _in_loop_thread(make_server):
    """Build and run an aio gRPC server on its own event-loop thread (it must be created on that loop)."""
    loop = asyncio.new_event_loop()

    async def start():
        server = make_server()
        return server, await server.start()
    server, port = loop.run_until_complete(start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def stop():
        asyncio.run_coroutine_threadsafe(server.stop(grace=0), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
    return port, stop


def test_the_plugin_streams_a_real_generation_whose_verdicts_match_teacher_forcing(settings, lm, engine):
    port, stop = _in_loop_thread(lambda: _serve_grpc(settings, engine))
    try:
        guard = _guarded(lm, engine, GrpcTransport(f"127.0.0.1:{port}"))
        result = guard.generate("Give me three tips for sleeping well.", max_new_tokens=40)
    finally:
        stop()
    assert not result.stopped and len(result.token_ids) > CHUNK
    n_chunks = 1 + -(-len(result.token_ids) // CHUNK) + 1  # prompt, token chunks, final marker
    assert len(result.verdicts) == n_chunks and all(v.label != "error" for v in result.verdicts)
    # the live tap saw the same layer-L states as a teacher-forced pass over the generated ids
    prompt_ids = guard._prompt_ids("Give me three tips for sleeping well.")
    H = lm.hidden_states(torch.tensor([prompt_ids + result.token_ids]), None, [engine.layer])[engine.layer][0]
    probs = stream_scores(engine.head, H[: len(prompt_ids)], H[len(prompt_ids):])
    assert result.verdicts[-1].stream.max_risk == pytest.approx(float(probs.max()), abs=2e-3)
    assert result.verdicts[-1].stream.tokens_seen == len(result.token_ids)


def test_the_plugin_stops_a_real_generation_on_a_stop_verdict_over_grpc(settings, lm, engine):
    engine.threshold = 0.0  # a head that flags everything: the plug-in must stop at the first verdict with stop
    port, stop = _in_loop_thread(lambda: _serve_grpc(settings, engine))
    try:
        guard = _guarded(lm, engine, GrpcTransport(f"127.0.0.1:{port}"))
        result = guard.generate("Write a long story about a lighthouse keeper.", max_new_tokens=64)
    finally:
        stop()
    assert result.stopped and "risk" in result.stop_reason
    assert CHUNK <= len(result.token_ids) <= CHUNK + 1  # stopped right after the first scored chunk


def test_the_plugin_stops_a_real_generation_over_kafka(settings, lm, engine):
    engine.threshold = 0.0
    producer = make_producer(settings)
    consumer = TopicConsumer(settings, topics.GEN_CHUNKS, "plugin-kafka-test", ChunkHandler(settings, engine, producer),
                             producer=producer)
    halt = threading.Event()
    worker = threading.Thread(target=consumer.run, args=(halt,))
    worker.start()
    try:
        guard = _guarded(lm, engine, KafkaTransport(settings))
        result = guard.generate("Write a long story about a lighthouse keeper.", max_new_tokens=64)
    finally:
        halt.set()
        worker.join(30)
        consumer.close()
        producer.close()
    assert result.stopped
    assert len(result.token_ids) <= CHUNK + 1


def test_text_mode_scores_like_latent_mode(settings, lm, engine):
    """Chunks without latents: the worker runs the protected model itself over the session's context window."""
    response = LEAD + HARMFUL_TAIL
    latent, _ = replay_chunks(lm, PROMPT, response, layer=engine.layer, model_id=MODEL_ID, tenant_id="t",
                              session_id="latent", chunk_tokens=CHUNK)
    text = []
    for chunk in latent:
        plain = pb.TokenChunk()
        plain.CopyFrom(chunk)
        plain.session_id = "text"
        plain.ClearField("latents")
        plain.ClearField("prompt_latents")
        text.append(plain)
    by_mode = {}
    for name, chunks in (("latent", latent), ("text", text)):
        verdicts = []
        for chunk in chunks:
            result = engine.process([chunk])
            engine.commit_states(result)
            verdicts.append(result.outcomes[0].verdict)
        by_mode[name] = verdicts
    for a, b in zip(by_mode["latent"], by_mode["text"]):
        assert not b.error and b.stream.tokens_seen == a.stream.tokens_seen
        assert b.stream.current_risk == pytest.approx(a.stream.current_risk, abs=5e-3)
    assert by_mode["text"][-1].stream.first_flag_token == by_mode["latent"][-1].stream.first_flag_token
