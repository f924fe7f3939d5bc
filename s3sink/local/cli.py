"""``s3sink local up|down|status|prepare``: the local stack from the command line.

``up`` prints ``export NAME=value`` lines on stdout, so ``eval "$(s3sink local up)"`` sets up a
shell; everything else (progress, notes) goes to stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from s3sink.local.kafka import ensure_kafka_jars
from s3sink.local.s3 import S3_KINDS, ensure_minio_binary
from s3sink.local.stack import DEFAULT_STATE_DIR, STATE_DIR_ENV, LocalStack, default_state_dir


def add_parser(sub: Any) -> None:
    """Register ``local`` and its sub-commands on the top-level sub-parsers object."""
    local: argparse.ArgumentParser = sub.add_parser(
        "local",
        help="a local Apache Kafka broker and S3 endpoint for demos and tests",
        description="Run a real Apache Kafka broker (KRaft) and an S3 endpoint (moto or MinIO) "
        "on loopback, their data under a state directory.",
    )
    commands = local.add_subparsers(dest="local_command", required=True, metavar="ACTION")

    def state_dir_option(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--state-dir",
            type=Path,
            default=None,
            help=f"where configuration, data, logs and pid files live (default: ${STATE_DIR_ENV} "
            f"or ./{DEFAULT_STATE_DIR})",
        )

    up = commands.add_parser(
        "up",
        help="start the stack (or reuse it) and print shell exports",
        description='Start the stack, wait until it answers, print exports: eval "$(s3sink '
        'local up)". Running it again reuses what already runs.',
    )
    state_dir_option(up)
    up.add_argument(
        "--s3", choices=S3_KINDS, default=None,
        help="S3 server: moto (default, in memory) or minio (built once with Go, on disk)",
    )  # fmt: skip
    up.add_argument("--kafka-port", type=int, default=None, help="Kafka client port")
    up.add_argument("--s3-port", type=int, default=None, help="S3 endpoint port")
    up.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for readiness")
    up.set_defaults(handler=_up)

    down = commands.add_parser("down", help="stop the processes the stack started")
    state_dir_option(down)
    down.add_argument("--purge", action="store_true", help="also delete data, logs and config")
    down.set_defaults(handler=_down)

    status = commands.add_parser(
        "status", help="show what runs (exit 0 if the stack runs, 3 if nothing does)"
    )
    state_dir_option(status)
    status.set_defaults(handler=_status)

    prepare = commands.add_parser(
        "prepare",
        help="download the Kafka jars (and build MinIO) into the cache without starting anything",
    )
    prepare.add_argument("--minio", action="store_true", help="also build MinIO")
    prepare.set_defaults(handler=_prepare)


def _setup_logging() -> None:
    logger = logging.getLogger("s3sink.local")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("s3sink local: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def _stack(args: argparse.Namespace) -> LocalStack:
    _setup_logging()
    return LocalStack(args.state_dir or default_state_dir(), getattr(args, "s3", None))


def _up(args: argparse.Namespace) -> int:
    stack = _stack(args)
    env = stack.up(kafka_port=args.kafka_port, s3_port=args.s3_port, timeout=args.timeout)
    for line in stack.status()[1]:
        print(f"s3sink local: {line}", file=sys.stderr)
    print(f"s3sink local: stop with `s3sink local down --state-dir {stack.state_dir}`",
          file=sys.stderr)  # fmt: skip
    print("\n".join(env.shell_lines()), flush=True)
    return 0


def _down(args: argparse.Namespace) -> int:
    stack = _stack(args)
    stopped = stack.down(purge=args.purge)
    what = ", ".join(stopped) if stopped else "nothing was running"
    purged = f"; deleted the data in {stack.state_dir}" if args.purge else ""
    print(f"s3sink local: stopped {what}{purged}", file=sys.stderr)
    return 0


def _status(args: argparse.Namespace) -> int:
    stack = _stack(args)
    running, lines = stack.status()
    print("\n".join(lines))
    return 0 if running else 3


def _prepare(args: argparse.Namespace) -> int:
    _setup_logging()
    print(f"kafka jars: {ensure_kafka_jars()}")
    if args.minio:
        print(f"minio: {ensure_minio_binary()}")
    return 0
