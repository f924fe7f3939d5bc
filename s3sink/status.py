"""``s3sink status``: per topic-partition, what is archived and how far behind it is.

From the commit log (the truth): the latest marker (its seq, kind, owner epoch and writer) and
the last commit (seq, offsets, time, records, files). The cost per partition does not grow with
the history: the checkpoint object and the Kafka commit metadata give a seq hint, then one LIST
with StartAfter and a GET per marker after it (:meth:`PartitionLog.markers_from`); only when the
markers since the hint are all fences does it step back one marker at a time (a few at most).

From the broker (AdminClient ``list_offsets``): the low and high watermarks. The lag is the high
watermark minus the log end offset (the end of the latest marker: every offset before it is
archived). A partition the broker has but the log has not is shown as ``no log yet``; a log end
below the low watermark means records were deleted by retention before they were archived.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from s3sink.clock import SystemClock
from s3sink.commitlog import ROOT, Marker, PartitionLog
from s3sink.config import SinkConfig
from s3sink.errors import NotFoundError
from s3sink.storage.base import Storage

#: Markers read backwards (past fences) to find the last commit before giving up.
MAX_STEPS_BACK = 64
#: Partitions read from storage at once.
READ_WORKERS = 16


# ---------------------------------------------------------------------------------------------
# The log side


@dataclass(frozen=True)
class LogTail:
    """The end of one partition's commit log."""

    topic: str
    partition: int
    #: The latest marker (commit or fence); ``None``: no log.
    latest: Marker | None = None
    #: The latest commit marker; ``None`` with ``latest`` set: none found (see ``searched_to``).
    last_commit: Marker | None = None
    #: Without a commit found: the lowest seq looked at.
    searched_to: int | None = None
    checkpoint_seq: int | None = None


def _reader(storage: Storage, topic: str, partition: int) -> PartitionLog:
    return PartitionLog(storage, topic, partition, "s3sink-status", "", SystemClock())


def is_commit(marker: Marker) -> bool:
    return marker.kind == "commit"


def read_tail(
    storage: Storage,
    topic: str,
    partition: int,
    hint: int | None = None,
    wanted: Callable[[Marker], bool] = is_commit,
) -> LogTail:
    """The latest marker and the latest ``wanted`` marker (a commit) of the partition.

    ``hint`` is a seq known to exist (the Kafka commit metadata); the checkpoint object is the
    other hint, the higher one is used. Markers before the hint are read one at a time, newest
    first, only while none is ``wanted`` (at most :data:`MAX_STEPS_BACK`).
    """
    plog = _reader(storage, topic, partition)
    checkpoint = plog.read_checkpoint()
    hints = [h for h in (hint, checkpoint.seq if checkpoint else None) if h is not None]
    markers = plog.markers_from(max(hints) if hints else None)
    cp_seq = checkpoint.seq if checkpoint else None
    if not markers:
        return LogTail(topic, partition, checkpoint_seq=cp_seq)
    latest = markers[-1]
    found = [m for m in markers if wanted(m)]
    if found:
        return LogTail(topic, partition, latest, found[-1], checkpoint_seq=cp_seq)
    seq = markers[0].seq - 1
    lowest = markers[0].seq
    steps = 0
    while seq >= 0 and steps < MAX_STEPS_BACK:
        try:
            m = plog.read_marker(seq)
        except NotFoundError:
            break
        lowest = seq
        if wanted(m):
            return LogTail(topic, partition, latest, m, checkpoint_seq=cp_seq)
        seq -= 1
        steps += 1
    return LogTail(topic, partition, latest, None, searched_to=lowest, checkpoint_seq=cp_seq)


def _first_key(storage: Storage, prefix: str, start_after: str | None) -> str | None:
    it = storage.list(prefix, start_after)
    try:
        info = next(iter(it))
    except StopIteration:
        return None
    finally:
        close = getattr(it, "close", None)
        if callable(close):
            close()
    return info.key


def _skip_scan(storage: Storage, prefix: str) -> Iterator[str]:
    """The distinct first path components under ``prefix``: one LIST per component (skipping
    over everything below it), so the cost does not grow with the number of keys."""
    after: str | None = None
    while True:
        key = _first_key(storage, prefix, after)
        if key is None:
            return
        head = key[len(prefix) :].split("/", 1)[0]
        yield head
        # "\U0010ffff" sorts after every key below head/ (S3 orders keys by UTF-8 bytes)
        after = f"{prefix}{head}/\U0010ffff"


def log_partitions(storage: Storage, topic: str, *, thorough: bool = True) -> list[int]:
    """Partitions of ``topic`` that have a commit log: those with a checkpoint (one LIST),
    and, if ``thorough`` or there is none, those with markers only (a partition whose first
    takeover stopped before its checkpoint), one LIST per partition."""
    found: set[int] = set()
    cp_prefix = f"{ROOT}/checkpoint/{topic}/"
    for info in storage.list(cp_prefix):
        name = info.key[len(cp_prefix) :]
        if name.endswith(".json") and name[:-5].isdigit():
            found.add(int(name[:-5]))
    if thorough or not found:
        for head in _skip_scan(storage, f"{ROOT}/log/{topic}/"):
            if head.isdigit():
                found.add(int(head))
    return sorted(found)


def logged_topics(storage: Storage) -> list[str]:
    """Topics with a commit log in this storage."""
    return sorted(_skip_scan(storage, f"{ROOT}/log/"))


def latest_commits(
    storage: Storage, topic: str, wanted: Callable[[Marker], bool] = is_commit
) -> list[Marker]:
    """The latest ``wanted`` commit marker of every partition of ``topic`` that has one."""
    parts = log_partitions(storage, topic, thorough=False)
    with ThreadPoolExecutor(min(READ_WORKERS, max(1, len(parts)))) as pool:
        tails = list(pool.map(lambda p: read_tail(storage, topic, p, wanted=wanted), parts))
    return [t.last_commit for t in tails if t.last_commit is not None]


# ---------------------------------------------------------------------------------------------
# The broker side


@dataclass
class BrokerView:
    #: topic -> partitions (from metadata).
    partitions: dict[str, list[int]] = field(default_factory=dict)
    low: dict[tuple[str, int], int] = field(default_factory=dict)
    high: dict[tuple[str, int], int] = field(default_factory=dict)
    #: seq hints from the group's committed offsets metadata.
    hints: dict[tuple[str, int], int] = field(default_factory=dict)
    error: str | None = None


def _kafka_conf(config: SinkConfig) -> dict[str, Any]:
    from s3sink.kafkaconf import shared_client_config
    from s3sink.sink import consumer_config

    return shared_client_config(consumer_config(config, catchup=False))


def broker_view(
    config: SinkConfig, topics: Sequence[str] | None, timeout: float = 15.0
) -> BrokerView:
    """Partitions and watermarks from the broker; on failure ``error`` says why."""
    from confluent_kafka import IsolationLevel, KafkaException, TopicPartition
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.admin import OffsetSpec as _OffsetSpec  # type: ignore[attr-defined]

    OffsetSpec: Any = _OffsetSpec
    view = BrokerView()
    conf = _kafka_conf(config)
    admin = AdminClient(conf)
    try:
        md = admin.list_topics(timeout=timeout)
        if topics is None:
            regex = re.compile(config.topics_regex or "(?!)")
            names = [t for t in md.topics if regex.fullmatch(t) and not t.startswith("__")]
        else:
            names = [t for t in topics if t in md.topics]
        for t in sorted(names):
            tm = md.topics[t]
            if tm.error is None:
                view.partitions[t] = sorted(tm.partitions)
        keys = [TopicPartition(t, p) for t, ps in view.partitions.items() for p in ps]
        if keys:
            for spec, target in (
                (OffsetSpec.earliest(), view.low),
                (OffsetSpec.latest(), view.high),
            ):
                futures = admin.list_offsets(
                    {tp: spec for tp in keys},
                    isolation_level=IsolationLevel.READ_UNCOMMITTED,
                    request_timeout=timeout,
                )
                for tp, fut in futures.items():
                    target[(tp.topic, tp.partition)] = int(fut.result().offset)
            view.hints = _commit_hints(config, conf, keys, timeout)
    except KafkaException as exc:
        view.error = f"broker: {exc.args[0] if exc.args else exc}"
    return view


def _commit_hints(
    config: SinkConfig, conf: dict[str, Any], keys: list[Any], timeout: float
) -> dict[tuple[str, int], int]:
    """Seq hints from the group's committed offsets (metadata ``s3sink:seq=N``)."""
    from confluent_kafka import Consumer, KafkaException

    from s3sink.sink import HINT_PREFIX

    out: dict[tuple[str, int], int] = {}
    consumer = Consumer(
        {**conf, "group.id": config.effective_group_id, "enable.auto.commit": False}
    )
    try:
        for tp in consumer.committed(keys, timeout=timeout):
            md = getattr(tp, "metadata", None) or ""
            if md.startswith(HINT_PREFIX):
                with contextlib.suppress(ValueError):
                    out[(tp.topic, tp.partition)] = int(md[len(HINT_PREFIX) :])
    except KafkaException:
        pass  # only a hint
    finally:
        consumer.close()
    return out


# ---------------------------------------------------------------------------------------------
# The report


@dataclass(frozen=True)
class PartitionStatus:
    topic: str
    partition: int
    tail: LogTail
    low: int | None
    high: int | None

    @property
    def has_log(self) -> bool:
        return self.tail.latest is not None

    @property
    def log_end(self) -> int | None:
        return None if self.tail.latest is None else self.tail.latest.end

    @property
    def lag(self) -> int | None:
        if self.high is None or self.log_end is None:
            return None
        return max(0, self.high - self.log_end)

    @property
    def state(self) -> str:
        if not self.has_log:
            return "no log yet"
        if self.low is not None and self.log_end is not None and self.log_end < self.low:
            return "behind retention"
        if self.high is None:
            return "broker unknown"
        return "ok"

    def as_dict(self) -> dict[str, Any]:
        t = self.tail
        latest = t.latest
        commit = t.last_commit
        return {
            "topic": self.topic,
            "partition": self.partition,
            "state": self.state,
            "last_commit": None
            if commit is None
            else {
                "seq": commit.seq,
                "start_offset": commit.start,
                "end_offset": commit.end,
                "created_ms": commit.created_ms,
                "created": _iso(commit.created_ms),
                "records": commit.records,
                "files": len(commit.files),
                "epoch": commit.epoch,
                "writer": commit.writer,
            },
            "latest_marker": None
            if latest is None
            else {
                "seq": latest.seq,
                "kind": latest.kind,
                "created_ms": latest.created_ms,
                "created": _iso(latest.created_ms),
            },
            "owner_epoch": None if latest is None else latest.epoch,
            "writer": None if latest is None else latest.writer,
            "log_end_offset": self.log_end,
            "checkpoint_seq": t.checkpoint_seq,
            "low_watermark": self.low,
            "high_watermark": self.high,
            "lag": self.lag,
        }


@dataclass(frozen=True)
class StatusReport:
    partitions: list[PartitionStatus]
    broker_error: str | None = None
    generated_ms: int = 0

    @property
    def ok(self) -> bool:
        return self.broker_error is None

    @property
    def total_lag(self) -> int:
        return sum(p.lag or 0 for p in self.partitions)

    def as_dict(self) -> dict[str, Any]:
        return {
            "generated_ms": self.generated_ms,
            "generated": _iso(self.generated_ms),
            "broker_error": self.broker_error,
            "partitions": [p.as_dict() for p in self.partitions],
            "totals": {
                "partitions": len(self.partitions),
                "without_log": sum(1 for p in self.partitions if not p.has_log),
                "records_lag": self.total_lag,
            },
        }

    def json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)

    def text(self) -> str:
        head = (
            "TOPIC",
            "PART",
            "SEQ",
            "OFFSETS",
            "RECORDS",
            "COMMITTED (UTC)",
            "EPOCH",
            "WRITER",
            "HIGH WM",
            "LAG",
            "STATE",
        )
        rows: list[tuple[str, ...]] = [head]
        for p in self.partitions:
            c = p.tail.last_commit
            latest = p.tail.latest
            if c is not None:
                seq, offsets = str(c.seq), f"[{c.start}, {c.end})"
                records, when = str(c.records), _iso(c.created_ms, human=True)
            elif latest is not None:
                seq, offsets, records = "-", f"(end {latest.end})", "-"
                searched = p.tail.searched_to
                when = "never" if not searched else f"none since seq {searched}"
            else:
                seq = offsets = records = when = "-"
            rows.append(
                (
                    p.topic,
                    str(p.partition),
                    seq,
                    offsets,
                    records,
                    when,
                    "-" if latest is None else str(latest.epoch),
                    "-" if latest is None else latest.writer,
                    "-" if p.high is None else str(p.high),
                    "-" if p.lag is None else str(p.lag),
                    p.state,
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = [
            "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
            for r in rows
        ]
        with_log = sum(1 for p in self.partitions if p.has_log)
        lines.append(
            f"status: {len(self.partitions)} partitions, {with_log} with a commit log, "
            f"lag {self.total_lag} records"
        )
        if self.broker_error:
            lines.append(f"status: {self.broker_error} (watermarks and lag unknown)")
        return "\n".join(lines)


def _iso(ms: int, *, human: bool = False) -> str:
    d = datetime.fromtimestamp(ms / 1000, UTC)
    if human:
        return d.strftime("%Y-%m-%d %H:%M:%S")
    return d.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def status(
    config: SinkConfig,
    storage: Storage,
    *,
    topics: Sequence[str] | None = None,
    timeout: float = 15.0,
) -> StatusReport:
    """The status of every partition of the configured (or given) topics."""
    wanted = list(topics) if topics else (list(config.topics) or None)
    broker = broker_view(config, wanted, timeout)
    keys: set[tuple[str, int]] = set()
    names = set(wanted) if wanted is not None else set(broker.partitions)
    if wanted is None:
        regex = re.compile(config.topics_regex or "(?!)")
        names |= {t for t in logged_topics(storage) if regex.fullmatch(t)}
    for t in names:
        if t in broker.partitions:
            # a log exists only for partitions the broker has (read_tail tells which)
            keys |= {(t, p) for p in broker.partitions[t]}
        else:
            keys |= {(t, p) for p in log_partitions(storage, t)}
    ordered = sorted(keys)

    def one(key: tuple[str, int]) -> PartitionStatus:
        t, p = key
        tail = read_tail(storage, t, p, broker.hints.get(key))
        return PartitionStatus(t, p, tail, broker.low.get(key), broker.high.get(key))

    with ThreadPoolExecutor(min(READ_WORKERS, max(1, len(ordered)))) as pool:
        parts = list(pool.map(one, ordered))
    error = broker.error
    if error is None:
        missing = sorted(n for n in names if n not in broker.partitions)
        if missing and wanted is not None:
            error = f"broker: no such topic {', '.join(missing)}"
    return StatusReport(parts, error, SystemClock().now_ms())


# ---------------------------------------------------------------------------------------------
# The command


def add_parser(sub: Any, with_config: Callable[[argparse.ArgumentParser], Any]) -> None:
    p = with_config(
        sub.add_parser(
            "status",
            help="per partition: last commit, owner epoch, high watermark and lag",
            description="Per topic-partition: the last commit (seq, offsets, time, records) "
            "and the owner epoch and writer from the commit log; the high watermark and the "
            "lag (high watermark - log end offset) from the broker.",
        )
    )
    p.add_argument("--json", action="store_true", help="JSON for machines")
    p.add_argument("--topic", action="append", default=[], help="only these topics")
    p.add_argument("--timeout", type=float, default=15.0, metavar="SECONDS", help="broker requests")
    p.set_defaults(handler=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    from s3sink.commands import _load
    from s3sink.logs import setup_logging
    from s3sink.sink import storage_from_config

    cfg = _load(args)
    setup_logging(cfg.log_format, "WARNING")
    storage = storage_from_config(cfg)
    try:
        report = status(cfg, storage, topics=args.topic or None, timeout=args.timeout)
    finally:
        storage.close()
    print(report.json() if args.json else report.text())
    return 0 if report.ok else 1
