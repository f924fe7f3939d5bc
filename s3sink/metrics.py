"""Metrics: every name in one place, counters and histograms with labels, Prometheus text.

Values are kept in process; ``/metrics`` renders them. The names are the ``MetricName``
literal; an unknown name is a programming error caught by mypy.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from typing import Literal

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
    "storage_conflicts_total",
]
GaugeName = Literal[
    "buffer_memory_bytes",
    "buffer_memory_budget_bytes",
    "paused_partitions",
    "assigned_partitions",
    "consumer_lag",
    "last_commit_timestamp_seconds",
]
HistogramName = Literal["commit_seconds", "publish_seconds", "takeover_seconds"]

HELP: dict[str, str] = {
    "records_consumed_total": "Records read from Kafka.",
    "bytes_consumed_total": "Key and value bytes read from Kafka.",
    "records_written_total": "Records encoded into open files.",
    "records_committed_total": "Records in committed files.",
    "records_skipped_total": "Records skipped on purpose (e.g. tombstones with ignore).",
    "bytes_written_total": "Bytes of data files uploaded.",
    "files_opened_total": "Files opened.",
    "files_committed_total": "Files in committed markers.",
    "commits_total": "Commit markers written.",
    "commit_failures_total": "Commits that failed (the partition is taken over again).",
    "rotations_total": "File rolls, by reason.",
    "fenced_total": "Times this instance found another writer owns a partition.",
    "takeovers_total": "Partition takeovers (fence markers written).",
    "bad_records_total": "Records that could not be decoded or partitioned.",
    "dead_lettered_records_total": "Bad records sent to the dead-letter topic or prefix.",
    "storage_retries_total": "Storage requests retried, by cause.",
    "storage_conflicts_total": "Conditional writes that lost.",
    "buffer_memory_bytes": "Bytes buffered in open files and pending commits.",
    "buffer_memory_budget_bytes": "buffer.memory.bytes.",
    "paused_partitions": "Partitions paused for back-pressure or takeover.",
    "assigned_partitions": "Partitions assigned to this instance.",
    "consumer_lag": "High watermark minus position, per partition.",
    "last_commit_timestamp_seconds": "Wall-clock time of the last commit.",
    "commit_seconds": "From sealing files to the marker being written.",
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

    def inc(self, name: MetricName, value: float = 1, tp: str | None = None, **labels: str) -> None:
        key = _labels(tp, labels)
        with self._lock:
            series = self._counters[name]
            series[key] = series.get(key, 0) + value

    def set(self, name: GaugeName, value: float, tp: str | None = None, **labels: str) -> None:
        with self._lock:
            self._gauges[name][_labels(tp, labels)] = value

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
        out: list[str] = []
        with self._lock:
            for kind, table in (("counter", self._counters), ("gauge", self._gauges)):
                for name in sorted(table):
                    full = f"s3sink_{name}"
                    out.append(f"# HELP {full} {HELP.get(name, name)}")
                    out.append(f"# TYPE {full} {kind}")
                    for labels, value in sorted(table[name].items()):
                        out.append(f"{full}{_fmt_labels(labels)} {value:g}")
            for name in sorted(self._hist):
                full = f"s3sink_{name}"
                out.append(f"# HELP {full} {HELP.get(name, name)}")
                out.append(f"# TYPE {full} histogram")
                cum = 0
                for bound, c in zip((*_BUCKETS, float("inf")), self._hist[name], strict=True):
                    cum += c
                    le = "+Inf" if bound == float("inf") else f"{bound:g}"
                    out.append(f'{full}_bucket{{le="{le}"}} {cum}')
                out.append(f"{full}_sum {self._hist_sum[name]:g}")
                out.append(f"{full}_count {self._hist_count[name]}")
        return "\n".join(out) + "\n"


def _fmt_labels(labels: Labels) -> str:
    if not labels:
        return ""
    body = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in labels
    )
    return "{" + body + "}"
