"""The one command-line entry point for people: ``tidegate <group> <command>``.

Each domain registers its own commands (see ``register`` in the modules listed in ``_DOMAINS``); heavy imports
(torch, transformers) happen inside the command handlers, so ``tidegate --help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from tidegate import __version__

# Modules that expose ``register(groups: dict[str, argparse._SubParsersAction]) -> None``.
_DOMAINS = [
    "tidegate.shared.stack_cli",
    "tidegate.services.token_risk.cli",
    "tidegate.services.token_risk.main",
    "tidegate.services.image_forensics.cli",
]

_GROUPS = {
    "stack": "Start, stop and inspect the embedded Kafka-protocol broker and Redis.",
    "data": "Build training and evaluation datasets from registry packages into data/.",
    "train": "Train models (progress bars; checkpoints as safetensors + model card).",
    "eval": "Evaluate models and write reports (JSON, Markdown, PNG) under reports/.",
    "text": "Token-stream risk (Kelp): score prompt/response pairs.",
    "image": "Image forensics (Natural Trace Forensics): score image files.",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tidegate",
        description="Tidegate: real-time moderation of images and LLM token streams over Kafka and gRPC.",
        epilog="Run 'tidegate <group> --help' for the commands of a group.",
    )
    parser.add_argument("--version", action="version", version=f"tidegate {__version__}")
    top = parser.add_subparsers(dest="group", metavar="<group>", required=True)
    groups: dict[str, argparse._SubParsersAction] = {}
    for name, help_text in _GROUPS.items():
        group = top.add_parser(name, help=help_text, description=help_text)
        groups[name] = group.add_subparsers(dest="command", metavar="<command>", required=True)
    demo = top.add_parser("demo", help="Run the end-to-end demo on the embedded stack.",
                          description="Start the embedded stack, publish sample events of every kind, show what "
                                      "arrives on each topic, stop the stack.")
    demo.add_argument("--keep-stack", action="store_true", help="leave the stack running afterwards")
    demo.set_defaults(func=lambda args: __import__("tidegate.demo", fromlist=["main"]).main(args))
    for module in _DOMAINS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:  # a domain still being built must not break the others
            if exc.name and exc.name.startswith("tidegate"):
                continue
            raise
        mod.register(groups)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result = args.func(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
