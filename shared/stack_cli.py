"""``tidegate stack up|down|status``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tidegate.shared.config import get_settings


def _stack(args):
    from tidegate.shared.stack import Stack
    return Stack(args.run_dir, broker=args.broker, kafka_port=args.kafka_port, redis_port=args.redis_port)


def _print_connection(status: dict) -> None:
    print(f"broker  : {status['broker']}")
    print(f"kafka   : {status['TIDEGATE_KAFKA_BOOTSTRAP']}")
    print(f"redis   : {status['TIDEGATE_REDIS_URL']}")
    print(f"run dir : {status['run_dir']}")
    print("export TIDEGATE_KAFKA_BOOTSTRAP={TIDEGATE_KAFKA_BOOTSTRAP} TIDEGATE_REDIS_URL={TIDEGATE_REDIS_URL}"
          .format(**status))


def _up(args) -> int:
    from tidegate.shared.stack import StackError
    stack = _stack(args)
    try:
        stack.up(timeout=args.timeout)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    _print_connection(stack.status())
    return 0


def _down(args) -> int:
    _stack(args).down(purge=args.purge)
    print("stack stopped" + (" and its data deleted" if args.purge else ""))
    return 0


def _status(args) -> int:
    status = _stack(args).status()
    if args.json:
        print(json.dumps(status, indent=2))
    elif status["running"]:
        _print_connection(status)
    else:
        print(f"stack not running (run dir {status['run_dir']})")
    return 0 if status["running"] else 3


def register(groups: dict[str, argparse._SubParsersAction]) -> None:
    settings = get_settings()
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--run-dir", type=Path, default=settings.run_dir,
                        help="state, data and logs of the stack (default: %(default)s; env TIDEGATE_RUN_DIR)")
    common.add_argument("--broker", choices=["noida", "tansu"], default=settings.broker,
                        help="Kafka-protocol broker: noida (persistent, default) or tansu (memory only)")
    common.add_argument("--kafka-port", type=int, default=19092, help="broker port on 127.0.0.1 (0: any free port)")
    common.add_argument("--redis-port", type=int, default=16379, help="Redis port on 127.0.0.1 (0: any free port)")
    stack = groups["stack"]
    up = stack.add_parser("up", parents=[common], help="start the broker and Redis, create the topics",
                          description="Start a Kafka-protocol broker and redis-server on loopback, create every "
                                      "Tidegate topic and print the connection strings. Safe to run twice.")
    up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each server")
    up.set_defaults(func=_up)
    down = stack.add_parser("down", parents=[common], help="stop the stack",
                            description="Stop the servers recorded in the run directory.")
    down.add_argument("--purge", action="store_true", help="also delete the stack's data and logs")
    down.set_defaults(func=_down)
    status = stack.add_parser("status", parents=[common], help="show what is running and how to connect",
                              description="Exit code 0 when the stack is up, 3 when it is not.")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=_status)
