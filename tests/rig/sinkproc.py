"""The sink as a real subprocess (`python -m s3sink run|catchup|verify`), for crash tests.

:class:`SinkProcess` writes the config to a JSON file (a Kafka Connect connector document, so the
config path users take is the one under test), starts the command with its stdout and stderr in
one log file, and can SIGKILL, SIGSTOP, SIGCONT or SIGTERM it and wait for it to exit. The sink
logs one JSON object per line (``log.format=json``); :meth:`SinkProcess.records` parses them,
:meth:`SinkProcess.wait_for_log` polls the file for a line. Every wait has a timeout, and a process
left running by a failed test is killed when the object is closed (or when pytest dies: the child
gets SIGTERM from the kernel when its parent exits).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from s3sink.commitlog import ROOT, Marker, seq_of
from s3sink.config import parse
from s3sink.local.process import _die_with_parent
from s3sink.local.s3 import S3Endpoint
from s3sink.sink import storage_from_config
from s3sink.storage.base import Storage
from tests.rig.archive import read_lines
from tests.rig.kafka import unique_name

__all__ = [
    "ArchiveCheck",
    "IdProducer",
    "LogRecord",
    "SinkProcess",
    "all_markers",
    "archived_ids",
    "check_archive",
    "figures",
    "info",
    "percentile",
    "report_path",
    "run_command",
    "s3_keys",
    "sink_config",
    "storage_of",
    "update_report",
    "write_config",
    "written_reports",
]


def write_config(path: Path, config: Mapping[str, str]) -> Path:
    """Write ``config`` as a Kafka Connect connector JSON document."""
    name = config.get("name", "s3sink-test")
    path.write_text(json.dumps({"name": name, "config": dict(config)}, indent=2))
    return path


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One JSON log line of the sink."""

    ts: float  # seconds since the epoch
    level: str
    logger: str
    msg: str

    @staticmethod
    def parse(line: str) -> LogRecord | None:
        if not line.startswith("{"):
            return None
        try:
            d = json.loads(line)
            ts = datetime.fromisoformat(d["ts"]).timestamp()
            return LogRecord(ts, str(d["level"]), str(d["logger"]), str(d["msg"]))
        except (ValueError, KeyError, TypeError):
            return None


class SinkProcess:
    """One ``python -m s3sink <command>`` subprocess with its config file and log file."""

    def __init__(
        self,
        config: Mapping[str, str],
        workdir: Path,
        name: str,
        *,
        command: str = "run",
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.command = command
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = write_config(workdir / f"{name}.json", config)
        self.log_path = workdir / f"{name}.log"
        self.args = list(args)
        self.env = dict(env or {})
        self.popen: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0  # wall clock (time.time) of the last start
        self.starts = 0
        self._log_offset = 0  # where the current incarnation's output starts in the log

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, *, env: Mapping[str, str] | None = None) -> SinkProcess:
        """Start (again): a previous incarnation must have exited."""
        if self.popen is not None and self.popen.poll() is None:
            raise RuntimeError(f"{self.name} is still running (pid {self.popen.pid})")
        full_env = dict(os.environ)
        # the sink reads S3SINK_* overrides from the environment: only ours may reach it
        for k in [k for k in full_env if k.startswith("S3SINK_")]:
            del full_env[k]
        full_env.update(self.env)
        full_env.update(env or {})
        full_env.setdefault("PYTHONUNBUFFERED", "1")
        argv = [sys.executable, "-m", "s3sink", self.command, "-c", str(self.config_path)]
        argv += self.args
        with self.log_path.open("ab") as log:
            self._log_offset = log.tell()
            log.write(f"--- start {self.starts}: {' '.join(argv[2:])}\n".encode())
            log.flush()
            self.started_at = time.time()
            self.popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=full_env,
                close_fds=True,
                preexec_fn=_die_with_parent(),  # noqa: PLW1509
            )
        self.starts += 1
        return self

    @property
    def pid(self) -> int:
        if self.popen is None:
            raise RuntimeError(f"{self.name} was never started")
        return self.popen.pid

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def kill(self, timeout: float = 30.0) -> int:
        """SIGKILL and wait; returns the exit code (-9 unless it had exited already)."""
        self.signal(signal.SIGKILL)
        return self.wait(timeout)

    def pause(self, timeout: float = 5.0) -> None:
        """SIGSTOP, and wait until every thread is stopped (signal delivery is asynchronous:
        a thread on another CPU may finish a step after ``kill`` returned)."""
        self.signal(signal.SIGSTOP)
        deadline = time.monotonic() + timeout
        while self.running() and time.monotonic() < deadline:
            states = []
            for task in Path(f"/proc/{self.pid}/task").glob("*"):
                with contextlib.suppress(OSError, IndexError):
                    # the state follows the command name in parentheses
                    states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
            if states and all(st in ("T", "t") for st in states):
                return
            time.sleep(0.001)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM (a graceful stop: commit what is buffered) and wait for the exit code."""
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float) -> int:
        if self.popen is None:
            raise RuntimeError(f"{self.name} was never started")
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            tail = self.tail()
            self.signal(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(10)
            raise TimeoutError(
                f"{self.name} ({self.command}) did not exit within {timeout:.0f}s; killed it. "
                f"Log tail:\n{tail}"
            ) from None

    def close(self) -> None:
        """Kill the process if it still runs (SIGCONT first, in case it is stopped)."""
        if self.running():
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGKILL)
            if self.popen is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.popen.wait(10)

    def __enter__(self) -> SinkProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- logs --------------------------------------------------------------------------------
    def text(self, *, current: bool = False) -> str:
        """The log (all incarnations, or only the current one)."""
        try:
            with self.log_path.open("rb") as f:
                if current:
                    f.seek(self._log_offset)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def lines(self, *, current: bool = False) -> list[str]:
        return self.text(current=current).splitlines()

    def records(self, *, current: bool = False) -> list[LogRecord]:
        out = []
        for line in self.lines(current=current):
            rec = LogRecord.parse(line)
            if rec is not None:
                out.append(rec)
        return out

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.lines()[-n:])

    def count(self, pattern: str, *, current: bool = False) -> int:
        rx = re.compile(pattern)
        return sum(1 for line in self.lines(current=current) if rx.search(line))

    def wait_for_log(
        self,
        pattern: str | Callable[[str], bool],
        timeout: float,
        *,
        current: bool = True,
        count: int = 1,
        after: float | None = None,
    ) -> str:
        """Poll the log until ``count`` lines match (regex or predicate); return the last one.

        ``after`` (wall clock) only counts JSON log lines written after that time. Raises
        TimeoutError (with the log tail) when the time is up or the process exits first.
        """
        match: Callable[[str], bool]
        if isinstance(pattern, str):
            rx = re.compile(pattern)
            match = lambda line: rx.search(line) is not None  # noqa: E731
        else:
            match = pattern
        deadline = time.monotonic() + timeout
        while True:
            found = []
            for line in self.lines(current=current):
                if not match(line):
                    continue
                if after is not None:
                    rec = LogRecord.parse(line)
                    if rec is None or rec.ts < after:
                        continue
                found.append(line)
            if len(found) >= count:
                return found[count - 1]
            if not self.running():
                raise TimeoutError(
                    f"{self.name} exited (code {self.popen.returncode if self.popen else None}) "
                    f"before its log showed {pattern!r}. Log tail:\n{self.tail()}"
                )
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{self.name}: no log line {pattern!r} within {timeout:.0f}s. "
                    f"Log tail:\n{self.tail()}"
                )
            time.sleep(0.05)

    def blocked_in(self) -> str:
        """Where the process's threads wait in the kernel (``/proc/<pid>/task/*/wchan``), for
        diagnosing a hang (e.g. ``flock`` waits)."""
        if not self.running():
            return "not running"
        waits: collections.Counter[str] = collections.Counter()
        for task in Path(f"/proc/{self.pid}/task").glob("*"):
            with contextlib.suppress(OSError):
                waits[(task / "wchan").read_text().strip() or "running"] += 1
        return ", ".join(f"{k} x{v}" for k, v in waits.most_common())

    def pause_on(self, pattern: str, timeout: float) -> str:
        """SIGSTOP the process as soon as a *new* log line matches ``pattern`` (the log is
        tailed every few milliseconds); return that line. For catching a step in flight."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.log_path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            partial = b""
            while time.monotonic() < deadline:
                chunk = f.read()
                if not chunk:
                    if not self.running():
                        break
                    time.sleep(0.002)
                    continue
                partial += chunk
                *complete, partial = partial.split(b"\n")
                for raw in complete:
                    line = raw.decode("utf-8", "replace")
                    if rx.search(line):
                        self.pause()
                        return line
        raise TimeoutError(f"{self.name}: no new log line {pattern!r} within {timeout:.0f}s")

    def iter_matching(self, pattern: str) -> Iterator[LogRecord]:
        rx = re.compile(pattern)
        for rec in self.records():
            if rx.search(rec.msg):
                yield rec


def run_command(
    command: str,
    config: Mapping[str, str],
    workdir: Path,
    name: str,
    *,
    args: Sequence[str] = (),
    timeout: float = 120.0,
    env: Mapping[str, str] | None = None,
) -> tuple[int, str]:
    """Run ``s3sink <command>`` to completion; returns (exit code, its output)."""
    proc = SinkProcess(config, workdir, name, command=command, args=args, env=env)
    with proc:
        proc.start()
        code = proc.wait(timeout)
    return code, proc.text()


# -- figures ---------------------------------------------------------------------------------
#
# The crash tests compute figures (kills, duplicates, losses, fencing events, recovery times).
# Each test's figures go to a JSON report, ``.cache/test-reports/<test>.json`` under the
# repository (ignored by git; ``$TEST_REPORTS_DIR`` moves it, e.g. for a CI artifact), and the
# terminal summary (tests/conftest.py) prints every report the session wrote.

#: The reports this process wrote, in order (a report from an earlier session is replaced).
written_reports: list[Path] = []


def report_dir() -> Path:
    override = os.environ.get("TEST_REPORTS_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / ".cache" / "test-reports"


def current_test() -> str:
    """The running test's node id (``PYTEST_CURRENT_TEST`` without its phase)."""
    return os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0] or "outside-a-test"


def report_path(nodeid: str) -> Path:
    name = nodeid.removeprefix("tests/").replace(".py::", "__")
    return report_dir() / (re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") + ".json")


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # NaN (no sample) is not JSON
    return value


def update_report(
    nodeid: str | None = None,
    *,
    line: str | None = None,
    values: Mapping[str, Any] | None = None,
    outcome: str | None = None,
) -> Path:
    """Add a line, figures or the outcome to a test's report (this session's, else a new one)."""
    nodeid = nodeid or current_test()
    path = report_path(nodeid)
    if path in written_reports:
        data = json.loads(path.read_text())
    else:
        data = {"test": nodeid, "outcome": None, "figures": {}, "lines": []}
    if line is not None:
        data["lines"].append(line)
    for key, value in (values or {}).items():
        data["figures"][key] = _jsonable(value)
    if outcome is not None:
        data["outcome"] = outcome
    data["written"] = datetime.now(UTC).isoformat(timespec="seconds")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2) + "\n")
    partial.replace(path)
    if path not in written_reports:
        written_reports.append(path)
    return path


def info(*parts: Any) -> None:
    """A figure line: printed (``pytest -s``), and kept in the test's report."""
    line = " ".join(str(p) for p in parts)
    print("[figures]", line, flush=True)
    update_report(line=line)


def figures(**values: Any) -> None:
    """Named figures (numbers, short strings) for the test's report."""
    update_report(values=values)


# -- configs ---------------------------------------------------------------------------------


def s3_keys(endpoint: S3Endpoint, bucket: str, url: str | None = None) -> dict[str, str]:
    """Confluent-style S3 keys for ``bucket`` on ``endpoint`` (or through a proxy at ``url``)."""
    return {
        "s3.bucket.name": bucket,
        "store.url": url or endpoint.url,
        "s3.region": endpoint.region,
        "s3.path.style.access.enabled": "true",
        "aws.access.key.id": endpoint.access_key,
        "aws.secret.access.key": endpoint.secret_key,
    }


def sink_config(
    bootstrap: str, topic: str, storage: Mapping[str, str], **extra: str
) -> dict[str, str]:
    """A small-rotation sink config for crash tests (JSON lines, JSON logs, no HTTP)."""
    raw = {
        "name": unique_name("sink"),
        "topics": topic,
        "bootstrap.servers": bootstrap,
        "format.class": "json",
        "flush.size": "500",
        "rotate.schedule.interval.ms": "2000",
        "http.listen": "none",
        "log.format": "json",
        "shutdown.timeout.ms": "30000",
    }
    raw.update(storage)
    raw.update(extra)
    return raw


def storage_of(config: Mapping[str, str]) -> Storage:
    """The storage the sink with ``config`` writes to (environment ignored)."""
    return storage_from_config(parse(dict(config), environ={}))


# -- producing unique ids --------------------------------------------------------------------


def _id_producer(bootstrap: str) -> Producer:
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 200000,
        }
    )


class IdProducer(threading.Thread):
    """Produces ``{"id": i, "pad": ...}`` for i in [first, first + n) round-robin over the
    partitions, optionally at ``rate`` records/s, in a background thread. ``produced`` counts
    acknowledged records; ``errors`` collects delivery failures (there must be none)."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        n: int,
        partitions: int,
        *,
        first: int = 0,
        rate: float | None = None,
        timeout: float = 300.0,
    ) -> None:
        super().__init__(name=f"produce-{topic}", daemon=True)
        self.bootstrap = bootstrap
        self.topic = topic
        self.n = n
        self.first = first
        self.partitions = partitions
        self.rate = rate
        self.timeout = timeout
        self.produced = 0
        self.errors: list[str] = []
        self.failure: BaseException | None = None
        self.finished = threading.Event()
        #: records handed to the producer (all of them acknowledged once ``join_checked`` passed)
        self.attempted = 0
        self._stop_requested = threading.Event()

    def stop(self) -> None:
        """Stop producing early; the ids produced are then ``ids()`` (a prefix of the range)."""
        self._stop_requested.set()

    def ids(self) -> range:
        return range(self.first, self.first + self.attempted)

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is None:
            self.produced += 1
        else:
            self.errors.append(str(err))

    def run(self) -> None:
        try:
            producer = _id_producer(self.bootstrap)
            started = time.monotonic()
            for k in range(self.n):
                i = self.first + k
                if k % 100 == 0:
                    if self._stop_requested.is_set():
                        break
                    ahead = k / self.rate - (time.monotonic() - started) if self.rate else 0
                    if ahead > 0:
                        time.sleep(ahead)
                value = b'{"id":%d,"pad":"%s"}' % (i, b"x" * (i % 40))
                while True:
                    try:
                        producer.produce(
                            self.topic,
                            value,
                            partition=i % self.partitions,
                            on_delivery=self._on_delivery,
                        )
                        break
                    except BufferError:
                        producer.poll(0.05)
                self.attempted += 1
                producer.poll(0)
            left = producer.flush(self.timeout)
            if left:
                self.errors.append(f"{left} records not acknowledged in {self.timeout}s")
        except BaseException as exc:  # reported by join_checked
            self.failure = exc
        finally:
            self.finished.set()

    def join_checked(self, timeout: float) -> None:
        self.join(timeout)
        if self.is_alive():
            raise TimeoutError(f"producing to {self.topic} did not finish in {timeout:.0f}s")
        if self.failure is not None:
            raise RuntimeError(f"producing to {self.topic} failed: {self.failure!r}")
        expected = self.attempted if self._stop_requested.is_set() else self.n
        if self.errors or self.produced != expected:
            raise RuntimeError(
                f"produced {self.produced} of {expected} to {self.topic}: {self.errors[:3]}"
            )


# -- reading the archive back ----------------------------------------------------------------


def _read_ids(storage: Storage, key: str) -> list[int]:
    return [int(json.loads(line)["id"]) for line in read_lines(storage, key)]


def archived_ids(storage: Storage, topics_dir: str, topic: str, workers: int = 8) -> list[int]:
    """Every record id in the final files, listing ``<topics.dir>/<topic>/`` as a reader does."""
    keys = [i.key for i in storage.list(f"{topics_dir}/{topic}/")]
    out: list[int] = []
    with ThreadPoolExecutor(workers) as pool:
        for ids in pool.map(lambda k: _read_ids(storage, k), keys):
            out.extend(ids)
    return out


def all_markers(storage: Storage, topic: str, partition: int, workers: int = 8) -> list[Marker]:
    """The commit log of one partition, in seq order."""
    prefix = f"{ROOT}/log/{topic}/{partition}/"
    keys = [i.key for i in storage.list(prefix) if seq_of(i.key) is not None]

    def read(key: str) -> Marker:
        data, _ = storage.get(key)
        return Marker.decode(data, key)

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(read, keys))


@dataclass
class ArchiveCheck:
    """What the checker found; :meth:`problems` is empty when exactly-once holds."""

    produced: int
    archived: int
    missing: int
    duplicates: int
    unexpected: int
    log_problems: list[str]
    staging: list[str]
    pending_uploads: list[str]
    commits: int
    fences: int
    files: int
    markers: dict[int, list[Marker]]

    def problems(self) -> list[str]:
        out = []
        if self.missing or self.duplicates or self.unexpected:
            out.append(
                f"exactly-once violated: produced {self.produced}, archived {self.archived}, "
                f"missing {self.missing}, duplicates {self.duplicates}, "
                f"unexpected {self.unexpected}"
            )
        out += self.log_problems
        if self.staging:
            out.append(f"{len(self.staging)} staging files left, e.g. {self.staging[:3]}")
        if self.pending_uploads:
            out.append(
                f"{len(self.pending_uploads)} multipart uploads left: {self.pending_uploads[:3]}"
            )
        return out


def check_archive(
    storage: Storage,
    topic: str,
    produced_ids: Iterable[int],
    end_offsets: Mapping[int, int],
    *,
    topics_dir: str = "topics",
) -> ArchiveCheck:
    """Exactly-once over the final files (as a reader lists them), plus the log's shape: markers
    0..n without a gap, offsets contiguous from 0 to the partition's end offset, nothing left in
    staging."""
    want = collections.Counter(produced_ids)
    got = collections.Counter(archived_ids(storage, topics_dir, topic))
    missing = sum(max(0, want[k] - got[k]) for k in want)
    duplicates = sum(c - 1 for k, c in got.items() if c > 1)
    unexpected = sum(c for k, c in got.items() if k not in want)
    problems: list[str] = []
    by_partition: dict[int, list[Marker]] = {}
    commits = fences = files = 0
    for p, end in sorted(end_offsets.items()):
        ms = all_markers(storage, topic, p)
        by_partition[p] = ms
        if not ms:
            problems.append(f"partition {p}: empty commit log")
            continue
        if [m.seq for m in ms] != list(range(len(ms))):
            problems.append(f"partition {p}: log seqs not 0..{len(ms) - 1}")
        if ms[0].start != 0:
            problems.append(f"partition {p}: log starts at offset {ms[0].start}")
        for a, b in itertools.pairwise(ms):
            if b.start != a.end:
                problems.append(f"partition {p}: seq {b.seq} starts at {b.start}, not {a.end}")
        if ms[-1].end != end:
            problems.append(f"partition {p}: log ends at {ms[-1].end}, the partition at {end}")
        commits += sum(1 for m in ms if m.kind == "commit")
        fences += sum(1 for m in ms if m.kind == "fence")
        files += sum(len(m.files) for m in ms)
    staging = [i.key for i in storage.list(f"{ROOT}/staging/{topic}/")]
    pending = [u.key for u in storage.list_pending_uploads(f"{ROOT}/staging/{topic}/")]
    return ArchiveCheck(
        produced=sum(want.values()),
        archived=sum(got.values()),
        missing=missing,
        duplicates=duplicates,
        unexpected=unexpected,
        log_problems=problems,
        staging=staging,
        pending_uploads=pending,
        commits=commits,
        fences=fences,
        files=files,
        markers=by_partition,
    )


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (nearest rank) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]
