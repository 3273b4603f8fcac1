"""Real photographs from registry packages (Debian wallpapers, sample images in PyPI wheels).

Which files are photographs is an explicit, committed decision: ``photographs.json`` next to this module.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

log = logging.getLogger(__name__)

PHOTO_LIST = Path(__file__).with_name("photographs.json")


@dataclass(frozen=True)
class Photo:
    source: str  # "<package>/<name>", the unit of the train/val/test split
    path: Path


def load_photo_list(path: Path = PHOTO_LIST) -> dict:
    return json.loads(Path(path).read_text())


def _largest(root: Path, pattern: str) -> Path:
    files = [p for p in root.glob(pattern) if p.is_file()]
    if not files:
        raise FileNotFoundError(f"no file matches {pattern!r} under {root}")
    # The largest file of a wallpaper is its full-resolution version; resolve symlinks to de-duplicate.
    return max({p.resolve() for p in files}, key=lambda p: (p.stat().st_size, str(p)))


def find_photos(spec: dict | None = None) -> list[Photo]:
    """Download (once, cached) the packages named in the photo list and return the chosen photographs."""
    from tidegate.shared.assets import deb_dir, wheel_dir

    spec = spec or load_photo_list()
    photos: list[Photo] = []
    for kind, fetch in (("debian", deb_dir), ("wheels", wheel_dir)):
        for package, entry in spec.get(kind, {}).items():
            root = Path(fetch(package)) / entry["root"]
            for name, pattern in sorted(entry["photos"].items()):
                photos.append(Photo(source=f"{package}/{name}", path=_largest(root, pattern)))
    log.info("found %d photographs", len(photos))
    return photos


def assign_splits(sources: list[str], val_fraction: float = 0.15, test_fraction: float = 0.25) -> dict[str, str]:
    """Deterministic split by source photo: photos ordered by a hash of their name, then cut by the fractions."""
    order = sorted(set(sources), key=lambda s: hashlib.sha256(s.encode()).hexdigest())
    n_test = max(1, round(len(order) * test_fraction))
    n_val = max(1, round(len(order) * val_fraction))
    return {s: "test" if i < n_test else "val" if i < n_test + n_val else "train" for i, s in enumerate(order)}


def open_photo(photo: Photo, max_short_side: int) -> Image.Image:
    """The working copy of a photograph: RGB, downscaled (antialiased) so its short side is at most ``max_short_side``."""
    from .processing import to_rgb

    with Image.open(photo.path) as im:
        im.draft("RGB", (max_short_side * 2, max_short_side * 2))
        im.load()
        img = to_rgb(im).copy()
    w, h = img.size
    short = min(w, h)
    if short > max_short_side:
        f = max_short_side / short
        img = img.resize((round(w * f), round(h * f)), Image.LANCZOS)
    return img
