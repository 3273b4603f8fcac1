"""Head cost vs decode cost per token, in one process at one thread count.

``python -m tidegate.services.token_risk.kelp.bench`` writes ``reports/bench/text-head.json``.
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def run(out: Path, model_dir: str | None, lm_source: str | None, threads: int, positions: list[int],
        decode_tokens: int) -> dict:
    from .evaluate import decode_ms_per_token, head_ms_per_token
    from .lm import load_protected_model
    from .sld import load_head

    torch.set_num_threads(threads)
    head, card = load_head(model_dir)
    lm = load_protected_model(lm_source)
    decode = decode_ms_per_token(lm, new_tokens=decode_tokens)
    at = {str(p): head_ms_per_token(head, steps=200, warm=p) for p in positions}
    head_ms = head_ms_per_token(head, steps=500)
    # the tap itself: the extra cost of reading the layer output during decoding (a hook, no extra compute)
    t0 = time.perf_counter()
    lm.generate(["Explain how a rainbow forms."], max_new_tokens=decode_tokens, layer=int(card["layer"]))
    tapped = 1000 * (time.perf_counter() - t0) / decode_tokens
    res = {"decode_ms_per_token": decode, "head_ms_per_token": head_ms, "head_ms_per_token_at": at,
           "head_fraction_of_decode": head_ms / decode, "decode_with_tap_ms_per_token": tapped,
           "threads": torch.get_num_threads(), "state_size": head.state_size, "state_bytes": 4 * head.state_size,
           "layer": card["layer"], "protected_model": card["protected_model"], "torch": torch.__version__,
           "machine": platform.machine(), "processor": platform.processor() or platform.machine(),
           "command": "python -m tidegate.services.token_risk.kelp.bench"}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tidegate.services.token_risk.kelp.bench", description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("reports/bench/text-head.json"))
    ap.add_argument("--model", default=None, help="head folder (default: the committed head)")
    ap.add_argument("--lm", default=None, help="protected model: HF folder or .gguf (default: packaged SmolLM2)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for both the decode and the head")
    ap.add_argument("--positions", default="16,256,1024,4096", help="token positions at which to time the head")
    ap.add_argument("--decode-tokens", type=int, default=32)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    res = run(a.out, a.model, a.lm, a.threads, [int(x) for x in a.positions.split(",")], a.decode_tokens)
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
