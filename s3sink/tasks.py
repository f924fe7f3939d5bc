"""``tasks.max=N``: ``s3sink run`` and ``s3sink catchup`` as N worker processes.

Kafka Connect's model: each task is one member of the connector's consumer group. The parent
starts N ``python -m s3sink <command>`` children (``tasks.max=1``, ``http.listen=none``,
``buffer.memory.bytes/N`` each, a ``task`` field on every log line) and supervises them:

* exactly-once is per partition, by the commit protocol (takeover with fence markers), whoever
  owns the partition: workers rebalancing among themselves are ordinary group members;
* the workers subscribe together: each builds its sink, prints :data:`READY_LINE` and waits
  for the parent to close its stdin, which it does once all are ready, so that they usually
  join the group's first generation (one balanced assignment instead of a cooperative
  hand-over in two rebalances);
* SIGTERM/SIGINT are forwarded to every worker (graceful: each commits what it buffered within
  ``shutdown.timeout.ms``); a second signal is forwarded too (abandon). The workers run in their
  own process group, so a terminal's Ctrl-C reaches them once, through the parent;
* a worker that exits while the job is not stopping stops the others gracefully, and the parent
  exits non-zero naming the task and why (crash-only: the orchestrator restarts the job);
* ``catchup`` ends when every partition's commit log reaches the end offset captured by the
  parent at start. The parent deals the partitions out (the most records left first, to the
  least loaded task) and each task assigns its share by hand instead of joining the group: no
  rebalance while tasks start and finish (the takeover still fences any other owner). The
  parent polls the log ends (progress, and stopping workers that have nothing left to do);
  after the workers exit it checks the ends and runs another round for any partition left
  short (at most :data:`MAX_ROUNDS`).

The parent serves ``http.listen``: ``/healthz`` and ``/readyz`` from the workers' liveness,
``/metrics`` with the parent's own task gauges (the workers' metrics are not aggregated).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from types import FrameType
from typing import IO, Any

from s3sink.config import SinkConfig
from s3sink.errors import FatalError

log = logging.getLogger("s3sink.tasks")

#: Catch-up rounds before giving up (a round ends when all its workers have exited).
MAX_ROUNDS = 5
#: How often the parent reads the commit log ends during a catch-up (progress, done check).
POLL_LOG_S = 2.0
#: How often the parent looks at its workers.
POLL_S = 0.1
#: After a second stop signal, workers still running this long after it are SIGKILLed
#: (they leave within 3 s on their own: see ``ABANDON_GRACE_S`` in :mod:`s3sink.commands`).
ABANDON_KILL_S = 6.0
#: consumer heartbeat.interval.ms of the tasks unless set (librdkafka's default is 3 s).
HEARTBEAT_MS = 500
#: A worker prints this once it is ready to consume; the parent starts them all together (so
#: that they join the group's first generation) once all are ready, or after this long.
READY_LINE = "s3sink-task: ready"
START_BARRIER_S = 30.0
#: Read commit log ends with this many threads.
READ_WORKERS = 16

_SUMMARY = re.compile(
    r"^catch-up done: (\d+) records in (\d+) files, (\d+) commits, (\d+) partitions, "
    r"([\d.]+) s \([\d,]+ records/s\), (\d+) bad records"
)


# ---------------------------------------------------------------------------------------------
# In a worker


def tag_logs(task: int) -> None:
    """Every log line of this process carries ``task`` (a JSON field; ``[task N]`` in text)."""
    from s3sink.logs import JsonFormatter, TextFormatter

    def add_task(record: logging.LogRecord) -> bool:
        record.task = task
        return True

    for handler in logging.getLogger().handlers:
        handler.addFilter(add_task)
        if isinstance(handler.formatter, TextFormatter) and not isinstance(
            handler.formatter, JsonFormatter
        ):
            handler.setFormatter(_TaskTextFormatter())


def await_start() -> None:
    """In a worker, once the sink is built: tell the parent, and wait until it says start (it
    closes our stdin) so that the tasks subscribe together. Returns at once when stdin is not
    the parent's pipe."""
    import stat

    try:
        if not stat.S_ISFIFO(os.fstat(0).st_mode):
            return
    except OSError:
        return
    sys.stdout.write(READY_LINE + "\n")
    sys.stdout.flush()
    while True:
        try:
            if not os.read(0, 4096):
                return
        except OSError:
            return


class _TaskTextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s [task %(task)s]: %(message)s", "%H:%M:%S"
        )

    def format(self, record: logging.LogRecord) -> str:
        from s3sink.logs import scrub

        return scrub(super().format(record))


# ---------------------------------------------------------------------------------------------
# The parent


@dataclass
class Totals:
    """The workers' ``catch-up done`` lines, summed."""

    records: int = 0
    files: int = 0
    commits: int = 0
    bad_records: int = 0
    #: Per summary line: (parent's monotonic time it arrived, the worker's seconds).
    spans: list[tuple[float, float]] = field(default_factory=list)
    #: Partition -> end offset that a task's finished catch-up reported (``reached_line``).
    reached: dict[tuple[str, int], int] = field(default_factory=dict)

    def add(self, line: str) -> bool:
        r = _REACHED.match(line.strip())
        if r is not None:
            key = (r.group(1), int(r.group(2)))
            with _TOTALS_LOCK:
                self.reached[key] = max(self.reached.get(key, 0), int(r.group(3)))
            return True
        m = _SUMMARY.match(line)
        if m is None:
            return False
        with _TOTALS_LOCK:  # one reader thread per worker
            self.records += int(m.group(1))
            self.files += int(m.group(2))
            self.commits += int(m.group(3))
            self.bad_records += int(m.group(6))
            self.spans.append((time.monotonic(), float(m.group(5))))
        return True

    def seconds_since(self, first: int, fallback: float) -> float:
        """From the first worker's start of consuming to the last one's end, over the summary
        lines from index ``first`` on (as one process's figure, without interpreter start-up);
        ``fallback`` without any."""
        spans = self.spans[first:]
        if not spans:
            return fallback
        return max(end for end, _ in spans) - min(end - secs for end, secs in spans)


_TOTALS_LOCK = threading.Lock()

_REACHED = re.compile(r"^catch-up reached: (\S+) (\d+) (\d+)$")


def reached_line(topic: str, partition: int, end: int) -> str:
    """A task's line for one partition its finished catch-up archived up to ``end``."""
    return f"catch-up reached: {topic} {partition} {end}"


def with_reached(
    ends: Mapping[tuple[str, int], int | None], reached: Mapping[tuple[str, int], int]
) -> dict[tuple[str, int], int | None]:
    """Commit-log ends, raised to what finished tasks reported: a log ends after its last
    record, which is short of the end offset when a transaction marker or a dead-lettered
    record comes last."""
    out = dict(ends)
    for key, end in reached.items():
        out[key] = max(out.get(key) or 0, end)
    return out


@dataclass
class Worker:
    index: int
    popen: subprocess.Popen[bytes]
    #: The last error line of its log (JSON ``msg`` of an error, or ``s3sink: error: ...``).
    last_error: str | None = None
    #: The signal the parent forwarded to it (a death by that signal before the worker
    #: installed its handlers is a clean stop: it had nothing buffered).
    signalled: int | None = None
    code: int | None = None
    readers: list[threading.Thread] = field(default_factory=list)
    #: Its exit has been looked at by :meth:`Supervisor.watch`.
    reported: bool = False
    #: The write end of its stdin: closing it starts the worker (see :func:`await_start`).
    start_fd: int | None = None
    ready: bool = False

    def release(self) -> None:
        """Let the worker start consuming (safe in a signal handler: one ``close``)."""
        fd, self.start_fd = self.start_fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    @property
    def alive(self) -> bool:
        return self.code is None

    def poll(self) -> int | None:
        if self.code is None:
            code = self.popen.poll()
            if code is not None:
                for t in self.readers:
                    t.join(5)
                if code < 0 and self.signalled is not None and -code == self.signalled:
                    code = 0  # stopped by our signal before it had started
                self.code = code
        return self.code

    def signal(self, sig: int, *, again: bool = False) -> None:
        """Send ``sig`` (once: a second stop signal would make the worker abandon, so only
        ``again`` sends one to a worker already signalled)."""
        if self.signalled is not None and not again:
            return
        if self.code is None and self.popen.poll() is None:
            self.signalled = self.signalled or sig
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, sig)

    def describe(self) -> str:
        code = self.code
        if code is None:
            return "running"
        if code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        else:
            how = f"exit code {code}"
        return how + (f": {self.last_error}" if self.last_error else "")


def exit_code(code: int) -> int:
    """A worker's exit status as a process exit code (128 + signal for a signal death)."""
    return 128 - code if code < 0 else code


def _error_of(line: str) -> str | None:
    """The message of an error log line (JSON or text), or None."""
    s = line.strip()
    if s.startswith("s3sink: error:"):
        return s[len("s3sink: error:") :].strip()
    if s.startswith("{"):
        try:
            d = json.loads(s)
        except ValueError:
            return None
        if isinstance(d, dict) and d.get("level") in ("error", "critical"):
            msg = str(d.get("msg", ""))
            exc = str(d.get("exc") or "").strip().splitlines()
            return f"{msg} ({exc[-1]})" if exc else msg
        return None
    if " ERROR " in s or " CRITICAL " in s:
        return s
    return None


class Supervisor:
    """Starts, watches and stops the workers of one ``run`` or ``catchup``."""

    def __init__(
        self, command: str, config_path: str, sets: Sequence[str], cfg: SinkConfig
    ) -> None:
        self.command = command
        self.config_path = config_path
        self.sets = list(sets)
        self.cfg = cfg
        self.workers: list[Worker] = []
        self.totals = Totals()
        self.stopping = False
        self.abandoning_since: float | None = None
        self.signals = 0
        #: The first worker that failed (its exit code is the job's).
        self.failed: Worker | None = None
        self.started_at = 0.0
        self._out_lock = threading.Lock()

    # -- starting ----------------------------------------------------------------------------
    def argv(self, index: int, assign: Sequence[tuple[str, int]] = ()) -> list[str]:
        cfg = self.cfg
        n = cfg.tasks_max
        overrides: dict[str, str] = {
            "tasks.max": "1",
            "http.listen": "none",
            "buffer.memory.bytes": str(cfg.buffer_memory_bytes // n),
        }
        if cfg.log_format == "auto":
            # the worker's stderr is a pipe to the parent: log as the parent would
            from s3sink.logs import use_json

            overrides["log.format"] = "json" if use_json("auto", sys.stderr) else "text"
        if "heartbeat.interval.ms" not in cfg.consumer:
            # tasks join and leave the group as they start and stop: members learn of a
            # rebalance from a heartbeat, and a cooperative one takes two
            overrides["consumer.heartbeat.interval.ms"] = str(HEARTBEAT_MS)
        instance = cfg.consumer.get("group.instance.id")
        if instance:
            # static membership: each task is a member of its own
            overrides["consumer.group.instance.id"] = f"{instance}-{index}"
        if "client.id" not in cfg.consumer:
            overrides["consumer.client.id"] = f"s3sink-{cfg.name}-{index}"
        argv = [sys.executable, "-m", "s3sink", self.command, "-c", self.config_path]
        for item in self.sets:
            argv += ["--set", item]
        for k, v in overrides.items():
            argv += ["--set", f"{k}={v}"]
        argv += ["--task-index", str(index)]
        if assign:
            argv += ["--assign", ",".join(f"{t}:{p}" for t, p in assign)]
        if self.command == "catchup":
            argv.append("--no-progress")
        return argv

    def start(
        self, count: int, assignments: Sequence[Sequence[tuple[str, int]]] | None = None
    ) -> None:
        """Start ``count`` workers (``assignments``: worker i archives exactly those
        partitions, assigned by hand, instead of joining the group)."""
        from s3sink.local.process import _die_with_parent

        self.workers = []
        self.started_at = time.monotonic()
        for i in range(count):
            start_r, start_w = os.pipe()
            popen = subprocess.Popen(
                self.argv(i, assignments[i] if assignments else ()),
                stdin=start_r,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                close_fds=True,
                # its own process group: a terminal's Ctrl-C reaches it once, via the parent
                start_new_session=True,
                preexec_fn=_die_with_parent(),  # noqa: PLW1509 (SIGTERM when the parent dies)
            )
            os.close(start_r)
            w = Worker(i, popen, start_fd=start_w)
            assert popen.stdout is not None and popen.stderr is not None
            w.readers = [
                threading.Thread(
                    target=self._pump_err, args=(w, popen.stderr), name=f"task-{i}-err", daemon=True
                ),
                threading.Thread(
                    target=self._pump_out, args=(w, popen.stdout), name=f"task-{i}-out", daemon=True
                ),
            ]
            for t in w.readers:
                t.start()
            self.workers.append(w)
        log.info(
            "started %d task(s) of %s: pids %s; each with buffer.memory.bytes=%d",
            count,
            self.command,
            ", ".join(str(w.popen.pid) for w in self.workers),
            self.cfg.buffer_memory_bytes // self.cfg.tasks_max,
        )

    def _write(self, stream: Any, data: bytes) -> None:
        with self._out_lock:
            try:
                buf = getattr(stream, "buffer", None)
                if buf is not None:
                    buf.write(data)
                else:
                    stream.write(data.decode("utf-8", "replace"))
                stream.flush()
            except (OSError, ValueError):
                pass

    def _pump_err(self, w: Worker, pipe: IO[bytes]) -> None:
        for raw in iter(pipe.readline, b""):
            err = _error_of(raw.decode("utf-8", "replace"))
            if err is not None:
                w.last_error = err
            self._write(sys.stderr, raw)
        pipe.close()

    def _pump_out(self, w: Worker, pipe: IO[bytes]) -> None:
        for raw in iter(pipe.readline, b""):
            line = raw.decode("utf-8", "replace")
            if line.strip() == READY_LINE:
                w.ready = True
                continue
            if self.totals.add(line):
                log.info("task %d: %s", w.index, line.strip())
                continue
            self._write(sys.stdout, raw)
        pipe.close()

    # -- stopping ----------------------------------------------------------------------------
    def release_all(self) -> None:
        for w in self.workers:
            w.release()

    def stop_all(self, sig: int = signal.SIGTERM) -> None:
        self.stopping = True
        for w in self.workers:
            w.release()
            w.signal(sig)

    def install_signals(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            self.signals += 1
            name = signal.Signals(signum).name
            if self.signals == 1:
                log.warning("%s: forwarded to the tasks (each commits what it buffered)", name)
            else:
                log.warning("%s again: forwarded to the tasks (they stop at once)", name)
                if self.abandoning_since is None:
                    self.abandoning_since = time.monotonic()
            self.stopping = True
            for w in self.workers:
                w.release()
                w.signal(signum, again=self.signals > 1)

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, handler)
            signal.signal(signal.SIGINT, handler)

    # -- watching ----------------------------------------------------------------------------
    def watch(self, tick: Callable[[], None] | None = None) -> None:
        """Until every worker has exited: a worker that exits while the job is not stopping
        (or exits non-zero) stops the others gracefully; ``tick`` runs every turn."""
        while True:
            alive = 0
            for w in self.workers:
                code = w.poll()
                if code is None:
                    alive += 1
                    continue
                if w.reported:
                    continue
                w.reported = True
                unexpected = self.command == "run" and not self.stopping
                if code != 0 or unexpected:
                    if self.failed is None:
                        self.failed = w
                        log.error(
                            "task %d (pid %d) %s %s; stopping the other tasks",
                            w.index,
                            w.popen.pid,
                            "failed:" if code != 0 else "exited without a stop signal:",
                            w.describe(),
                        )
                    self.stop_all()
                else:
                    log.info("task %d (pid %d) exited 0", w.index, w.popen.pid)
            if alive == 0:
                return
            if (
                self.abandoning_since is not None
                and time.monotonic() - self.abandoning_since > ABANDON_KILL_S
            ):
                for w in self.workers:
                    w.signal(signal.SIGKILL, again=True)
            if any(w.start_fd is not None for w in self.workers):
                waited = time.monotonic() - self.started_at
                if all(w.ready for w in self.workers) or waited > START_BARRIER_S:
                    if waited > START_BARRIER_S:
                        log.warning("tasks not ready after %.0f s; starting those that are", waited)
                    self.release_all()
            if tick is not None:
                tick()
            time.sleep(POLL_S)

    def result(self) -> int:
        w = self.failed
        if w is None:
            return 0
        code = exit_code(w.code or 0)
        return code if code != 0 else 1

    @property
    def healthy(self) -> bool:
        return bool(self.workers) and all(w.popen.poll() is None for w in self.workers)


# ---------------------------------------------------------------------------------------------
# HTTP: health from the workers' liveness


def start_parent_http(listen: str, sup: Supervisor) -> ThreadingHTTPServer | None:
    from s3sink.http import serve

    def health() -> tuple[bool, bytes]:
        return (True, b"ok\n") if sup.healthy else (False, b"task down\n")

    def ready() -> tuple[bool, bytes]:
        ok = sup.healthy and not sup.stopping
        return (True, b"ready\n") if ok else (False, b"not ready\n")

    return serve(listen, lambda: _metrics(sup), health, ready, " (health from the tasks' liveness)")


def _metrics(sup: Supervisor) -> str:
    lines = [
        "# HELP s3sink_tasks Worker processes configured (tasks.max).",
        "# TYPE s3sink_tasks gauge",
        f"s3sink_tasks {sup.cfg.tasks_max}",
        "# HELP s3sink_task_up 1 while the task's process runs, else 0.",
        "# TYPE s3sink_task_up gauge",
    ]
    for w in sup.workers:
        lines.append(f's3sink_task_up{{task="{w.index}"}} {int(w.popen.poll() is None)}')
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# The commands


def run_tasks(args: argparse.Namespace, cfg: SinkConfig) -> int:
    """``s3sink run`` with ``tasks.max`` > 1."""
    sup = Supervisor("run", args.config, args.set, cfg)
    for note in cfg.notes:
        log.info("config: %s", note)
    sup.install_signals()
    server = start_parent_http(cfg.http_listen, sup)
    try:
        sup.start(cfg.tasks_max)
        sup.watch()
    finally:
        if server is not None:
            server.shutdown()
    code = sup.result()
    if sup.failed is not None:
        log.error(
            "stopped: task %d %s (the job exits %d; restart it)",
            sup.failed.index,
            sup.failed.describe(),
            code,
        )
    else:
        log.info("stopped: all %d tasks exited 0", len(sup.workers))
    return code


def start_targets(cfg: SinkConfig) -> dict[tuple[str, int], int]:
    """Every partition of the subscribed topics and its end offset (last stable offset) now."""
    from confluent_kafka import IsolationLevel, KafkaException, TopicPartition
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.admin import OffsetSpec as _OffsetSpec  # type: ignore[attr-defined]

    from s3sink.kafkaconf import shared_client_config
    from s3sink.sink import consumer_config

    OffsetSpec: Any = _OffsetSpec
    admin = AdminClient(shared_client_config(consumer_config(cfg, catchup=True)))
    try:
        md = admin.list_topics(timeout=30)
        if cfg.topics:
            names = [t for t in cfg.topics if t in md.topics]
            for t in cfg.topics:
                if t not in md.topics:
                    log.warning("topic %s does not exist; nothing to catch up there", t)
        else:
            rx = re.compile(f"^{cfg.topics_regex}")
            names = [t for t in md.topics if rx.match(t) and not t.startswith("__")]
        keys = [
            TopicPartition(t, p)
            for t in sorted(names)
            if md.topics[t].error is None
            for p in sorted(md.topics[t].partitions)
        ]
        if not keys:
            return {}
        futures = admin.list_offsets(
            {tp: OffsetSpec.latest() for tp in keys},
            isolation_level=IsolationLevel.READ_COMMITTED,
            request_timeout=30,
        )
        return {(tp.topic, tp.partition): int(f.result().offset) for tp, f in futures.items()}
    except KafkaException as exc:
        raise FatalError(
            f"catch-up: cannot read the end offsets: {exc.args[0] if exc.args else exc}"
        ) from None


def log_ends(
    storage: Any,
    keys: Sequence[tuple[str, int]],
    hints: dict[tuple[str, int], int] | None = None,
) -> dict[tuple[str, int], int | None]:
    """The end offset of each partition's commit log (None: no log yet).

    One LIST and one GET per partition: ``hints`` (key -> a seq known to exist, updated here)
    or else the checkpoint says where the LIST starts, so repeated reads do not grow with the
    history."""
    from s3sink.clock import SystemClock
    from s3sink.commitlog import PartitionLog

    known = hints if hints is not None else {}

    def one(key: tuple[str, int]) -> int | None:
        plog = PartitionLog(storage, key[0], key[1], "s3sink-tasks", "", SystemClock())
        hint = known.get(key)
        if hint is None:
            cp = plog.read_checkpoint()
            hint = cp.seq if cp is not None else None
        seqs = list(plog.list_seqs(hint - 1)) if hint is not None else []
        if not seqs or seqs[0] != hint:  # no hint, or a wrong one: list the whole log
            seqs = list(plog.list_seqs(None))
        if not seqs:
            return None
        known[key] = seqs[-1]
        return plog.read_marker(seqs[-1]).end

    with ThreadPoolExecutor(min(READ_WORKERS, max(1, len(keys)))) as pool:
        return dict(zip(keys, pool.map(one, keys), strict=True))


def split_work(
    short: Mapping[tuple[str, int], int], targets: Mapping[tuple[str, int], int], count: int
) -> list[list[tuple[str, int]]]:
    """The short partitions dealt to ``count`` workers, the largest remaining first to the
    least loaded (records left as the load), each worker's list in partition order."""
    loads = [0] * count
    out: list[list[tuple[str, int]]] = [[] for _ in range(count)]
    for key in sorted(short, key=lambda k: (short[k] - targets[k], k)):
        i = loads.index(min(loads))
        out[i].append(key)
        loads[i] += targets[key] - short[key]
    return [sorted(keys) for keys in out if keys]


def short_of(
    targets: Mapping[tuple[str, int], int], ends: Mapping[tuple[str, int], int | None]
) -> dict[tuple[str, int], int]:
    """Partitions whose log ends before the target: key -> log end (0 without a log)."""
    out = {}
    for key, target in targets.items():
        end = ends.get(key)
        if target > 0 and (end is None or end < target):
            out[key] = end or 0
    return out


class _Poller:
    """Every :data:`POLL_LOG_S` during a catch-up round: read the commit log ends, show the
    progress, and once every partition has reached its target stop the workers gracefully
    (a worker left with no partition would wait for an assignment forever)."""

    def __init__(
        self,
        sup: Supervisor,
        storage: Any,
        targets: Mapping[tuple[str, int], int],
        progress: Callable[[int, int], None] | None,
        hints: dict[tuple[str, int], int],
    ) -> None:
        self.sup = sup
        self.storage = storage
        self.targets = targets
        self.progress = progress
        self.last = 0.0
        self.interval = POLL_LOG_S
        self.finishing = False
        self.hints = hints

    def __call__(self) -> None:
        if self.sup.stopping or self.finishing or time.monotonic() - self.last < self.interval:
            return
        self.last = time.monotonic()
        try:
            ends = with_reached(
                log_ends(self.storage, list(self.targets), self.hints), self.sup.totals.reached
            )
        except Exception as exc:  # a progress read; the end-of-round check reads again
            log.info("reading the commit log ends: %s", exc)
            return
        finally:
            # many partitions on a slow store: poll less often than the reads take
            self.interval = max(POLL_LOG_S, 5 * (time.monotonic() - self.last))
        if self.progress is not None:
            done = sum(min(t, ends.get(k) or 0) for k, t in self.targets.items())
            self.progress(done, sum(self.targets.values()))
        if not short_of(self.targets, ends):
            self.finishing = True
            log.info("every partition is archived up to the start's end offsets; stopping tasks")
            for w in self.sup.workers:
                w.signal(signal.SIGTERM)  # graceful; the round ends normally


def catchup_tasks(
    args: argparse.Namespace, cfg: SinkConfig, progress: Callable[[int, int], None] | None
) -> int:
    """``s3sink catchup`` with ``tasks.max`` > 1; prints the summed ``catch-up done`` line."""
    from s3sink.sink import Summary, storage_from_config

    started = time.monotonic()
    for note in cfg.notes:
        log.info("config: %s", note)
    targets = start_targets(cfg)
    if not targets:
        raise FatalError("catch-up: the subscribed topics have no partition")
    storage = storage_from_config(cfg)
    total = sum(targets.values())
    sup = Supervisor("catchup", args.config, args.set, cfg)
    sup.install_signals()
    keys = list(targets)
    hints: dict[tuple[str, int], int] = {}
    short = short_of(targets, with_reached(log_ends(storage, keys, hints), sup.totals.reached))
    rounds = 0
    seconds = 0.0
    while short and not sup.stopping:
        rounds += 1
        if rounds > MAX_ROUNDS:
            raise FatalError(
                f"catch-up: not done after {MAX_ROUNDS} rounds of {cfg.tasks_max} tasks; short: "
                + ", ".join(f"{t}-{p} at {e} of {targets[(t, p)]}" for (t, p), e in short.items())
            )
        count = min(cfg.tasks_max, len(short))
        if rounds > 1:
            log.warning(
                "catch-up round %d: %d partition(s) short of the start's end offsets (%s); "
                "running %d task(s) again",
                rounds,
                len(short),
                ", ".join(f"{t}-{p}" for t, p in list(short)[:5]),
                count,
            )
        first, round_started = len(sup.totals.spans), time.monotonic()
        # each task gets its share of the partitions by hand: no group rebalance while tasks
        # start and finish (the takeover fences any other owner, as always)
        work = split_work(short, targets, count)
        sup.start(len(work), work)
        tick = _Poller(sup, storage, targets, progress, hints)
        sup.watch(tick)
        seconds += sup.totals.seconds_since(first, time.monotonic() - round_started)
        if sup.failed is not None:
            log.error("catch-up failed: task %d %s", sup.failed.index, sup.failed.describe())
            return sup.result()
        if sup.signals:
            break
        short = short_of(targets, with_reached(log_ends(storage, keys, hints), sup.totals.reached))
    if progress is not None:
        progress(
            total if not short else total - sum(targets[k] - e for k, e in short.items()), total
        )
    summary = Summary(
        records=sup.totals.records,
        files=sup.totals.files,
        commits=sup.totals.commits,
        partitions=len(targets),
        seconds=seconds,
        bad_records=sup.totals.bad_records,
    )
    log.info(
        "catch-up: %d round(s), %.1f s in all (start-up of the tasks included)",
        rounds,
        time.monotonic() - started,
    )
    print(summary.text())
    return 0
