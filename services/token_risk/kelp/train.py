"""Training from the hidden-state cache: SLD heads (ATC or CE-only), the linear probe, threshold calibration."""
from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .sld import SLDHead, atc_loss, dense_ce_loss, running_max, token_targets_atc

log = logging.getLogger(__name__)


def load_samples(data_dir: str | Path) -> list[dict]:
    path = Path(data_dir) / "samples.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: run 'tidegate data text' first")
    rows = [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return [r for r in rows if r.get("onset", -1) != -2 and r.get("n_response", 0) > 0]


class HiddenCache:
    """Samples plus one layer's float16 token matrix (kept in memory: a few hundred MB at most)."""

    def __init__(self, data_dir: str | Path, layer: int, samples: list[dict] | None = None):
        self.data_dir = Path(data_dir)
        self.layer = layer
        self.samples = samples if samples is not None else load_samples(data_dir)
        path = self.data_dir / f"hidden_L{layer}.npy"
        if not path.exists():
            raise FileNotFoundError(f"{path} missing: layer {layer} was not extracted (see 'tidegate data text --layers')")
        self.mat = np.load(path, mmap_mode="r")
        self.hidden_dim = int(self.mat.shape[1])
        self.meta = json.loads((self.data_dir / "data_card.json").read_text()) if (self.data_dir / "data_card.json").exists() else {}

    def split(self, name: str) -> list[dict]:
        return [s for s in self.samples if s["split"] == name]

    def pair(self, s: dict) -> tuple[torch.Tensor, torch.Tensor]:
        a, p, r = s["row"], s["n_prompt"], s["n_response"]
        block = torch.from_numpy(np.asarray(self.mat[a:a + p + r], dtype=np.float32))
        return block[:p], block[p:]


@dataclass
class Batch:
    Hp: torch.Tensor
    pmask: torch.Tensor
    H: torch.Tensor
    rmask: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor
    onsets: torch.Tensor


def collate(pairs: list[tuple[torch.Tensor, torch.Tensor]], rows: list[dict]) -> Batch:
    B = len(pairs)
    P = max(p.shape[0] for p, _ in pairs)
    T = max(r.shape[0] for _, r in pairs)
    D = pairs[0][0].shape[1]
    Hp, H = torch.zeros(B, P, D), torch.zeros(B, T, D)
    pm, rm = torch.zeros(B, P, dtype=torch.bool), torch.zeros(B, T, dtype=torch.bool)
    for i, (p, r) in enumerate(pairs):
        Hp[i, : p.shape[0]], pm[i, : p.shape[0]] = p, True
        H[i, : r.shape[0]], rm[i, : r.shape[0]] = r, True
    lengths = torch.tensor([r.shape[0] for _, r in pairs])
    labels = torch.tensor([int(s["label"]) for s in rows])
    # exact-onset rows: harmful ones carry their onset, benign controls get onset = length (nothing after it)
    onsets = torch.tensor([s["onset"] if s["track"] == "onset" and s["label"] else
                           (r.shape[0] if s["track"] == "onset" else -1) for s, (_, r) in zip(rows, pairs)])
    return Batch(Hp, pm, H, rm, lengths, labels, onsets)


def _batches(rows: list[dict], batch_size: int, rng: random.Random) -> list[list[dict]]:
    rows = sorted(rows, key=lambda s: s["n_response"])  # similar lengths together: less padding to scan
    chunks = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    rng.shuffle(chunks)
    return chunks


@dataclass
class TrainConfig:
    method: str = "atc"          # "atc" or "ce"
    window: int = 8
    proj_dim: int = 64
    mem_dim: int = 128
    epochs: int = 10
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    anchor_k: int = 4
    lam_smooth: float = 0.5
    lam_mono: float = 0.5
    grounded_weight: float = 1.0  # CE weight of the model-grounded anchors relative to exact-onset tokens
    seed: int = 0


def train_sld(cache: HiddenCache, cfg: TrainConfig, desc: str = "train") -> SLDHead:
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    head = SLDHead(cache.hidden_dim, proj_dim=cfg.proj_dim, mem_dim=cfg.mem_dim, window=cfg.window)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rows = cache.split("train")
    pairs = {s["id"]: cache.pair(s) for s in rows}
    n_steps = cfg.epochs * ((len(rows) + cfg.batch_size - 1) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(1, n_steps), pct_start=0.1)
    head.train()
    with tqdm(total=n_steps, desc=desc, unit="batch") as bar:
        for epoch in range(cfg.epochs):
            for chunk in _batches(rows, cfg.batch_size, rng):
                b = collate([pairs[s["id"]] for s in chunk], chunk)
                state = head.init_state(b.Hp, b.pmask)
                _, logits = head.scan_logits(state, b.H)
                if cfg.method == "atc":
                    tgt, w = token_targets_atc(b.lengths, b.labels, b.onsets, b.H.shape[1], cfg.anchor_k)
                    w = torch.where((b.onsets < 0).unsqueeze(1), w * cfg.grounded_weight, w)
                    loss, parts = atc_loss(logits, b.rmask, tgt, w, cfg.lam_smooth, cfg.lam_mono)
                elif cfg.method == "ce":
                    loss, parts = dense_ce_loss(logits, b.rmask, b.labels)
                else:
                    raise ValueError(f"unknown method {cfg.method}")
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
                opt.step()
                sched.step()
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{float(loss):.3f}")
    head.eval()
    return head


@torch.no_grad()
def sld_scores(head: SLDHead, cache: HiddenCache, rows: list[dict], batch_size: int = 64) -> list[np.ndarray]:
    """Per-token harm probabilities for each row (streaming order, one scan per row)."""
    out: dict[str, np.ndarray] = {}
    srt = sorted(rows, key=lambda s: s["n_response"])
    for i in range(0, len(srt), batch_size):
        chunk = srt[i:i + batch_size]
        b = collate([cache.pair(s) for s in chunk], chunk)
        _, p = head.scan(head.init_state(b.Hp, b.pmask), b.H)
        for j, s in enumerate(chunk):
            out[s["id"]] = p[j, : s["n_response"]].numpy()
    return [out[s["id"]] for s in rows]


# ---- linear probe -------------------------------------------------------------------------------------------
class LinearProbe(torch.nn.Module):
    """Logistic regression on one layer's (normalised) hidden state, token by token; no memory."""

    def __init__(self, hidden_dim: int):
        super().__init__()
        self.norm = torch.nn.LayerNorm(hidden_dim, elementwise_affine=False)
        self.lin = torch.nn.Linear(hidden_dim, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.lin(self.norm(h.float())).squeeze(-1)


def train_probe(cache: HiddenCache, epochs: int = 30, anchor_k: int = 4, seed: int = 0) -> LinearProbe:
    """Same token supervision as ATC (anchors, exact-onset tokens), no temporal terms, no state."""
    torch.manual_seed(seed)
    rows = cache.split("train")
    X, Y = [], []
    for s in rows:
        _, r = cache.pair(s)
        b = collate([(torch.zeros(1, r.shape[1]), r)], [s])
        tgt, w = token_targets_atc(b.lengths, b.labels, b.onsets, r.shape[0], anchor_k)
        keep = w[0] > 0
        X.append(r[keep])
        Y.append(tgt[0][keep])
    X, Y = torch.cat(X), torch.cat(Y)
    probe = LinearProbe(cache.hidden_dim)
    opt = torch.optim.AdamW(probe.parameters(), lr=1e-2, weight_decay=1e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in tqdm(range(epochs), desc="probe", unit="epoch"):
        perm = torch.randperm(len(X), generator=g)
        for i in range(0, len(X), 512):
            idx = perm[i:i + 512]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(probe(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    probe.eval()
    return probe


@torch.no_grad()
def probe_scores(probe: LinearProbe, cache: HiddenCache, rows: list[dict]) -> list[np.ndarray]:
    return [torch.sigmoid(probe(cache.pair(s)[1])).numpy() for s in rows]


# ---- calibration --------------------------------------------------------------------------------------------
def calibrate_threshold(rows: list[dict], scores: list[np.ndarray], fpr_budget: float = 0.05) -> float:
    """Threshold on the running max: the best streaming F1 on ``rows`` among thresholds whose benign FPR <= budget."""
    peaks = np.array([float(running_max(torch.from_numpy(np.asarray(p))).max()) if len(p) else 0.0 for p in scores])
    y = np.array([int(s["label"]) for s in rows])
    cands = np.unique(np.concatenate([peaks, peaks + 1e-6, [0.5, 0.999]]))
    best, best_f1 = 0.999, -1.0
    for t in cands:
        if not 0.0 < t < 1.0:
            continue
        pred = peaks >= t
        fpr = pred[y == 0].mean() if (y == 0).any() else 0.0
        if fpr > fpr_budget:
            continue
        tp = (pred & (y == 1)).sum()
        f1 = 2 * tp / max(1, pred.sum() + (y == 1).sum())
        if f1 > best_f1 or (f1 == best_f1 and t < best):
            best, best_f1 = float(t), float(f1)
    return best
