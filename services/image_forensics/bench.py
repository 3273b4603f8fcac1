"""CPU throughput of the image detector at batch 1 and batch 32.

    python -m tidegate.services.image_forensics.bench [--model DIR] [--threads 1] [--side 192] [--out FILE]

Writes ``reports/bench/image-model.json``: images/s and per-call latency percentiles for ``predict_proba`` on
side x side RGB images (the detector centre-crops to 192 px, so 192 is the cost of any large upload), and
the decode cost of a PNG of that size.
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import platform
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def _images(n: int, side: int, seed: int = 0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8), "RGB") for _ in range(n)]


def _time_calls(fn, calls: int) -> list[float]:
    out = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def run(model: Path | None, threads: int, side: int, calls: int) -> dict:
    import torch

    from .ntf.detector import decode_image, load_detector

    torch.set_num_threads(threads)
    det = load_detector(model)
    result = {"model_version": det.version, "method": det.card["method"], "device": "cpu", "threads": threads,
              "input_side": side, "torch": torch.__version__, "python": platform.python_version(),
              "machine": platform.machine(), "processor": platform.processor() or None}
    for batch in (1, 32):
        imgs = _images(batch, side, seed=batch)
        det.predict_proba(imgs)  # warm-up
        n = max(3, calls // batch)
        times = _time_calls(lambda: det.predict_proba(imgs), n)
        result[f"batch{batch}"] = {"calls": n, "images_per_s": batch * n / sum(times),
                                   "latency_ms_p50": float(np.percentile(times, 50) * 1000),
                                   "latency_ms_p95": float(np.percentile(times, 95) * 1000)}
    buf = io.BytesIO()
    _images(1, side)[0].save(buf, format="PNG")
    data = buf.getvalue()
    times = _time_calls(lambda: decode_image(data), 20)
    result["decode_png_ms_p50"] = float(np.percentile(times, 50) * 1000)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tidegate.services.image_forensics.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=None, help="model dir (default: the packaged default)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--side", type=int, default=192)
    p.add_argument("--calls", type=int, default=128, help="images per measurement (batch 1: calls; batch 32: calls/32)")
    p.add_argument("--out", type=Path, default=Path("reports/bench/image-model.json"))
    args = p.parse_args(argv)
    result = run(args.model, args.threads, args.side, args.calls)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
