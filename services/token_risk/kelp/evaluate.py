"""``tidegate train text`` and ``tidegate eval text``: heads, baselines, layer sweep, latency, reports."""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from .metrics import stream_metrics
from .sld import DEFAULT_HEAD_DIR, SLDHead, load_head, save_head
from .train import (HiddenCache, TrainConfig, calibrate_threshold, load_samples, probe_scores, sld_scores,
                    train_probe, train_sld)

log = logging.getLogger(__name__)


def train_and_save(data_dir: Path, out_dir: Path, layer: int, cfg: TrainConfig, fpr_budget: float, command: str) -> dict:
    cache = HiddenCache(data_dir, layer)
    head = train_sld(cache, cfg, desc=f"train L{layer} {cfg.method} W={cfg.window}")
    val, test = cache.split("val"), cache.split("test")
    thr = calibrate_threshold(val, sld_scores(head, cache, val), fpr_budget)
    m_val = stream_metrics(val, sld_scores(head, cache, val), thr)
    m_test = stream_metrics(test, sld_scores(head, cache, test), thr)
    card = {"protected_model": cache.meta.get("protected_model", "unknown"), "layer": layer, "threshold": thr,
            "threshold_rule": f"best validation streaming F1 with benign FPR <= {fpr_budget}",
            "training": asdict(cfg), "data_hash": cache.meta.get("data_hash"),
            "metrics": {"val": _slim(m_val), "test": _slim(m_test)}, "command": command}
    save_head(head, card, out_dir)
    log.info("head saved", extra={"out": str(out_dir), "threshold": thr})
    return card


def _slim(m: dict) -> dict:
    return {"streaming_f1": m["streaming"]["f1"], "response_f1": m["response"]["f1"], "benign_fpr": m["benign_fpr"],
            "median_delay_tokens": m["delay"]["median_tokens"], "within_16": m["delay"]["within_16"],
            "within_32": m["delay"]["within_32"], "n": m["n"]}


# ---- latency ----------------------------------------------------------------------------------------------
def decode_ms_per_token(lm, new_tokens: int = 32, reps: int = 2) -> float:
    prompts = ["Explain how a rainbow forms.", "Write a short poem about the ocean."]
    lm.generate(prompts[:1], max_new_tokens=4)  # warm-up
    times = []
    for r in range(reps):
        t0 = time.perf_counter()
        out = lm.generate([prompts[r % 2]], max_new_tokens=new_tokens)
        n = max(1, len(out[0]["ids"]))
        times.append(1000 * (time.perf_counter() - t0) / n)
    return float(np.median(times))


@torch.no_grad()
def head_ms_per_token(head: SLDHead, steps: int = 300, warm: int = 0) -> float:
    """Batch-1 ``step`` cost after ``warm`` earlier tokens (the state is bounded, so this should not grow)."""
    D = head.hidden_dim
    state = head.init_state(torch.randn(1, 12, D), None)
    if warm:
        state, _ = head.scan(state, torch.randn(1, warm, D))
    hs = torch.randn(steps, 1, D)
    for t in range(20):
        head.step(state, hs[t])
    t0 = time.perf_counter()
    for t in range(steps):
        state, _ = head.step(state, hs[t])
    return 1000 * (time.perf_counter() - t0) / steps


@torch.no_grad()
def probe_ms_per_token(probe, D: int, steps: int = 300) -> float:
    hs = torch.randn(steps, 1, D)
    t0 = time.perf_counter()
    peak = torch.zeros(1)
    for t in range(steps):
        peak = torch.maximum(peak, torch.sigmoid(probe(hs[t])))
    return 1000 * (time.perf_counter() - t0) / steps


# ---- evaluation -------------------------------------------------------------------------------------------
def run_eval(data_dir: Path, out_dir: Path, model_dir: Path | None, layers: list[int], epochs: int, k: int,
             fpr_budget: float, seed: int, posthoc: bool, lm_source: str | None, command: str,
             seeds: list[int] | None = None) -> dict:
    head, card = load_head(model_dir)
    L = int(card["layer"])
    samples = load_samples(data_dir)
    results: dict[str, dict] = {}
    timing: dict[str, float] = {}

    def record(name: str, val_rows, val_scores, test_rows, test_scores, thr=None, layer=L):
        if thr is None:
            thr = calibrate_threshold(val_rows, val_scores, fpr_budget)
        results[name] = {"layer": layer, "val": stream_metrics(val_rows, val_scores, thr),
                         "test": stream_metrics(test_rows, test_scores, thr)}
        log.info("evaluated", extra={"method": name, "streaming_f1": results[name]["test"]["streaming"]["f1"]})

    cache = HiddenCache(data_dir, L, samples)
    val, test = cache.split("val"), cache.split("test")
    record("kelp-sld-atc", val, sld_scores(head, cache, val), test, sld_scores(head, cache, test), thr=card["threshold"])
    base = TrainConfig(**{k_: v for k_, v in card.get("training", {}).items() if k_ in TrainConfig.__dataclass_fields__})
    base.epochs, base.seed = epochs, seed
    variants = {"sld-ce-only": {"method": "ce"}, "sld-atc-window0": {"window": 0}}
    for name, change in variants.items():
        cfg = TrainConfig(**{**asdict(base), **change})
        h = train_sld(cache, cfg, desc=name)
        record(name, val, sld_scores(h, cache, val), test, sld_scores(h, cache, test))
        if name == "sld-ce-only":
            timing["sld-ce-only"] = head_ms_per_token(h)
        else:
            timing[name] = head_ms_per_token(h)
    probe = train_probe(cache, seed=seed)
    record("linear-probe", val, probe_scores(probe, cache, val), test, probe_scores(probe, cache, test))
    timing["linear-probe"] = probe_ms_per_token(probe, cache.hidden_dim)
    if posthoc:
        from .posthoc import PostHocClassifier

        ph = PostHocClassifier(k=k).fit(cache.split("train"), seed=seed)
        record(f"posthoc-minilm-k{k}", val, ph.scores(val), test, ph.scores(test), layer=None)
        timing[f"posthoc-minilm-k{k}"] = ph.ms_per_token(test[0]["response"])
    # layer sweep: same recipe as the default head at each layer
    sweep = {}
    for layer in layers:
        if layer == L:
            sweep[layer] = results["kelp-sld-atc"]
            continue
        c = HiddenCache(data_dir, layer, samples)
        cfg = TrainConfig(**asdict(base))
        h = train_sld(c, cfg, desc=f"sweep L{layer}")
        v, t = c.split("val"), c.split("test")
        thr = calibrate_threshold(v, sld_scores(h, c, v), fpr_budget)
        sweep[layer] = {"layer": layer, "val": stream_metrics(v, sld_scores(h, c, v), thr),
                        "test": stream_metrics(t, sld_scores(h, c, t), thr)}
    # seed variation of the SLD recipes (training randomness only; same data and split)
    seed_study = {}
    for name, change in {"sld-atc-window8": {}, "sld-atc-window0": {"window": 0}, "sld-ce-only": {"method": "ce"}}.items():
        if not seeds or len(seeds) < 2:
            break
        vals = []
        for sd in seeds:
            cfg = TrainConfig(**{**asdict(base), **change, "seed": sd})
            h = train_sld(cache, cfg, desc=f"{name} seed {sd}")
            thr = calibrate_threshold(val, sld_scores(h, cache, val), fpr_budget)
            m = stream_metrics(test, sld_scores(h, cache, test), thr)
            vals.append({"seed": sd, "streaming_f1": m["streaming"]["f1"], "response_f1": m["response"]["f1"],
                         "benign_fpr": m["benign_fpr"], "median_delay": m["delay"]["median_tokens"]})
        seed_study[name] = vals
    # latency: the decode step of the protected model and every detector, same process, same thread count
    from .lm import load_protected_model

    lm = load_protected_model(lm_source)
    timing["decode"] = decode_ms_per_token(lm)
    timing["kelp-sld-atc"] = head_ms_per_token(head)
    report = {"command": command, "data_hash": cache.meta.get("data_hash"), "protected_model": card["protected_model"],
              "layer": L, "threads": torch.get_num_threads(), "fpr_budget": fpr_budget, "posthoc_k": k,
              "methods": results, "layer_sweep": {str(k_): v for k_, v in sweep.items()},
              "ms_per_token": timing, "head_state_size": head.state_size, "seed_study": seed_study}
    write_reports(report, out_dir)
    return report


def _fmt(x, pct=False, nd=3):
    if x is None:
        return "–"
    return f"{100 * x:.1f}%" if pct else f"{x:.{nd}f}"


def markdown_table(report: dict) -> str:
    t = report["ms_per_token"]
    dec = t["decode"]
    rows = ["| method | layer | response F1 | streaming F1 | benign FPR | median delay (tok) | caught ≤16 | caught ≤32 "
            "| premature (in lead-in) | ms/token | % of decode |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in report["methods"].items():
        m = r["test"]
        d = m["delay"]
        ms = t.get(name)
        rows.append(f"| {name} | {r['layer'] or '–'} | {_fmt(m['response']['f1'])} | {_fmt(m['streaming']['f1'])} | "
                    f"{_fmt(m['benign_fpr'], True)} | {_fmt(d['median_tokens'], nd=1)} | {_fmt(d['within_16'], True)} | "
                    f"{_fmt(d['within_32'], True)} | {d['premature']}/{d['n']} ({d.get('premature_in_lead_in', 0)}) | {_fmt(ms, nd=4)} | "
                    f"{_fmt(ms / dec if ms is not None else None, True)} |")
    return "\n".join(rows)


def write_reports(report: dict, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    t = report["ms_per_token"]
    md = ["# Kelp text head: evaluation", "",
          f"Protected model: {report['protected_model']}; head layer {report['layer']}; threads {report['threads']}; "
          f"thresholds calibrated on the validation split (benign FPR ≤ {100 * report['fpr_budget']:.0f}%, best F1). "
          f"Test split = held-out sources. Decode {t['decode']:.1f} ms/token.", "",
          markdown_table(report), "", "## Benign false-positive rate by response length (test)", "",
          "| method | " + " | ".join(next(iter(report["methods"].values()))["test"]["benign_fpr_by_length"]) + " |",
          "| --- |" + " ---: |" * len(next(iter(report["methods"].values()))["test"]["benign_fpr_by_length"])]
    for name, r in report["methods"].items():
        b = r["test"]["benign_fpr_by_length"]
        md.append(f"| {name} | " + " | ".join(f"{_fmt(v['fpr'], True)} (n={v['n']})" for v in b.values()) + " |")
    md += ["", "## Layer sweep (SLD + ATC, test)", "", "| layer | streaming F1 | response F1 | benign FPR | median delay | val streaming F1 |",
           "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for layer, r in report["layer_sweep"].items():
        m = r["test"]
        md.append(f"| {layer} | {_fmt(m['streaming']['f1'])} | {_fmt(m['response']['f1'])} | {_fmt(m['benign_fpr'], True)} | "
                  f"{_fmt(m['delay']['median_tokens'], nd=1)} | {_fmt(r['val']['streaming']['f1'])} |")
    md += ["", "## Streaming F1 by track (test)", "", "| method | model-grounded | exact-onset |", "| --- | ---: | ---: |"]
    for name, r in report["methods"].items():
        g, o = r["test"]["streaming_grounded"], r["test"]["streaming_onset"]
        md.append(f"| {name} | {_fmt(g and g['f1'])} | {_fmt(o and o['f1'])} |")
    if report.get("seed_study"):
        md += ["", f"## Seed variation at layer {report['layer']} (test; mean ± sd over training seeds)", "",
               "| recipe | seeds | streaming F1 | response F1 | benign FPR | median delay |",
               "| --- | --- | ---: | ---: | ---: | ---: |"]
        for name, vals in report["seed_study"].items():
            def ms(key, pct=False):
                a = np.array([v[key] for v in vals if v[key] is not None], dtype=float)
                f = 100 if pct else 1
                return f"{f * a.mean():.{1 if pct else 3}f} ± {f * a.std():.{1 if pct else 3}f}" + ("%" if pct else "")
            md.append(f"| {name} | {','.join(str(v['seed']) for v in vals)} | {ms('streaming_f1')} | {ms('response_f1')} | "
                      f"{ms('benign_fpr', True)} | {ms('median_delay')} |")
    md += ["", "Reproduce: `" + report["command"] + "`", ""]
    (out_dir / "results.md").write_text("\n".join(md))

    names = list(report["methods"])
    fig, ax = plt.subplots(figsize=(6, 3))
    x = np.arange(len(names))
    ax.bar(x - 0.2, [report["methods"][n]["test"]["streaming"]["f1"] for n in names], 0.4, label="streaming F1")
    ax.bar(x + 0.2, [report["methods"][n]["test"]["response"]["f1"] for n in names], 0.4, label="response F1")
    ax.set_xticks(x, names, rotation=20, ha="right", fontsize=7)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title("Test F1 by method", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_dir / "f1_by_method.png", dpi=80)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(4, 3))
    ls = list(report["layer_sweep"])
    ax.plot([int(v) for v in ls], [report["layer_sweep"][v]["test"]["streaming"]["f1"] for v in ls], "o-", label="test")
    ax.plot([int(v) for v in ls], [report["layer_sweep"][v]["val"]["streaming"]["f1"] for v in ls], "s--", label="val")
    ax.set_xlabel("layer")
    ax.set_ylabel("streaming F1")
    ax.legend(fontsize=7)
    ax.set_title("Layer sweep (SLD + ATC)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_dir / "layer_sweep.png", dpi=80)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3))
    for n in names:
        b = report["methods"][n]["test"]["benign_fpr_by_length"]
        ax.plot(list(b), [v["fpr"] if v["fpr"] is not None else np.nan for v in b.values()], "o-", label=n)
    ax.set_xlabel("response length (tokens)")
    ax.set_ylabel("benign FPR")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out_dir / "fpr_by_length.png", dpi=80)
    plt.close(fig)
