"""NTF losses (written out in docs/ntf.md). All embeddings are L2-normalised by the callers' heads;
these functions normalise again so they are safe on raw inputs.

Notation: t = natural-trace embedding, s = image-specific embedding, c = natural-trace prototype,
d = 1 - cos(t, c) the distance to the natural traces (0 = perfectly natural, 2 = opposite).
"""
from __future__ import annotations

import torch
from torch.nn import functional as F


def trace_distance(t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """d_i = 1 - cos(t_i, c)."""
    return 1.0 - F.normalize(t, dim=-1) @ F.normalize(c, dim=-1)


def nt_xent(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
    """Symmetric InfoNCE over 2B views: view i's positive is its pair, the other 2B-2 views are negatives."""
    z = F.normalize(torch.cat([a, b]), dim=-1)
    n = a.shape[0]
    sim = z @ z.T / tau
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


def stage1_loss(t1: torch.Tensor, t2: torch.Tensor, s1: torch.Tensor, s2: torch.Tensor, c: torch.Tensor,
                tau: float = 0.2, w_hom: float = 1.0, w_inv: float = 1.0, w_dec: float = 1.0) -> dict[str, torch.Tensor]:
    """Self-supervised natural-trace mapping on real images only; (t1, s1) and (t2, s2) are two views
    (a crop and an ordinarily processed copy of it).

    L_inst = NT-Xent(s1, s2; tau)                       image-specific head tells images apart
    L_hom  = mean_i d(t_i)  over both views             natural traces are shared by all real photos
    L_inv  = mean_i (1 - cos(t1_i, t2_i))               ... and survive ordinary processing
    L_dec  = mean_i cos(t_i, s_i)^2  over both views    trace and specific features carry different information
    L      = L_inst + w_hom L_hom + w_inv L_inv + w_dec L_dec
    """
    t1n, t2n, s1n, s2n = (F.normalize(v, dim=-1) for v in (t1, t2, s1, s2))
    inst = nt_xent(s1n, s2n, tau)
    hom = torch.cat([trace_distance(t1n, c), trace_distance(t2n, c)]).mean()
    inv = (1.0 - (t1n * t2n).sum(-1)).mean()
    dec = torch.cat([(t1n * s1n).sum(-1) ** 2, (t2n * s2n).sum(-1) ** 2]).mean()
    total = inst + w_hom * hom + w_inv * inv + w_dec * dec
    return {"total": total, "inst": inst, "hom": hom, "inv": inv, "dec": dec}


def soft_contrastive_loss(d: torch.Tensor, y: torch.Tensor, margin: float = 1.0, tau: float = 0.1,
                          soft: bool = True) -> torch.Tensor:
    """Soft contrastive transfer against the natural-trace prototype.

    d: distances to the prototype (B,), y: 1 = fake, 0 = real (float or int).
      per-sample:  l_i = (1 - y_i) d_i^2 + y_i max(0, m - d_i)^2
      hardness:    h_i = (1 - y_i)(d_i - m/2) + y_i (m/2 - d_i)       (> 0: on the wrong side of m/2)
      soft weight: w_i = sigmoid(h_i / tau), treated as a constant (no gradient); w_i = 1 when soft=False
      loss:        L = 1/2 [ sum_real w l / sum_real w ] + 1/2 [ sum_fake w l / sum_fake w ]
    A class missing from the batch contributes 0 (and the other class's term is not rescaled).
    """
    y = y.to(d.dtype)
    per = (1.0 - y) * d.pow(2) + y * F.relu(margin - d).pow(2)
    if soft:
        hard = (1.0 - y) * (d - margin / 2) + y * (margin / 2 - d)
        w = torch.sigmoid(hard / tau).detach()
    else:
        w = torch.ones_like(d)
    total = d.new_zeros(())
    for mask in (y < 0.5, y >= 0.5):
        if mask.any():
            total = total + 0.5 * (w[mask] * per[mask]).sum() / w[mask].sum().clamp_min(1e-12)
    return total
