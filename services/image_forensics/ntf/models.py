"""Trainable parts: the NTF heads, the CNNSpot-style classifier head (same frozen backbone) and the NPR-style
residual CNN (from scratch, pixels in). Each model maps a batch to a raw score where larger = more fake; a Platt
calibration (a, b) turns it into a probability p = sigmoid(a * score + b)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .losses import trace_distance


class Standardize(nn.Module):
    """Feature standardisation with statistics of the training set (stored with the model)."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def fit(self, feats: torch.Tensor) -> None:
        self.mean.copy_(feats.mean(0))
        self.std.copy_(feats.std(0).clamp_min(1e-6))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return (f - self.mean) / self.std


def _adapter(dim: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Dropout(0.1), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, out), nn.GELU())


class NTFHead(nn.Module):
    """Backbone features -> shared adapter -> natural-trace head T and image-specific head S; prototype c."""

    def __init__(self, dim: int, hidden: int = 256, width: int = 128, emb: int = 64):
        super().__init__()
        self.norm = Standardize(dim)
        self.adapter = _adapter(dim, hidden, width)
        self.trace = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, emb))
        self.specific = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, emb))
        self.prototype = nn.Parameter(F.normalize(torch.randn(emb), dim=0))

    def embed(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.adapter(self.norm(f))
        return F.normalize(self.trace(h), dim=-1), F.normalize(self.specific(h), dim=-1)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        """Raw score: distance to the natural traces."""
        t, _ = self.embed(f)
        return trace_distance(t, self.prototype)


class CNNSpotHead(nn.Module):
    """Plain binary classifier on the same frozen features (CNNSpot-style): adapter + linear logit."""

    def __init__(self, dim: int, hidden: int = 256, width: int = 128):
        super().__init__()
        self.norm = Standardize(dim)
        self.adapter = _adapter(dim, hidden, width)
        self.logit = nn.Linear(width, 1)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.logit(self.adapter(self.norm(f))).squeeze(-1)


def npr_residual(x: torch.Tensor) -> torch.Tensor:
    """Neighbouring-pixel relation: the image minus its nearest-neighbour x2 down/up copy (crop to even size)."""
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    x = x[..., :h, :w]
    return x - F.interpolate(x[..., ::2, ::2], scale_factor=2, mode="nearest")


class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.b2(self.c2(F.relu(self.b1(self.c1(x))))) + self.skip(x))


class NPRNet(nn.Module):
    """Small residual CNN trained from scratch on the NPR residual (NPR-style baseline). Input x in [0, 1].
    The stem has stride 2 (it still sees every pixel of the residual) to keep CPU training affordable."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.body = nn.Sequential(_ResBlock(width, width, 1), _ResBlock(width, 2 * width, 2),
                                  _ResBlock(2 * width, 4 * width, 2))
        self.fc = nn.Linear(4 * width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(self.stem(npr_residual(x) * 4.0))  # residuals are small; x4 keeps BN inputs O(1)
        return self.fc(h.mean((-2, -1))).squeeze(-1)
