"""``make bench-text-worker``: the token-risk worker through a real broker and Redis, latent mode.

Three measurements in one run, on one machine, so their ratios mean something:
1. saturation: a backlog of ``sessions x chunks`` chunks is published first, then one worker process-thread drains it;
   tokens/s = scored tokens / wall time from first poll to last verdict flushed;
2. paced loads (10%, 25% and 50% of that rate by default; 50% is the headline): a paced producer (separate process)
   publishes, a reader (separate process) records chunk-to-verdict latency (verdict received minus ``sent_at`` stamped
   just before the send). Producer, reader, broker, Redis and worker share this machine's cores;
3. head only: the same head stepping the same number of sessions in memory (no Kafka, no Redis).
Writes ``reports/bench/token-worker.json``.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from tidegate.v1 import events_pb2 as pb

REPORT = Path("reports/bench/token-worker.json")
MODEL_ID = "smollm2-135m-instruct"


def make_chunk(session: int, seq: int, tokens: int, dim: int, layer: int, rng) -> pb.TokenChunk:
    chunk = pb.TokenChunk(tenant_id="bench", session_id=f"s{session}", model_id=MODEL_ID, seq=seq)
    if seq == 0:
        chunk.prompt = "benchmark prompt"
        x = rng.standard_normal((24, dim)).astype(np.float16)
        chunk.prompt_latents.CopyFrom(pb.Latents(layer=layer, dim=dim, dtype=pb.Latents.FLOAT16, data=x.tobytes()))
    else:
        x = rng.standard_normal((tokens, dim)).astype(np.float16)
        chunk.token_ids.extend(range(tokens))
        chunk.text = "x" * tokens
        chunk.latents.CopyFrom(pb.Latents(layer=layer, dim=dim, dtype=pb.Latents.FLOAT16, data=x.tobytes()))
    return chunk


def produce(settings_json: str, sessions: int, chunks: int, tokens: int, dim: int, layer: int, seq_offset: int,
            rate_tokens_s: float | None) -> None:
    """Publish chunk rounds (every session's seq k, then k+1, ...), paced to ``rate_tokens_s`` if given."""
    from tidegate.shared import topics
    from tidegate.shared.config import Settings
    from tidegate.shared.kafka import make_producer, publish, topic_name
    settings = Settings.model_validate_json(settings_json)
    producer = make_producer(settings, linger_ms=2)
    producer.partitions_for(topic_name(settings, topics.GEN_CHUNKS))  # connect and fetch metadata before the clock
    rng = np.random.default_rng(seq_offset)
    started = time.perf_counter()
    sent_tokens = 0
    for seq in range(seq_offset, seq_offset + chunks):
        for s in range(sessions):
            chunk = make_chunk(s, seq, tokens, dim, layer, rng)
            if rate_tokens_s:
                due = started + sent_tokens / rate_tokens_s
                while (wait := due - time.perf_counter()) > 0:
                    time.sleep(min(wait, 0.01))
            chunk.sent_at.GetCurrentTime()
            publish(producer, settings, topics.GEN_CHUNKS, chunk)
            sent_tokens += len(chunk.token_ids)
    producer.flush()
    producer.close()


def read_latencies(settings_json: str, expected: int, timeout: float, out: mp.Queue) -> None:
    """Reader process: chunk-to-verdict latency (ms) of every verdict that arrives."""
    from google.protobuf.timestamp_pb2 import Timestamp
    from kafka import KafkaConsumer

    from tidegate.shared import topics
    from tidegate.shared.config import Settings
    from tidegate.shared.kafka import client_config, decode_record, topic_name
    settings = Settings.model_validate_json(settings_json)
    consumer = KafkaConsumer(topic_name(settings, topics.VERDICTS), group_id=f"bench-reader-{time.time_ns()}",
                             auto_offset_reset="latest", enable_auto_commit=False,
                             fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
                             session_timeout_ms=settings.kafka_session_timeout_ms, **client_config(settings))
    while not consumer.assignment():
        consumer.poll(timeout_ms=100)
    for tp in consumer.assignment():  # resolve "latest" now, before the producer starts
        consumer.position(tp)
    out.put("ready")
    latencies = []
    deadline = time.monotonic() + timeout
    now = Timestamp()
    while len(latencies) < expected and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=100).values():
            now.GetCurrentTime()
            for record in records:
                verdict = decode_record(record, topics.VERDICTS)
                # the verdict carries the chunk's latency at creation; add what the trip to us took
                latencies.append((now.ToNanoseconds() - verdict.created_at.ToNanoseconds()) / 1e6
                                 + verdict.latency_ms)
    consumer.close()
    out.put(latencies)


def head_only_tokens_per_s(head, sessions: int, tokens: int, dim: int, repeats: int = 5) -> float:
    import torch
    state = torch.zeros(sessions, head.state_size)
    H = torch.randn(sessions, tokens, dim)
    with torch.no_grad():
        head.step(state, H[:, 0])  # warm-up
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            s = state
            for t in range(tokens):
                s, _ = head.step(s, H[:, t])
            best = min(best, time.perf_counter() - t0)
    return sessions * tokens / best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--chunk-tokens", type=int, default=16)
    parser.add_argument("--chunks", type=int, default=6, help="chunks per session in the saturation phase")
    parser.add_argument("--latency-chunks", type=int, default=4, help="chunks per session in each paced phase")
    parser.add_argument("--loads", type=float, nargs="+", default=[0.1, 0.25, 0.5],
                        help="paced loads as fractions of the measured saturation throughput")
    parser.add_argument("--broker", choices=["noida", "tansu"], default="noida")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the worker")
    parser.add_argument("--out", type=Path, default=REPORT)
    args = parser.parse_args(argv)

    import torch
    torch.set_num_threads(args.threads)
    from tidegate.services.token_risk.config import TokenRiskSettings
    from tidegate.services.token_risk.main import build_engine
    from tidegate.services.token_risk.worker import ChunkHandler
    from tidegate.shared import topics
    from tidegate.shared.config import Settings
    from tidegate.shared.kafka import TopicConsumer, ensure_topics, make_producer
    from tidegate.shared.observability import setup_logging
    from tidegate.shared.stack import Stack

    setup_logging("WARNING")
    run_dir = Path(tempfile.mkdtemp(prefix="tidegate-bench-"))
    stack = Stack(run_dir, broker=args.broker, kafka_port=0, redis_port=0)
    state = stack.up(create_topics=False)
    ctx = mp.get_context("spawn")
    try:
        settings = Settings(kafka_bootstrap=state.kafka_bootstrap, redis_url=state.redis_url, metrics_port=0,
                            kafka_session_timeout_ms=6000, kafka_max_poll_records=1000)
        ensure_topics(settings)
        risk = TokenRiskSettings(model_ids=[MODEL_ID], text_mode=False, exact_char_offsets=False)
        engine = build_engine(settings, risk)
        dim, layer = engine.dim, engine.layer
        producer = make_producer(settings)
        consumer = TopicConsumer(settings, topics.GEN_CHUNKS, "bench-worker", ChunkHandler(settings, engine, producer),
                                 producer=producer, service="bench")
        sj = settings.model_dump_json()

        # warm-up: join the group, open every session (seq 0), compile nothing but touch every code path
        produce(sj, args.sessions, 1, args.chunk_tokens, dim, layer, 0, None)
        while engine.store.load_many([("bench", f"s{args.sessions - 1}")])[0].last_seq < 0:
            consumer.run_once()

        # 1. saturation
        produce(sj, args.sessions, args.chunks, args.chunk_tokens, dim, layer, 1, None)
        total = args.sessions * args.chunks
        done = 0
        t0 = None
        while done < total:
            call_started = time.perf_counter()
            n = consumer.run_once()
            if n and t0 is None:
                t0 = call_started
            done += n
        elapsed = time.perf_counter() - t0
        tokens_per_s = total * args.chunk_tokens / elapsed

        # 2. paced loads (half of saturation is the headline), each with a reader in its own process
        stop = threading.Event()
        worker = threading.Thread(target=consumer.run, args=(stop,))
        worker.start()
        by_load = {}
        next_seq = 1 + args.chunks
        for fraction in sorted(set(args.loads) | {0.5}):
            queue = ctx.Queue()
            expected = args.sessions * args.latency_chunks
            reader = ctx.Process(target=read_latencies, args=(sj, expected, 300.0, queue))
            reader.start()
            assert queue.get(timeout=120) == "ready"
            rate = tokens_per_s * fraction
            writer = ctx.Process(target=produce, args=(sj, args.sessions, args.latency_chunks, args.chunk_tokens,
                                                       dim, layer, next_seq, rate))
            writer.start()
            latencies = np.array(queue.get(timeout=600))
            writer.join()
            reader.join()
            next_seq += args.latency_chunks
            by_load[fraction] = {"tokens_per_s": round(rate, 1), "samples": int(latencies.size),
                                 "p50_ms": round(float(np.percentile(latencies, 50)), 2),
                                 "p99_ms": round(float(np.percentile(latencies, 99)), 2)}
        stop.set()
        worker.join()
        consumer.close()
        producer.close()

        # 3. head only, same process, same thread count
        head_tps = head_only_tokens_per_s(engine.head, args.sessions, args.chunk_tokens, dim)
        result = {
            "tokens_per_s": round(tokens_per_s, 1),
            "p50_ms": by_load[0.5]["p50_ms"],
            "p99_ms": by_load[0.5]["p99_ms"],
            "latency_by_load_fraction": by_load,
            "head_only_tokens_per_s": round(head_tps, 1),
            "worker_to_head_ratio": round(tokens_per_s / head_tps, 4),
            "sessions": args.sessions,
            "chunk_tokens": args.chunk_tokens,
            "saturation_chunks": total,
            "hidden_dim": dim,
            "latent_dtype": "float16",
            "broker": args.broker,
            "torch_threads": args.threads,
            "head_version": engine.card.get("version"),
            "machine": {"cpus": mp.cpu_count(), "python": platform.python_version()},
            "targets": {"tokens_per_s": 20000, "p99_ms_at_half_load": 25},
        }
    finally:
        stack.down(purge=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
