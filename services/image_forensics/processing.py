"""Deterministic image operations shared by data building, training, evaluation and scoring.

Everything here is PIL/numpy only (no torchvision). Operations take and return RGB ``PIL.Image`` objects and are
deterministic for a given argument set, so the same input always gives the same pixels.
"""
from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image, ImageFilter

# The processing a real photo ordinarily goes through on its way to a platform; used as "real" controls.
PROCESS_KINDS = ("resize_roundtrip", "jpeg", "blur")


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB the same way every time (alpha composited over white)."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if arr.max() > 255 else 255.0
        arr = np.clip(np.round(arr / peak * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        arr = np.clip(np.round(arr * 255.0 if arr.max() <= 1.0 else arr), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(quality), subsampling=2)
    buf.seek(0)
    with Image.open(buf) as out:
        return out.convert("RGB")


def blur(img: Image.Image, sigma: float) -> Image.Image:
    return img if sigma <= 0 else img.filter(ImageFilter.GaussianBlur(radius=float(sigma)))


def resize(img: Image.Image, factor: float) -> Image.Image:
    w, h = img.size
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return img if size == img.size else img.resize(size, Image.BICUBIC)


def resize_roundtrip(img: Image.Image, factor: float) -> Image.Image:
    """Bicubic down to ``factor`` and back up: the softening every resizing pipeline applies to real photos."""
    return resize(img, factor).resize(img.size, Image.BICUBIC)


def center_crop(img: Image.Image, fraction: float) -> Image.Image:
    w, h = img.size
    cw, ch = max(1, round(w * fraction)), max(1, round(h * fraction))
    left, top = (w - cw) // 2, (h - ch) // 2
    return img.crop((left, top, left + cw, top + ch))


def random_processing(img: Image.Image, rng: random.Random) -> tuple[Image.Image, str]:
    """One ordinary processing step with random strength; returns the image and a short description."""
    kind = rng.choice(PROCESS_KINDS)
    if kind == "resize_roundtrip":
        f = rng.uniform(0.5, 0.85)
        return resize_roundtrip(img, f), f"resize_roundtrip:{f:.2f}"
    if kind == "jpeg":
        q = rng.randint(60, 95)
        return jpeg(img, q), f"jpeg:{q}"
    s = rng.uniform(0.4, 1.2)
    return blur(img, s), f"blur:{s:.2f}"


def model_view(img: Image.Image, max_side: int) -> Image.Image:
    """What the detector sees: RGB, centre-cropped (never resized, resizing would erase the traces) to at most
    ``max_side`` pixels on each side."""
    img = to_rgb(img)
    w, h = img.size
    cw, ch = min(w, max_side), min(h, max_side)
    if (cw, ch) != (w, h):
        left, top = (w - cw) // 2, (h - ch) // 2
        img = img.crop((left, top, left + cw, top + ch))
    return img


def to_array(img: Image.Image) -> np.ndarray:
    """HxWx3 uint8 -> 3xHxW float32 in [0, 1]."""
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1), dtype=np.float32) / 255.0
