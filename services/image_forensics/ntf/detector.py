"""Public API of the image forensics detector (used by the scoring CLI and the image worker).

    from tidegate.services.image_forensics.ntf.detector import load_detector, decode_image
    det = load_detector()                       # packaged default model
    p = det.predict_proba([decode_image(data)]) # numpy array of fake probabilities
    det.card["version"], det.card["threshold"]
"""
from __future__ import annotations

import io
import json
import logging
import threading
import warnings
from pathlib import Path
from typing import IO, Iterable

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..processing import model_view, to_array, to_rgb

log = logging.getLogger(__name__)

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "default"
MAX_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 40_000_000
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP")
MIN_SIDE = 32


class ImageDecodeError(ValueError):
    """The bytes are not an acceptable image; the message says why (safe to show to a user)."""


def decode_image(data: bytes, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode PNG/JPEG/WebP bytes into an RGB image, with size guards; raises ImageDecodeError on bad input."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageDecodeError(f"expected bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise ImageDecodeError("empty file (0 bytes)")
    if len(data) > max_bytes:
        raise ImageDecodeError(f"file too large: {len(data)} bytes > limit {max_bytes}")
    try:
        with warnings.catch_warnings():
            # PIL only warns between its limit and twice its limit; we refuse every decompression bomb.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(bytes(data)), formats=ALLOWED_FORMATS) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise ImageDecodeError(f"image too large: {w}x{h} = {w * h} pixels > limit {max_pixels} "
                                           "(possible decompression bomb)")
                if min(w, h) < MIN_SIDE:
                    raise ImageDecodeError(f"image too small: {w}x{h}, need at least {MIN_SIDE} px per side")
                fmt = im.format
                im.load()
                img = to_rgb(im).copy()
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"image too large (decompression bomb guard): {exc}") from None
    except UnidentifiedImageError:
        raise ImageDecodeError("unsupported or unrecognised image format (accepted: PNG, JPEG, WebP)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageDecodeError(f"corrupt or truncated image: {exc}") from None
    log.debug("decoded %s image %dx%d", fmt, *img.size)
    return img


class Detector:
    """A trained detector: a frozen backbone + our head (NTF or CNNSpot), or the NPR CNN; calibrated to a
    probability of being AI-generated. Thread-safe for concurrent ``predict_proba`` calls."""

    def __init__(self, model_dir: Path, card: dict, model, backbone=None):
        self.model_dir = Path(model_dir)
        self.card = card
        self._model = model
        self._backbone = backbone
        self._lock = threading.Lock()
        self.max_side = int(card["input"]["max_side"])
        self.threshold = float(card["threshold"])

    @property
    def version(self) -> str:
        return str(self.card["version"])

    def raw_scores(self, images: list[Image.Image], batch_size: int = 32) -> np.ndarray:
        import torch

        from .backbone import extract

        arrays = []
        for img in images:
            view = model_view(img, self.max_side)
            if min(view.size) < MIN_SIDE:
                raise ImageDecodeError(f"image too small: {view.size[0]}x{view.size[1]}, need {MIN_SIDE} px per side")
            arrays.append(to_array(view))
        if not arrays:
            return np.zeros(0, dtype=np.float64)
        with self._lock, torch.inference_mode():
            if self._backbone is None:
                from .train import score_pixels

                return score_pixels(self._model, arrays, batch=batch_size)
            # Micro-batches of 8: on CPU, 32 x 192 px activations overflow the caches and run slower per image.
            feats = extract(self._backbone, arrays, batch_size=min(batch_size, 8))
            return self._model(torch.from_numpy(feats)).numpy().astype(np.float64)

    def calibrate(self, scores: np.ndarray) -> np.ndarray:
        cal = self.card["calibration"]
        return 1.0 / (1.0 + np.exp(-(cal["a"] * np.asarray(scores, dtype=np.float64) + cal["b"])))

    def predict_proba(self, images: list[Image.Image], batch_size: int = 32) -> np.ndarray:
        """Fake probabilities in [0, 1], one per image (any size/mode; the detector centre-crops, never resizes)."""
        return self.calibrate(self.raw_scores(images, batch_size=batch_size))

    def label(self, probability: float) -> str:
        return "fake" if probability >= self.threshold else "real"


def load_detector(path: str | Path | None = None) -> Detector:
    """Load a model directory (``model.safetensors`` + ``model_card.json``); default: the packaged model."""
    from safetensors.torch import load_file

    from .backbone import TraceBackbone
    from .models import CNNSpotHead, NPRNet, NTFHead

    model_dir = Path(path) if path is not None else DEFAULT_MODEL_DIR
    card_path = model_dir / "model_card.json"
    if not card_path.is_file():
        raise FileNotFoundError(f"no model_card.json in {model_dir}; train one with 'tidegate train image'")
    card = json.loads(card_path.read_text())
    state = load_file(str(model_dir / "model.safetensors"))
    method = card["method"]
    backbone = None
    if method == "npr":
        model = NPRNet()
    else:
        backbone = TraceBackbone(taps=tuple(card["backbone"]["taps"]), expected_sha256=card["backbone"]["sha256"])
        model = NTFHead(card["feature_dim"]) if method == "ntf" else CNNSpotHead(card["feature_dim"])
    model.load_state_dict(state)
    model.eval()
    log.info("loaded %s detector %s from %s", method, card["version"], model_dir)
    return Detector(model_dir, card, model, backbone)


def read_limited(path: Path, max_bytes: int) -> bytes:
    """Read a file, refusing (before reading) anything over ``max_bytes`` or anything that is not a regular file."""
    if not path.exists():
        raise ImageDecodeError("no such file")
    if not path.is_file():
        raise ImageDecodeError("not a regular file")
    size = path.stat().st_size
    if size > max_bytes:
        raise ImageDecodeError(f"file too large: {size} bytes > limit {max_bytes}")
    with open(path, "rb") as fh:
        return fh.read(max_bytes + 1)


def score_paths(paths: Iterable[str], model_dir: Path | None = None, out: IO[str] | None = None,
                max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS, batch_size: int = 32) -> int:
    """The ``tidegate image score`` contract: one JSON line per input, in input order; bad inputs give
    ``{"path", "error"}`` and the run goes on. Returns 0 when every input was handled."""
    import sys

    out = out or sys.stdout
    detector = load_detector(model_dir)
    paths = list(paths)

    def flush(batch: list[tuple[str, Image.Image]]) -> None:
        if not batch:
            return
        probs = detector.predict_proba([img for _, img in batch], batch_size=batch_size)
        for (p, _), prob in zip(batch, probs):
            out.write(json.dumps({"path": p, "fake_probability": round(float(prob), 6),
                                  "label": detector.label(float(prob))}) + "\n")
        out.flush()

    pending: list[tuple[str, Image.Image]] = []
    for p in paths:
        try:
            img = decode_image(read_limited(Path(p), max_bytes), max_bytes=max_bytes, max_pixels=max_pixels)
        except ImageDecodeError as exc:
            flush(pending)  # keep output in input order
            pending = []
            out.write(json.dumps({"path": p, "error": str(exc)}) + "\n")
            continue
        except OSError as exc:  # permission denied and the like
            flush(pending)
            pending = []
            out.write(json.dumps({"path": p, "error": f"cannot read file: {exc.strerror or exc}"}) + "\n")
            continue
        pending.append((p, model_view(img, detector.max_side)))  # keep only the crop the model sees
        if len(pending) >= batch_size:
            flush(pending)
            pending = []
    flush(pending)
    return 0
