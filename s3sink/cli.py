"""The ``s3sink`` command line: one sub-command per job, each in its own module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from s3sink import __version__
from s3sink.errors import S3SinkError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="s3sink",
        description="Kafka-to-S3 archival sink with exactly-once commit markers.",
    )
    parser.add_argument("--version", action="version", version=f"s3sink {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from s3sink.commands import add_parsers
    from s3sink.demo import add_parser as add_demo
    from s3sink.local.cli import add_parser as add_local

    add_parsers(sub)
    add_demo(sub)
    add_local(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except S3SinkError as exc:
        from s3sink.logs import format_exception

        print(f"s3sink: error: {format_exception(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code
