"""Metrics: every name in one place, counters and histograms with labels, Prometheus text.

Values are kept in process; ``/metrics`` renders them. The names are the ``MetricName``
literal; an unknown name is a programming error caught by mypy. Values kept elsewhere (the
storage backend's retry counters) are pulled in by *collectors*, run before each render.
Per-partition series carry ``topic`` and ``partition`` labels (pass ``tp``, a
``<topic>-<partition>`` name); counters keep their series after a revoke (they are totals of
this process), per-partition gauges are removed with :meth:`Metrics.forget`.
"""

from __future__ import annotations

import bisect
import json
import math
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Literal

MetricName = Literal[
    "records_consumed_total",
    "bytes_consumed_total",
    "records_written_total",
    "records_committed_total",
    "records_skipped_total",
    "bytes_written_total",
    "files_opened_total",
    "files_committed_total",
    "commits_total",
    "commit_failures_total",
    "rotations_total",
    "fenced_total",
    "takeovers_total",
    "bad_records_total",
    "dead_lettered_records_total",
    "storage_retries_total",
    "storage_retries_exhausted_total",
    "storage_conflicts_total",
    "bytes_committed_total",
]
GaugeName = Literal[
    "buffer_memory_bytes",
    "buffer_memory_budget_bytes",
    "paused_partitions",
    "assigned_partitions",
    "consumer_lag",
    "committed_lag",
    "last_commit_timestamp_seconds",
    "ready",
]
HistogramName = Literal["commit_seconds", "publish_seconds", "takeover_seconds"]

HELP: dict[str, str] = {
    "records_consumed_total": "Records read from Kafka.",
    "bytes_consumed_total": "Key and value bytes read from Kafka.",
    "records_written_total": "Records encoded into open files.",
    "records_committed_total": "Records in committed files.",
    "records_skipped_total": "Records skipped on purpose (e.g. tombstones with ignore).",
    "bytes_written_total": "Bytes of data files uploaded to staging (committed or not).",
    "bytes_committed_total": "Bytes of the files in committed markers.",
    "files_opened_total": "Files opened.",
    "files_committed_total": "Files in committed markers.",
    "commits_total": "Commit markers written.",
    "commit_failures_total": "Commits that failed (the partition is taken over again).",
    "rotations_total": "File rolls, by reason.",
    "fenced_total": "Times this instance found another writer owns a partition.",
    "takeovers_total": "Partition takeovers (fence markers written).",
    "bad_records_total": "Records that could not be decoded or partitioned.",
    "dead_lettered_records_total": "Bad records sent to the dead-letter topic or prefix.",
    "storage_retries_total": "Storage requests retried, by cause (S3 error code or exception).",
    "storage_retries_exhausted_total": "Storage requests that failed after every retry.",
    "storage_conflicts_total": "Conditional marker writes that found the slot taken, by cause "
    "(fence_marker: a takeover raced another writer; commit_marker: a commit found the "
    "partition fenced, or its own earlier try).",
    "buffer_memory_bytes": "Bytes buffered in open files and pending commits.",
    "buffer_memory_budget_bytes": "buffer.memory.bytes.",
    "paused_partitions": "Partitions paused, by reason (backpressure: uploads behind the "
    "memory budget; recovery: waiting to be taken over again after a failure or fencing).",
    "assigned_partitions": "Partitions assigned to this instance.",
    "consumer_lag": "Offsets not yet consumed: the end offset (last stable offset with "
    "read_committed, from librdkafka statistics) minus how far the consumer has read (past "
    "the last record, or to the end of the partition: control and aborted records included).",
    "committed_lag": "Offsets not yet archived: the end offset minus the end offset of the "
    "partition's latest commit marker, or minus how far the consumer has read once the "
    "partition holds no open files or pending commits (what follows the marker is then "
    "control, aborted or skipped records). 0 when everything below the end is committed.",
    "last_commit_timestamp_seconds": "Wall-clock time of the last commit.",
    "ready": "1 once partitions are assigned and taken over (as /readyz), else 0.",
    "commit_seconds": "From the start of a commit (closing files, completing the staging "
    "uploads) to its marker being written.",
    "publish_seconds": "From the marker to all files published.",
    "takeover_seconds": "Time to take a partition over.",
}

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

Labels = tuple[tuple[str, str], ...]


def _labels(tp: str | None, extra: dict[str, str]) -> Labels:
    items = dict(extra)
    if tp is not None:
        topic, _, partition = tp.rpartition("-")
        items["topic"] = topic
        items["partition"] = partition
    return tuple(sorted(items.items()))


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[Labels, float]] = defaultdict(dict)
        self._gauges: dict[str, dict[Labels, float]] = defaultdict(dict)
        self._hist: dict[str, list[int]] = {}
        self._hist_sum: dict[str, float] = defaultdict(float)
        self._hist_count: dict[str, int] = defaultdict(int)
        self._collectors: list[Callable[[Metrics], None]] = []

    def add_collector(self, collect: Callable[[Metrics], None]) -> None:
        """Run ``collect(self)`` before each render, to pull values kept elsewhere."""
        self._collectors.append(collect)

    def collect(self) -> None:
        for fn in list(self._collectors):
            fn(self)

    def inc(self, name: MetricName, value: float = 1, tp: str | None = None, **labels: str) -> None:
        key = _labels(tp, labels)
        with self._lock:
            series = self._counters[name]
            series[key] = series.get(key, 0) + value

    def set_total(
        self, name: MetricName, value: float, tp: str | None = None, **labels: str
    ) -> None:
        """Set a counter to a total counted elsewhere (by a collector)."""
        with self._lock:
            self._counters[name][_labels(tp, labels)] = value

    def set(self, name: GaugeName, value: float, tp: str | None = None, **labels: str) -> None:
        with self._lock:
            self._gauges[name][_labels(tp, labels)] = value

    def gauge(self, name: GaugeName, tp: str | None = None, **labels: str) -> float | None:
        with self._lock:
            return self._gauges.get(name, {}).get(_labels(tp, labels))

    def forget(self, tp: str) -> None:
        """Drop the per-partition gauges of ``tp`` (a revoked partition)."""
        drop = dict(_labels(tp, {}))
        with self._lock:
            for series in self._gauges.values():
                for key in [k for k in series if all(dict(k).get(n) == v for n, v in drop.items())]:
                    del series[key]

    def observe(self, name: HistogramName, seconds: float) -> None:
        with self._lock:
            counts = self._hist.setdefault(name, [0] * (len(_BUCKETS) + 1))
            counts[bisect.bisect_left(_BUCKETS, seconds)] += 1
            self._hist_sum[name] += seconds
            self._hist_count[name] += 1

    def total(self, name: MetricName, **match: str) -> float:
        """Sum of a counter over the series whose labels include ``match``."""
        with self._lock:
            return sum(
                v
                for k, v in self._counters.get(name, {}).items()
                if all(dict(k).get(mk) == mv for mk, mv in match.items())
            )

    def render(self) -> str:
        """Prometheus text exposition format."""
        self.collect()
        out: list[str] = []
        with self._lock:
            for kind, table in (("counter", self._counters), ("gauge", self._gauges)):
                for name in sorted(table):
                    full = f"s3sink_{name}"
                    out.append(f"# HELP {full} {HELP.get(name, name)}")
                    out.append(f"# TYPE {full} {kind}")
                    for labels, value in sorted(table[name].items()):
                        out.append(f"{full}{_fmt_labels(labels)} {_fmt_value(value)}")
            for name in sorted(self._hist):
                full = f"s3sink_{name}"
                out.append(f"# HELP {full} {HELP.get(name, name)}")
                out.append(f"# TYPE {full} histogram")
                cum = 0
                for bound, c in zip((*_BUCKETS, float("inf")), self._hist[name], strict=True):
                    cum += c
                    le = "+Inf" if bound == float("inf") else f"{bound:g}"
                    out.append(f'{full}_bucket{{le="{le}"}} {cum}')
                out.append(f"{full}_sum {_fmt_value(self._hist_sum[name])}")
                out.append(f"{full}_count {self._hist_count[name]}")
        return "\n".join(out) + "\n"


def _fmt_value(value: float) -> str:
    """Exact: integral values as integers (``:g`` would print 1234567 as 1.23457e+06)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**63:
        return str(int(value))
    return repr(float(value))


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _fmt_labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels) + "}"


Sample = tuple[str, Labels]


def parse(text: str) -> dict[Sample, float]:
    """Parse Prometheus text (as :meth:`Metrics.render` writes it) into
    ``{(name, labels): value}``; for checks, tests and health probes."""
    out: dict[Sample, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, brace, rest = head.partition("{")
        labels: list[tuple[str, str]] = []
        if brace:
            body = rest[: rest.rindex("}")]
            i = 0
            while i < len(body):
                eq = body.index("=", i)
                key = body[i:eq]
                j = eq + 2  # past ="
                chars: list[str] = []
                while body[j] != '"':
                    if body[j] == "\\":
                        j += 1
                        chars.append("\n" if body[j] == "n" else body[j])
                    else:
                        chars.append(body[j])
                    j += 1
                labels.append((key, "".join(chars)))
                i = j + 2 if j + 1 < len(body) and body[j + 1] == "," else j + 1
        out[(name, tuple(sorted(labels)))] = float(value)
    return out


class CountingLogStorage:
    """Wraps the storage a :class:`~s3sink.commitlog.PartitionLog` writes markers through and
    counts the conditional writes that lose (``storage_conflicts_total``), by the kind of
    marker that lost (``fence_marker``: a takeover raced another writer; ``commit_marker``: a
    commit found its slot taken, i.e. it was fenced or its own earlier try had landed).
    Everything else passes through untouched."""

    def __init__(self, storage: Any, metrics: Metrics) -> None:
        self._storage = storage
        self._metrics = metrics

    def put(self, key: str, data: bytes, **kwargs: Any) -> Any:
        from s3sink.errors import ConflictError

        try:
            return self._storage.put(key, data, **kwargs)
        except ConflictError:
            self._metrics.inc("storage_conflicts_total", 1, tp=_tp_of(key), cause=_cause_of(data))
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)


def _tp_of(key: str) -> str | None:
    # _s3sink/log/<topic>/<partition>/<seq>.json
    parts = key.split("/")
    if len(parts) >= 5 and parts[1] == "log" and parts[-2].isdigit():
        return f"{'/'.join(parts[2:-2])}-{parts[-2]}"
    return None


def _cause_of(data: bytes) -> str:
    try:
        kind = json.loads(data).get("kind")
    except (ValueError, AttributeError):
        kind = None
    return f"{kind}_marker" if kind in ("fence", "commit") else "other"
