"""The sink sub-commands: ``run``, ``catchup``, ``verify``, ``config``, ``ddl``, ``status``."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from s3sink.config import SinkConfig, docs_markdown, load_config
from s3sink.logs import scrub, secret_values, setup_logging

log = logging.getLogger("s3sink")

#: After a second stop signal the process is gone within this long, whatever it was doing
#: (a hard exit is safe at any point: nothing uncommitted ever becomes visible).
ABANDON_GRACE_S = 3.0


def add_parsers(sub: Any) -> None:
    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "-c",
            "--config",
            required=True,
            help="config file (.json, .properties, "
            ".yaml): a Kafka Connect connector config works unchanged",
        )
        p.add_argument(
            "-s",
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config key (repeatable; beats file and environment)",
        )
        return p

    def with_tasks(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--tasks",
            type=int,
            default=None,
            metavar="N",
            help="worker processes in one consumer group (overrides tasks.max)",
        )
        # set by the parent on each worker it starts: the worker's number, 0..N-1
        p.add_argument("--task-index", type=int, default=None, help=argparse.SUPPRESS)
        # catch-up tasks: the partitions this worker archives ("topic:partition,...")
        p.add_argument("--assign", type=parse_assignment, default=None, help=argparse.SUPPRESS)
        return p

    p = with_tasks(with_config(sub.add_parser("run", help="archive until SIGTERM/SIGINT")))
    p.set_defaults(handler=cmd_run)
    p = with_tasks(
        with_config(
            sub.add_parser("catchup", help="archive up to the end offsets seen at start, then exit")
        )
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (shown when standard output is a terminal)",
    )
    p.set_defaults(handler=cmd_catchup)
    p = with_config(sub.add_parser("verify", help="audit the commit log against the listing"))
    p.add_argument(
        "--repair",
        action="store_true",
        help="roll forward unpublished commits and delete stale staging files",
    )
    p.add_argument("--topic", action="append", default=[], help="only these topics")
    p.set_defaults(handler=cmd_verify)
    from s3sink.restore import add_parser as add_restore

    add_restore(sub, with_config)
    cp = sub.add_parser("config", help="check the config or print the reference")
    csub = cp.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    p = with_config(
        csub.add_parser("check", help="validate and print the effective config (secrets redacted)")
    )
    p.set_defaults(handler=cmd_config_check)
    p = csub.add_parser("docs", help="print the configuration reference (Markdown)")
    p.set_defaults(handler=cmd_config_docs)

    from s3sink import ddl, status

    ddl.add_parser(sub, with_config)
    status.add_parser(sub, with_config)


def _load(args: argparse.Namespace) -> SinkConfig:
    overrides = {}
    for item in args.set:
        k, sep, v = item.partition("=")
        if not sep:
            from s3sink.errors import ConfigError

            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        overrides[k.strip()] = v
    if getattr(args, "tasks", None) is not None:
        overrides["tasks.max"] = str(args.tasks)
    cfg = load_config(args.config, overrides=overrides)
    scrub.add(secret_values(cfg))
    return cfg


def exit_now(code: int = 0) -> None:
    """Leave the process at once (commit threads may be in flight: that is safe), after
    flushing the logs."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _install_signals(
    stop: Callable[[], None], abandon: Callable[[], None], timeout_ms: int
) -> None:
    """First SIGTERM/SIGINT: stop gracefully (commit what is buffered within
    ``shutdown.timeout.ms``). Second: abandon, and exit within :data:`ABANDON_GRACE_S`.

    The handler runs between two bytecodes of the main thread, which may hold a lock: it only
    sets flags and logs (logging's locks are reentrant); a watchdog thread, started here, does
    the hard exit."""
    count = [0]
    hard_exit = threading.Event()

    def watchdog() -> None:
        hard_exit.wait()
        time.sleep(ABANDON_GRACE_S)  # time for a clean abandon; then leave regardless
        exit_now(0)

    def handler(signum: int, frame: FrameType | None) -> None:
        count[0] += 1
        name = signal.Signals(signum).name
        if count[0] == 1:
            log.warning(
                "%s: committing what is buffered (up to shutdown.timeout.ms=%d); send it again "
                "to stop at once",
                name,
                timeout_ms,
            )
            stop()
            return
        log.warning("%s again: stopping at once; buffered records are left to the next owner", name)
        abandon()
        hard_exit.set()

    if threading.current_thread() is threading.main_thread():
        threading.Thread(target=watchdog, name="stop-watchdog", daemon=True).start()
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


def cmd_run(args: argparse.Namespace) -> int:
    from s3sink.sink import Sink

    cfg = _load(args)
    setup_logging(cfg.log_format, cfg.log_level, secret_values(cfg))
    if args.task_index is not None:
        from s3sink.tasks import tag_logs

        tag_logs(args.task_index)
    elif cfg.tasks_max > 1:
        from s3sink.tasks import run_tasks

        return run_tasks(args, cfg)
    sink = Sink(cfg)
    _install_signals(sink.stop, sink.abandon, cfg.shutdown_timeout_ms)
    if args.task_index is not None:
        from s3sink.tasks import await_start

        await_start()
    from s3sink.http import start_http

    server = start_http(cfg.http_listen, sink)
    try:
        sink.run()
    finally:
        if server is not None:
            server.shutdown()
    log.info("stopped%s", "" if sink.clean else " (commits in flight are left to the next owner)")
    if not sink.clean:
        exit_now(0)
    return 0


def parse_assignment(text: str) -> list[tuple[str, int]]:
    """``topic:partition,...`` (topic names hold neither ``:`` nor ``,``)."""
    out = []
    for item in text.split(","):
        topic, sep, partition = item.rpartition(":")
        if not sep or not topic or not partition.isdigit():
            raise argparse.ArgumentTypeError(f"expected topic:partition, got {item!r}")
        out.append((topic, int(partition)))
    return out


def cmd_catchup(args: argparse.Namespace) -> int:
    from s3sink.progress import ProgressBar
    from s3sink.sink import Sink

    cfg = _load(args)
    setup_logging(cfg.log_format, cfg.log_level, secret_values(cfg))
    # the bar goes where the summary goes, and only to a terminal: on a pipe or in a file,
    # standard output is the summary line alone
    bar = None if args.no_progress or not sys.stdout.isatty() else ProgressBar(sys.stdout)
    if args.task_index is not None:
        from s3sink.tasks import tag_logs

        tag_logs(args.task_index)
    elif cfg.tasks_max > 1:
        from s3sink.tasks import catchup_tasks

        try:
            return catchup_tasks(args, cfg, bar)
        finally:
            if bar is not None:
                bar.close()
    sink = Sink(cfg)
    _install_signals(sink.stop, sink.abandon, cfg.shutdown_timeout_ms)
    if args.task_index is not None:
        from s3sink.tasks import await_start

        await_start()
    try:
        summary = sink.run(catchup=True, progress=bar, assignment=args.assign)
    finally:
        if bar is not None:
            bar.close()
    if args.task_index is not None and sink.clean:
        from s3sink.tasks import reached_line

        # the parent counts these partitions as done even where the commit log ends below
        # the end offset (a transaction's closing marker, dead-lettered records at the tail)
        for (topic, partition), end in sorted(summary.reached.items()):
            print(reached_line(topic, partition, end))
    print(summary.text())
    if not sink.clean:
        exit_now(0)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from s3sink.sink import storage_from_config
    from s3sink.verify import verify

    cfg = _load(args)
    setup_logging(cfg.log_format, "WARNING")
    storage = storage_from_config(cfg)
    report = verify(storage, cfg, topics=args.topic or None, repair=args.repair)
    print(report.text())
    return 0 if report.ok else 1


def cmd_config_check(args: argparse.Namespace) -> int:
    cfg = _load(args)
    for note in cfg.notes:
        print(f"# note: {note}")
    for k, v in cfg.redacted().items():
        print(f"{k}={v}")
    return 0


def cmd_config_docs(args: argparse.Namespace) -> int:
    sys.stdout.write(docs_markdown())
    return 0
