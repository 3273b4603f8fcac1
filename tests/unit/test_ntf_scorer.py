"""The scoring contract (`tidegate image score`, `decode_image`, `load_detector`) on good and bad files."""
import io
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tidegate.services.image_forensics.ntf.detector import (DEFAULT_MODEL_DIR, ImageDecodeError, decode_image,
                                                            load_detector)


def _photo(w=160, h=120, seed=0):
    # smooth gradients + noise, like a small photo
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx / w * 200, yy / h * 200, (xx + yy) / (w + h) * 255], -1)
    return Image.fromarray(np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8), "RGB")


def _encode(img, fmt, **kw):
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png_header_only(w, h):
    """A PNG that declares w x h pixels but carries almost no data (what a decompression bomb looks like)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """An untrained NTF head saved in the real format: tests the contract, not accuracy."""
    import torch

    from tidegate.services.image_forensics.ntf.backbone import TraceBackbone, backbone_reference
    from tidegate.services.image_forensics.ntf.models import NTFHead
    from tidegate.services.image_forensics.ntf.train import save_model

    torch.manual_seed(0)
    dim = TraceBackbone().dim
    card = {"method": "ntf", "threshold": 0.5, "calibration": {"a": 4.0, "b": -2.0},
            "input": {"max_side": 192, "min_side": 32}, "backbone": backbone_reference(), "feature_dim": dim}
    out = tmp_path_factory.mktemp("model")
    save_model(NTFHead(dim).eval(), out, card)
    return out


def test_decode_accepts_png_jpeg_webp_and_gives_rgb():
    img = _photo()
    for fmt in ("PNG", "JPEG", "WEBP"):
        out = decode_image(_encode(img, fmt))
        assert out.mode == "RGB" and out.size == img.size
    assert np.array_equal(np.asarray(decode_image(_encode(img, "PNG"))), np.asarray(img))  # lossless stays exact
    rgba = img.convert("RGBA")
    assert decode_image(_encode(rgba, "PNG")).mode == "RGB"


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"hello, this is not an image at all", "unsupported"),
    (_encode(_photo(), "GIF"), "unsupported"),
    (_encode(_photo(), "BMP"), "unsupported"),
    (_encode(_photo(), "JPEG")[:400], "truncated"),
    (_encode(_photo(), "PNG")[:300], "truncated"),
    (_png_header_only(20000, 20000), "decompression bomb"),
    (_png_header_only(8000, 6000), "too large"),
    (_encode(_photo(20, 20), "PNG"), "too small"),
])
def test_decode_rejects_bad_input_with_clear_errors(data, message):
    with pytest.raises(ImageDecodeError, match=message):
        decode_image(data)
    assert issubclass(ImageDecodeError, ValueError)


def test_decode_rejects_oversized_bytes():
    with pytest.raises(ImageDecodeError, match="file too large"):
        decode_image(_encode(_photo(), "PNG"), max_bytes=100)


def test_detector_predict_proba_batched_and_deterministic(model_dir):
    det = load_detector(model_dir)
    imgs = [_photo(seed=1), _photo(200, 300, seed=2), _photo(64, 64, seed=3)]
    p = det.predict_proba(imgs)
    assert p.shape == (3,) and np.all((p >= 0) & (p <= 1))
    assert np.allclose(p, det.predict_proba(imgs))
    assert np.allclose(p[1:2], det.predict_proba([imgs[1]]))  # batching does not change a score
    assert det.card["threshold"] == 0.5 and det.card["version"].startswith("ntf-")


def test_score_cli_contract(model_dir, tmp_path, capsys):
    from tidegate.cli import main

    img = _photo()
    files = {"a.png": _encode(img, "PNG"), "b.jpg": _encode(img, "JPEG", quality=90), "c.webp": _encode(img, "WEBP"),
             "empty.png": b"", "trunc.jpg": _encode(img, "JPEG")[:300], "bomb.png": _png_header_only(30000, 30000),
             "huge.png": _png_header_only(9000, 9000)}
    paths = []
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    paths.append(str(tmp_path / "missing.png"))
    assert main(["image", "score", "--model", str(model_dir), *paths]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["path"] for line in lines] == paths  # one line per input, in order
    for line in lines[:3]:
        assert set(line) == {"path", "fake_probability", "label"}
        assert 0.0 <= line["fake_probability"] <= 1.0 and line["label"] in ("fake", "real")
    for line in lines[3:]:
        assert set(line) == {"path", "error"} and line["error"]
    assert "empty" in lines[3]["error"] and "truncated" in lines[4]["error"]
    assert "too large" in lines[5]["error"] and "too large" in lines[6]["error"]
    assert "no such file" in lines[7]["error"]


def test_score_cli_oversized_file_and_usage_error(model_dir, tmp_path, capsys):
    from tidegate.cli import main

    p = tmp_path / "big.png"
    p.write_bytes(_encode(_photo(), "PNG"))
    assert main(["image", "score", "--model", str(model_dir), "--max-bytes", "1000", str(p)]) == 0
    line = json.loads(capsys.readouterr().out)
    assert "file too large" in line["error"]
    with pytest.raises(SystemExit) as exc:
        main(["image", "score"])
    assert exc.value.code == 2


@pytest.mark.skipif(not (DEFAULT_MODEL_DIR / "model_card.json").is_file(), reason="no packaged default model yet")
def test_packaged_default_model_loads_and_scores():
    det = load_detector()
    for key in ("version", "threshold", "calibration", "backbone", "method"):
        assert key in det.card
    p = det.predict_proba([_photo(), _photo(seed=5)])
    assert p.shape == (2,) and np.all(np.isfinite(p))
