"""The local stack as a whole: one Kafka broker and one S3 endpoint sharing a state directory.

Layout of a state directory (default ``./.s3sink-local``)::

    stack.json            which S3 server the stack uses (moto or minio)
    kafka/                server.properties, data/, logs/server.log, kafka.pid, kafka.json
    moto/ or minio/       <kind>.pid, <kind>.json (port), logs/, data/ (MinIO)
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from s3sink.local.kafka import KafkaBroker, ensure_kafka_jars
from s3sink.local.process import read_json, write_json
from s3sink.local.s3 import (
    S3_KINDS,
    S3Endpoint,
    S3Kind,
    S3Server,
    ensure_minio_binary,
    s3_server,
)
from s3sink.local.tools import LocalStackError, file_lock, find_java

STATE_DIR_ENV = "S3SINK_LOCAL_STATE_DIR"
DEFAULT_STATE_DIR = ".s3sink-local"

log = logging.getLogger(__name__)


def default_state_dir() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)


@dataclass(frozen=True, slots=True)
class StackEnv:
    """How clients reach a running stack."""

    bootstrap_servers: str
    s3: S3Endpoint

    def env(self) -> dict[str, str]:
        return {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers, **self.s3.env()}

    def shell_lines(self) -> list[str]:
        """``export NAME=value`` lines for ``eval "$(s3sink local up)"``."""
        return [f"export {name}={shlex.quote(value)}" for name, value in self.env().items()]


class LocalStack:
    """A Kafka broker and an S3 endpoint under one state directory."""

    def __init__(self, state_dir: Path | str | None = None, s3_kind: S3Kind | None = None):
        self.state_dir = Path(state_dir if state_dir is not None else default_state_dir())
        self.state_dir = self.state_dir.resolve()
        self.stack_path = self.state_dir / "stack.json"
        recorded = read_json(self.stack_path).get("s3")
        self.recorded_kind: S3Kind | None = recorded if recorded in S3_KINDS else None
        self.s3_kind: S3Kind = s3_kind or self.recorded_kind or "moto"
        self.kafka = KafkaBroker(self.state_dir)

    def s3(self, kind: S3Kind | None = None) -> S3Server:
        return s3_server(kind or self.s3_kind, self.state_dir)

    def up(self, *, kafka_port: int | None = None, s3_port: int | None = None,
           timeout: float = 120.0) -> StackEnv:  # fmt: skip
        """Start what is not running yet, wait until both answer, and say how to reach them."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with file_lock(self.state_dir / ".lock"):
            for other in S3_KINDS:
                if other != self.s3_kind and self.s3(other).running():
                    raise LocalStackError(
                        f"the local stack in {self.state_dir} already runs {other}; run "
                        f"`s3sink local down --state-dir {self.state_dir}` first to switch to "
                        f"{self.s3_kind}"
                    )
            # Fetch or build what is missing first: a missing tool fails before anything runs.
            ensure_kafka_jars()
            find_java()
            if self.s3_kind == "minio":
                ensure_minio_binary()
            write_json(self.stack_path, {"s3": self.s3_kind})
            kafka = KafkaBroker(self.state_dir, kafka_port)
            s3 = s3_server(self.s3_kind, self.state_dir, s3_port)
            was_running = {"kafka": kafka.running(), "s3": s3.running()}
            with ThreadPoolExecutor(max_workers=2, thread_name_prefix="s3sink-local") as pool:
                kafka_started = pool.submit(kafka.start, timeout)
                s3_started = pool.submit(s3.start, timeout)
                try:
                    kafka_started.result()
                    s3_started.result()
                except BaseException:
                    # Leave nothing half-started behind: stop what this call started.
                    s3_started.exception()
                    kafka_started.exception()
                    if not was_running["s3"]:
                        s3.stop()
                    if not was_running["kafka"]:
                        kafka.stop()
                    raise
        if self.s3_kind == "moto":
            log.info("moto keeps objects in memory: `s3sink local down` discards them "
                     "(`--s3 minio` keeps them on disk)")  # fmt: skip
        return StackEnv(kafka.bootstrap, s3.endpoint)

    def down(self, *, purge: bool = False) -> list[str]:
        """Stop the processes this state directory started; with ``purge`` delete its data."""
        stopped: list[str] = []
        if not self.state_dir.exists():
            return stopped
        with file_lock(self.state_dir / ".lock"):
            for kind in S3_KINDS:
                if self.s3(kind).stop():
                    stopped.append(kind)
            if self.kafka.stop():
                stopped.append("kafka")
            if purge:
                for name in ("kafka", *S3_KINDS):
                    shutil.rmtree(self.state_dir / name, ignore_errors=True)
                self.stack_path.unlink(missing_ok=True)
        if purge:
            (self.state_dir / ".lock").unlink(missing_ok=True)
            try:
                self.state_dir.rmdir()
            except OSError:
                log.info("left %s in place: it holds files s3sink did not create",
                         self.state_dir)  # fmt: skip
        return stopped

    def status(self) -> tuple[bool, list[str]]:
        """Whether anything runs, and one line per component."""
        servers = [self.s3(kind) for kind in S3_KINDS]
        lines = [self.kafka.describe()]
        lines += [s.describe() for s in servers if s.running() or s.kind == self.s3_kind]
        anything = self.kafka.running() or any(s.running() for s in servers)
        return anything, lines

    def env(self) -> StackEnv | None:
        """How to reach the stack if both parts run, else None."""
        s3 = self.s3()
        if not (self.kafka.running() and s3.running()):
            return None
        return StackEnv(self.kafka.bootstrap, s3.endpoint)
