"""``tidegate eval image``: leave-one-family-out evaluation, ablations, baselines, robustness, ROC plots.

For every generator family F: train on the train split without F, calibrate on the validation split without F,
test on the test split's real images (clean and processed controls) and F's fakes (clean and processed).
Robustness: models trained on all families, clean test images perturbed (JPEG, blur, resize, centre crop).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.metrics import average_precision_score, roc_curve
from tqdm import tqdm

from ..data import read_manifest
from ..processing import blur, center_crop, jpeg, resize, to_array
from .train import (calibrate, cached_features, fit_method, load_pixels, score_features, score_pixels,
                    split_indices)

log = logging.getLogger(__name__)

ROBUSTNESS = {
    "jpeg": [None, 95, 85, 75, 65, 50],
    "blur": [None, 0.5, 1.0, 1.5, 2.0],
    "resize": [0.5, 0.75, None, 1.25, 1.5],
    "crop": [None, 0.9, 0.75, 0.5],
}
METHOD_NAMES = {"ntf": "NTF (ours)", "ntf_no_stage1": "NTF w/o stage 1", "ntf_no_soft": "NTF w/o soft weights",
                "ntf_stage1_only": "NTF stage 1 only (one-class)", "cnnspot": "CNNSpot-style classifier",
                "npr": "NPR-style residual CNN"}


def _perturb(img: Image.Image, kind: str, value) -> Image.Image:
    if value is None:
        return img
    return {"jpeg": jpeg, "blur": blur, "resize": resize, "crop": center_crop}[kind](img, value)


def _metrics(scores: np.ndarray, probs: np.ndarray, y: np.ndarray, kinds: list[str]) -> dict:
    kinds_arr = np.array(kinds)
    out = {"ap": float(average_precision_score(y, scores)), "acc": float(((probs >= 0.5) == (y == 1)).mean()),
           "n_real": int((y == 0).sum()), "n_fake": int((y == 1).sum())}
    for control in ("clean", "processed"):  # fakes (all) against one kind of real image
        m = (y == 1) | (kinds_arr == control)
        out[f"ap_vs_{control}_real"] = float(average_precision_score(y[m], scores[m]))
    out["real_acc"] = float((probs[y == 0] < 0.5).mean())
    out["fake_acc"] = float((probs[y == 1] >= 0.5).mean())
    return out


def _scores(method: str, model, idx: list[int], feats, pixels) -> np.ndarray:
    return score_pixels(model, pixels[idx]) if method == "npr" else score_features(model, feats[idx])


def run_evaluation(data_dir: Path, report_dir: Path, model_dir: Path | None = None, methods: list[str] = ("ntf",),
                   npr_epochs: int = 6, stage1_epochs: int = 60, stage2_epochs: int = 60, robustness: bool = True,
                   max_test: int = 0, seed: int = 0) -> dict:
    torch.set_num_threads(1)
    data_dir, report_dir = Path(data_dir), Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    records = read_manifest(data_dir)
    families = sorted({r["family"] for r in records} - {"real"})
    feats = cached_features(data_dir, records)
    pixels = load_pixels(data_dir, records) if "npr" in methods else None
    y_all = np.array([r["label"] for r in records])
    results: dict = {"families": families, "methods": list(methods), "lofo": {}, "settings": {
        "npr_epochs": npr_epochs, "stage1_epochs": stage1_epochs, "stage2_epochs": stage2_epochs, "seed": seed}}
    roc_data: dict = {}
    folds = [(f, [f]) for f in families]
    for held, exclude in tqdm(folds, desc="leave-one-family-out", unit="fold"):
        tr = split_indices(records, "train", exclude)
        va = split_indices(records, "val", exclude)
        te = [i for i in split_indices(records, "test") if records[i]["family"] in ("real", held)]
        results["lofo"][held] = {}
        for method in methods:
            model = fit_method(method, data_dir, records, tr, feats, pixels, stage1_epochs, stage2_epochs,
                               npr_epochs, seed)
            a, b = calibrate(_scores(method, model, va, feats, pixels), y_all[va])
            s = _scores(method, model, te, feats, pixels)
            p = 1.0 / (1.0 + np.exp(-(a * s + b)))
            m = _metrics(s, p, y_all[te], [records[i]["kind"] for i in te])
            results["lofo"][held][method] = m
            roc_data.setdefault(held, {})[method] = roc_curve(y_all[te], s)[:2]
            log.info("held out %s, %s: AP %.4f acc %.4f", held, method, m["ap"], m["acc"])
    results["mean_ap"] = {m: float(np.mean([results["lofo"][f][m]["ap"] for f in families])) for m in methods}
    results["mean_acc"] = {m: float(np.mean([results["lofo"][f][m]["acc"] for f in families])) for m in methods}
    results["mean_ap_vs_processed_real"] = {
        m: float(np.mean([results["lofo"][f][m]["ap_vs_processed_real"] for f in families])) for m in methods}
    _plot_roc(roc_data, families, methods, report_dir / "roc_lofo.png")

    if robustness:
        results["robustness"] = _robustness(data_dir, records, feats, pixels, methods, npr_epochs, stage1_epochs,
                                            stage2_epochs, max_test, seed, report_dir)
    (report_dir / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (report_dir / "results.md").write_text(results_markdown(results))
    return {"mean_ap": results["mean_ap"], "mean_acc": results["mean_acc"],
            "jpeg75_ap_drop": results.get("robustness", {}).get("jpeg75_ap_drop")}


def _robustness(data_dir, records, feats, pixels, methods, npr_epochs, stage1_epochs, stage2_epochs, max_test, seed,
                report_dir) -> dict:
    from .backbone import TraceBackbone, extract

    chosen = [m for m in ("ntf", "cnnspot", "npr") if m in methods]
    tr, va = split_indices(records, "train"), split_indices(records, "val")
    te = [i for i in split_indices(records, "test") if records[i]["kind"] == "clean"]
    if max_test and len(te) > max_test:
        te = sorted(np.random.default_rng(seed).choice(te, max_test, replace=False).tolist())
    y = np.array([records[i]["label"] for i in te])
    y_all = np.array([r["label"] for r in records])
    models, cals = {}, {}
    for m in chosen:
        models[m] = fit_method(m, data_dir, records, tr, feats, pixels, stage1_epochs, stage2_epochs, npr_epochs, seed)
        cals[m] = calibrate(_scores(m, models[m], va, feats, pixels), y_all[va])
    backbone = TraceBackbone()
    images = [Image.open(data_dir / records[i]["path"]).convert("RGB") for i in te]
    out: dict = {"n_test": len(te), "curves": {}}
    conditions = [(k, v) for k, vals in ROBUSTNESS.items() for v in vals]
    for kind, value in tqdm(conditions, desc="robustness", unit="condition"):
        arrays = [to_array(_perturb(img, kind, value)) for img in images]
        f = extract(backbone, arrays) if any(m != "npr" for m in chosen) else None
        for m in chosen:
            s = score_pixels(models[m], arrays) if m == "npr" else score_features(models[m], f)
            a, b = cals[m]
            p = 1.0 / (1.0 + np.exp(-(a * s + b)))
            out["curves"].setdefault(m, {}).setdefault(kind, []).append(
                {"value": value, "ap": float(average_precision_score(y, s)),
                 "acc": float(((p >= 0.5) == (y == 1)).mean())})
    for m in chosen:
        base = next(c["ap"] for c in out["curves"][m]["jpeg"] if c["value"] is None)
        q75 = next(c["ap"] for c in out["curves"][m]["jpeg"] if c["value"] == 75)
        out.setdefault("jpeg75_ap_drop", {})[m] = float(base - q75)
    _plot_robustness(out["curves"], report_dir / "robustness.png")
    return out


def _plot_roc(roc_data: dict, families: list[str], methods: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(families), figsize=(3.2 * len(families), 3.2), squeeze=False)
    for ax, fam in zip(axes[0], families):
        for m in methods:
            fpr, tpr = roc_data[fam][m]
            ax.plot(fpr, tpr, lw=1.2, label=METHOD_NAMES.get(m, m))
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set_title(f"held out: {fam}", fontsize=9)
        ax.set_xlabel("false positive rate", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("true positive rate", fontsize=8)
    axes[0][-1].legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _plot_robustness(curves: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {"jpeg": "JPEG quality (none, 95..50)", "blur": "Gaussian blur sigma", "resize": "resize factor",
              "crop": "centre crop fraction"}
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.2))
    for ax, kind in zip(axes, ROBUSTNESS):
        for m, per_kind in curves.items():
            pts = per_kind[kind]
            xs = [str(p["value"] if p["value"] is not None else "none") for p in pts]
            ax.plot(xs, [p["ap"] for p in pts], marker="o", ms=3, label=METHOD_NAMES.get(m, m))
        ax.set_title(labels[kind], fontsize=9)
        ax.set_ylim(0.4, 1.01)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("AP", fontsize=8)
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def results_markdown(results: dict) -> str:
    fams, methods = results["families"], results["methods"]
    lines = ["# Image forensics: leave-one-family-out results", "",
             "Reproduce: `tidegate eval image` (settings: " + ", ".join(f"{k}={v}" for k, v in results["settings"].items())
             + "). Each column trains on the other families and tests on the held-out one against held-out real "
             "photos (clean + processed controls). Cells: AP / accuracy at the calibrated 0.5 threshold.", "",
             "| method | " + " | ".join(fams) + " | mean AP | mean acc | mean AP vs processed reals |",
             "|---|" + "---|" * (len(fams) + 3)]
    for m in methods:
        cells = [f"{results['lofo'][f][m]['ap']:.3f} / {results['lofo'][f][m]['acc']:.3f}" for f in fams]
        lines.append(f"| {METHOD_NAMES.get(m, m)} | " + " | ".join(cells)
                     + f" | **{results['mean_ap'][m]:.3f}** | {results['mean_acc'][m]:.3f} | "
                     f"{results['mean_ap_vs_processed_real'][m]:.3f} |")
    lines += ["", "Detection rate on the held-out family's fakes / specificity on real test images, at the calibrated "
              "threshold (accuracy above is dominated by the real images, which are ~80% of each test set):", "",
              "| method | " + " | ".join(fams) + " |", "|---|" + "---|" * len(fams)]
    for m in methods:
        lines.append(f"| {METHOD_NAMES.get(m, m)} | " + " | ".join(
            f"{results['lofo'][f][m]['fake_acc']:.3f} / {results['lofo'][f][m]['real_acc']:.3f}" for f in fams) + " |")
    any_m = methods[0]
    lines += ["", "Chance AP (share of fakes in each test set): " + ", ".join(
        f"{f} {results['lofo'][f][any_m]['n_fake'] / (results['lofo'][f][any_m]['n_fake'] + results['lofo'][f][any_m]['n_real']):.3f}"
        for f in fams) + "."]
    rob = results.get("robustness")
    if rob:
        lines += ["", f"## Robustness (trained on all families; {rob['n_test']} clean test images perturbed; AP)"]
        for kind in ROBUSTNESS:
            vals = [p["value"] for p in next(iter(rob["curves"].values()))[kind]]
            lines += ["", f"| {kind} | " + " | ".join(str(v if v is not None else "none") for v in vals) + " |",
                      "|---|" + "---|" * len(vals)]
            for m, per in rob["curves"].items():
                lines.append(f"| {METHOD_NAMES.get(m, m)} | " + " | ".join(f"{p['ap']:.3f}" for p in per[kind]) + " |")
        lines += ["", "AP drop at JPEG q75: " + ", ".join(f"{METHOD_NAMES.get(m, m)} {v:+.3f}"
                                                        for m, v in rob["jpeg75_ap_drop"].items()) + ".",
                  "", "Plots: `roc_lofo.png`, `robustness.png`."]
    return "\n".join(lines) + "\n"
