"""Training: NTF (stage 1 + stage 2), the CNNSpot-style classifier and the NPR-style CNN, plus calibration and
the model files (``model.safetensors`` + ``model_card.json``)."""
from __future__ import annotations

import hashlib
import json
import logging
import random
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F
from tqdm import tqdm

from ..data import read_manifest
from ..processing import to_array
from .backbone import TraceBackbone, backbone_reference, extract
from .losses import soft_contrastive_loss, stage1_loss
from .models import CNNSpotHead, NPRNet, NTFHead

log = logging.getLogger(__name__)

MAX_SIDE = 192  # the detector centre-crops inputs to at most this many pixels per side
MIN_SIDE = 32


@dataclass
class NTFConfig:
    stage1: bool = True  # self-supervised natural-trace mapping on real images
    stage2: bool = True  # soft contrastive transfer
    soft: bool = True  # soft weighting in the transfer loss
    keep_stage1: float = 0.5  # weight of the stage-1 loss kept as a regulariser during stage 2
    stage1_epochs: int = 60
    stage2_epochs: int = 60
    margin: float = 1.0
    tau_soft: float = 0.1
    tau_nce: float = 0.2
    w_hom: float = 1.0
    w_inv: float = 1.0
    w_dec: float = 1.0
    lr: float = 2e-3
    batch: int = 256
    seed: int = 0


ABLATIONS = {
    "ntf": {},
    "ntf_no_stage1": {"stage1": False, "keep_stage1": 0.0},
    "ntf_no_soft": {"soft": False},
    "ntf_stage1_only": {"stage2": False},
}


# ----------------------------------------------------------------------------------------------- data access
def load_pixels(data_dir: Path, records: list[dict]) -> np.ndarray:
    return np.stack([to_array(Image.open(Path(data_dir) / r["path"]).convert("RGB")) for r in records])


def cached_features(data_dir: Path, records: list[dict], backbone: TraceBackbone | None = None) -> np.ndarray:
    """Backbone features for every record, cached in ``data_dir/features-<key>.npz`` (key: weights + taps)."""
    ref = backbone_reference()
    key = hashlib.sha256(json.dumps(ref, sort_keys=True).encode()).hexdigest()[:12]
    cache = Path(data_dir) / f"features-{key}.npz"
    have: dict[str, np.ndarray] = {}
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            have = dict(zip(z["paths"].tolist(), z["feats"]))
    missing = [r for r in records if r["path"] not in have]
    if missing:
        backbone = backbone or TraceBackbone()
        arrays = [to_array(Image.open(Path(data_dir) / r["path"]).convert("RGB")) for r in missing]
        feats = extract(backbone, arrays, progress=True)
        have.update({r["path"]: f for r, f in zip(missing, feats)})
        paths = sorted(have)
        np.savez(cache, paths=np.array(paths), feats=np.stack([have[p] for p in paths]))
    return np.stack([have[r["path"]] for r in records]).astype(np.float32)


def real_pairs(records: list[dict], idx: list[int]) -> np.ndarray:
    """(clean, processed) index pairs among ``idx`` for real images: the two views of stage 1."""
    pos = {records[i]["path"]: i for i in idx}
    pairs = [(pos[records[i]["parent"]], i) for i in idx
             if records[i]["label"] == 0 and records[i]["kind"] == "processed" and records[i].get("parent") in pos]
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


# ----------------------------------------------------------------------------------------------- NTF
def fit_ntf(feats: np.ndarray, labels: np.ndarray, pairs: np.ndarray, cfg: NTFConfig) -> NTFHead:
    """feats/labels: the training items; pairs: (clean, processed) real index pairs into them."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    f = torch.from_numpy(feats)
    y = torch.from_numpy(labels.astype(np.float32))
    model = NTFHead(f.shape[1])
    model.norm.fit(f)

    def s1(batch_pairs: np.ndarray) -> dict[str, torch.Tensor]:
        t1, s1_ = model.embed(f[batch_pairs[:, 0]])
        t2, s2_ = model.embed(f[batch_pairs[:, 1]])
        return stage1_loss(t1, t2, s1_, s2_, model.prototype, tau=cfg.tau_nce, w_hom=cfg.w_hom, w_inv=cfg.w_inv,
                           w_dec=cfg.w_dec)

    if cfg.stage1 and len(pairs) >= 4:
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
        pb = min(128, len(pairs))
        steps = cfg.stage1_epochs * max(1, len(pairs) // pb)
        model.train()
        bar = tqdm(range(steps), desc="stage 1 (real only)", unit="step", leave=False)
        for _ in bar:
            parts = s1(pairs[rng.choice(len(pairs), pb, replace=False)])
            opt.zero_grad()
            parts["total"].backward()
            opt.step()
            bar.set_postfix({k: f"{v.item():.3f}" for k, v in parts.items()})
        log.info("stage 1 done: %s", {k: round(v.item(), 4) for k, v in parts.items()})

    if cfg.stage2:
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
        n = len(f)
        steps = cfg.stage2_epochs * max(1, n // cfg.batch)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        model.train()
        bar = tqdm(range(steps), desc="stage 2 (soft contrastive)", unit="step", leave=False)
        for _ in bar:
            idx = torch.from_numpy(rng.choice(n, min(cfg.batch, n), replace=False))
            t, _ = model.embed(f[idx])
            d = 1.0 - t @ F.normalize(model.prototype, dim=0)
            loss = soft_contrastive_loss(d, y[idx], margin=cfg.margin, tau=cfg.tau_soft, soft=cfg.soft)
            if cfg.keep_stage1 > 0 and len(pairs) >= 4:
                loss = loss + cfg.keep_stage1 * s1(pairs[rng.choice(len(pairs), min(128, len(pairs)), replace=False)])["total"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            bar.set_postfix(loss=f"{loss.item():.4f}")
        log.info("stage 2 done: loss %.4f", loss.item())
    return model.eval()


# ----------------------------------------------------------------------------------------------- baselines
def fit_cnnspot(feats: np.ndarray, labels: np.ndarray, epochs: int = 60, lr: float = 2e-3, batch: int = 256,
                seed: int = 0) -> CNNSpotHead:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    f = torch.from_numpy(feats)
    y = torch.from_numpy(labels.astype(np.float32))
    model = CNNSpotHead(f.shape[1])
    model.norm.fit(f)
    pos_weight = torch.tensor((y == 0).sum().item() / max(1.0, (y == 1).sum().item()))  # balance the classes
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * max(1, len(f) // batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    for _ in tqdm(range(steps), desc="cnnspot head", unit="step", leave=False):
        idx = torch.from_numpy(rng.choice(len(f), min(batch, len(f)), replace=False))
        loss = F.binary_cross_entropy_with_logits(model(f[idx]), y[idx], pos_weight=pos_weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


def fit_npr(pixels: np.ndarray, labels: np.ndarray, epochs: int = 6, lr: float = 2e-3, batch: int = 64,
            crop: int = 64, seed: int = 0) -> NPRNet:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x_all = torch.from_numpy(pixels)
    y = torch.from_numpy(labels.astype(np.float32))
    model = NPRNet()
    pos_weight = torch.tensor((y == 0).sum().item() / max(1.0, (y == 1).sum().item()))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * max(1, len(x_all) // batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    bar = tqdm(range(steps), desc="npr cnn", unit="step", leave=False)
    for _ in bar:
        idx = torch.from_numpy(rng.choice(len(x_all), min(batch, len(x_all)), replace=False))
        x = x_all[idx]
        if crop and x.shape[-1] > crop:  # random crop at an even offset (keeps the 2x2 NPR grid aligned)
            oy, ox = (2 * int(rng.integers(0, (x.shape[-2] - crop) // 2 + 1)),
                      2 * int(rng.integers(0, (x.shape[-1] - crop) // 2 + 1)))
            x = x[..., oy:oy + crop, ox:ox + crop]
        if rng.random() < 0.5:  # flips keep pixel relations intact
            x = x.flip(-1)
        loss = F.binary_cross_entropy_with_logits(model(x), y[idx], pos_weight=pos_weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.4f}")
    return model.eval()


@torch.no_grad()
def score_features(model, feats: np.ndarray) -> np.ndarray:
    return model(torch.from_numpy(feats)).numpy().astype(np.float64)


@torch.no_grad()
def score_pixels(model: NPRNet, pixels, batch: int = 64) -> np.ndarray:
    """Scores for an (N, 3, H, W) array or a list of 3xHxW arrays of possibly different sizes."""
    arrays = list(pixels)
    out = np.zeros(len(arrays), dtype=np.float64)
    by_size: dict[tuple, list[int]] = {}
    for i, a in enumerate(arrays):
        by_size.setdefault(a.shape, []).append(i)
    for idx in by_size.values():
        for k in range(0, len(idx), batch):
            chunk = idx[k:k + batch]
            out[chunk] = model(torch.from_numpy(np.stack([arrays[i] for i in chunk]))).numpy()
    return out


def calibrate(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Platt scaling: p = sigmoid(a * score + b), fitted on validation scores."""
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=100.0, class_weight="balanced")
    lr.fit(scores.reshape(-1, 1), labels)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def fit_method(method: str, data_dir: Path, records: list[dict], train_idx: list[int], feats: np.ndarray | None,
               pixels: np.ndarray | None, stage1_epochs: int, stage2_epochs: int, npr_epochs: int, seed: int):
    labels = np.array([records[i]["label"] for i in train_idx])
    if method.startswith("ntf"):
        cfg = NTFConfig(stage1_epochs=stage1_epochs, stage2_epochs=stage2_epochs, seed=seed, **ABLATIONS[method])
        pos = {j: k for k, j in enumerate(train_idx)}
        pairs = np.array([[pos[a], pos[b]] for a, b in real_pairs(records, train_idx)], dtype=np.int64).reshape(-1, 2)
        if not cfg.stage2:  # one-class: real images only
            keep = [k for k, i in enumerate(train_idx) if records[i]["label"] == 0]
            remap = {k: n for n, k in enumerate(keep)}
            pairs = np.array([[remap[a], remap[b]] for a, b in pairs], dtype=np.int64).reshape(-1, 2)
            return fit_ntf(feats[train_idx][keep], labels[keep], pairs, cfg)
        return fit_ntf(feats[train_idx], labels, pairs, cfg)
    if method == "cnnspot":
        return fit_cnnspot(feats[train_idx], labels, epochs=stage2_epochs, seed=seed)
    if method == "npr":
        return fit_npr(pixels[train_idx], labels, epochs=npr_epochs, seed=seed)
    raise ValueError(f"unknown method {method!r}")


# ----------------------------------------------------------------------------------------------- default model
def split_indices(records: list[dict], split: str, exclude: list[str] = ()) -> list[int]:
    return [i for i, r in enumerate(records) if r["split"] == split and r["family"] not in exclude]


def save_model(model, out: Path, card: dict) -> dict:
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"), metadata={"method": card["method"]})
    digest = hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()
    card = {**card, "version": f"{card['method']}-{digest[:12]}", "weights_sha256": digest}
    (out / "model_card.json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def train_default(data_dir: Path, out: Path, method: str = "ntf", exclude: list[str] = (), stage1_epochs: int = 60,
                  stage2_epochs: int = 60, npr_epochs: int = 6, seed: int = 0) -> dict:
    from sklearn.metrics import average_precision_score

    torch.set_num_threads(1)
    random.seed(seed)
    records = read_manifest(data_dir)
    tr, va = split_indices(records, "train", exclude), split_indices(records, "val", exclude)
    feats = pixels = None
    if method == "npr":
        pixels = load_pixels(data_dir, records)
    else:
        feats = cached_features(data_dir, records)
    model = fit_method(method, data_dir, records, tr, feats, pixels, stage1_epochs, stage2_epochs, npr_epochs, seed)
    val_scores = score_pixels(model, pixels[va]) if method == "npr" else score_features(model, feats[va])
    val_y = np.array([records[i]["label"] for i in va])
    a, b = calibrate(val_scores, val_y)
    families = sorted({records[i]["family"] for i in tr} - {"real"})
    card = {
        "method": method,
        "description": {"ntf": "Natural Trace Forensics: distance to the natural-trace prototype",
                        "cnnspot": "plain binary classifier on the same frozen backbone",
                        "npr": "residual CNN on the nearest-neighbour pixel residual"}[method],
        "threshold": 0.5,
        "calibration": {"a": a, "b": b, "formula": "p = sigmoid(a * score + b)"},
        "input": {"max_side": MAX_SIDE, "min_side": MIN_SIDE, "preprocessing": "RGB, centre crop to max_side, no resize"},
        "backbone": backbone_reference() if method != "npr" else None,
        "feature_dim": int(feats.shape[1]) if feats is not None else None,
        "train": {"families": families, "excluded": list(exclude), "n_train": len(tr), "n_val": len(va),
                  "stage1_epochs": stage1_epochs, "stage2_epochs": stage2_epochs, "npr_epochs": npr_epochs,
                  "seed": seed},
        "config": asdict(NTFConfig(stage1_epochs=stage1_epochs, stage2_epochs=stage2_epochs, seed=seed))
        if method == "ntf" else None,
        "val_ap": float(average_precision_score(val_y, val_scores)),
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": f"tidegate train image --method {method} --stage1-epochs {stage1_epochs} "
                   f"--stage2-epochs {stage2_epochs} --seed {seed}" + (f" --exclude {' '.join(exclude)}" if exclude else ""),
    }
    card = save_model(model, out, card)
    log.info("saved %s model to %s (val AP %.4f)", method, out, card["val_ap"])
    return card
