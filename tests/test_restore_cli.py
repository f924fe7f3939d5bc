"""``s3sink restore`` as users run it: ``python -m s3sink restore ...`` against real brokers.

One small ``backup`` archive of a 4-partition topic (keys, headers, tombstones, timestamps) is
shared by the module. It is restored with the options of the command line (another cluster
with ``--bootstrap``, ``--partitions`` subsets and ranges, ``--keep-partitions``, ``--by-key``,
an ISO 8601 time window, ``--dry-run``), stopped with SIGTERM between transactions and resumed,
and read back with ``isolation.level=read_committed``: keys, values, headers and timestamps
must be those of the source, each record once. Further archives cover bad records
(``errors.tolerance=all`` with and without a dead-letter topic), files that no commit marker
names, committed files missing from their final key, and a parquet archive restored as JSON.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

from s3sink.config import SinkConfig
from s3sink.restore import RestoreOptions, Restorer, _install_signals
from s3sink.sink import storage_from_config
from tests.rig.archive import markers
from tests.rig.kafka import Consumed, create_topic, produce_n, unique_name
from tests.test_restore import (
    T0,
    Rec,
    archive,
    by_partition,
    log_ends,
    murmur2,
    produce_varied,
    read_committed,
    restore_cmd,
    sink_config,
)

N = 1200
PARTITIONS = 4


@dataclass(frozen=True)
class Archive:
    cfg: SinkConfig
    props: Path
    source: str
    records: list[Consumed]

    @property
    def want(self) -> dict[int, list[Rec]]:
        return by_partition(self.records)

    def files(self, partitions: tuple[int, ...]) -> int:
        storage = storage_from_config(self.cfg)
        return sum(
            len(m.files) for p in partitions for m in markers(storage, self.source, p) if m.files
        )


def write_props(path: Path, cfg: SinkConfig, storage: dict[str, str], **extra: str) -> Path:
    keys = {
        "name": cfg.name,
        "topics": ",".join(cfg.topics),
        "bootstrap.servers": cfg.bootstrap_servers,
        "format.class": cfg.format_class,
        **storage,
        **extra,
    }
    path.write_text("".join(f"{k}={v}\n" for k, v in keys.items()))
    return path


@pytest.fixture(scope="module")
def backup(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Archive:
    tmp = tmp_path_factory.mktemp("restore-cli")
    source = create_topic(kafka_bootstrap, PARTITIONS)
    produce_varied(kafka_bootstrap, source, N)
    storage = {"storage.url": (tmp / "archive").as_uri()}
    cfg = sink_config(kafka_bootstrap, source, storage, **{"flush.size": "100"})
    archive(cfg, N)
    records = sorted(read_committed(kafka_bootstrap, source), key=lambda r: (r.partition, r.offset))
    assert len(records) == N
    return Archive(cfg, write_props(tmp / "backup.properties", cfg, storage), source, records)


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("S3SINK_")}


def restore_cli(props: Path, target: str, *args: str) -> tuple[str, str]:
    """Run the restore to its end: (stdout, stderr); it must exit 0."""
    run = subprocess.run(
        restore_cmd(props, target, *args),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout, run.stderr


def summary_line(stdout: str) -> str:
    (line,) = [x for x in stdout.splitlines() if x.startswith("restore ")]
    return line


def head(records: int, source: str, target: str, bootstrap: str, partitions: int) -> str:
    return (
        f"restore done: {records:,} records from {source} into {target} ({bootstrap}), "
        f"{partitions} partitions, "
    )


# -- 1. the command line -----------------------------------------------------------------------


def test_cli_partition_subset_onto_another_cluster_kept_1_to_1(
    backup: Archive, second_bootstrap: str
) -> None:
    """``--bootstrap`` the second cluster, ``--partitions 0,2-3``, ``--keep-partitions``."""
    other = second_bootstrap
    target = create_topic(other, PARTITIONS)
    out, _ = restore_cli(
        backup.props,
        target,
        "--bootstrap",
        other,
        "--partitions",
        "0,2-3",
        "--keep-partitions",
        "--transaction-records",
        "200",
        "--no-progress",
    )
    want = {p: rs for p, rs in backup.want.items() if p in (0, 2, 3)}
    n = sum(map(len, want.values()))
    line = summary_line(out)
    assert line.startswith(head(n, backup.source, target, other, 3)), line
    assert f", {backup.files((0, 2, 3))} files, " in line, line
    transactions = int(re.search(r", (\d+) transactions,", line).group(1))  # type: ignore[union-attr]
    assert n // 200 <= transactions <= n // 200 + 4, line
    assert "; partitions kept 1:1 (source 4, target 4 partitions); " in line, line
    assert line.endswith(f"; job {backup.cfg.name}.{backup.source}.to.{target}"), line
    assert "without a record" not in line and "error files" not in line, line
    # partition 1 stays empty; the others hold the source's records, in order, byte for byte
    assert by_partition(read_committed(other, target)) == want
    assert log_ends(other, target)[1] == 0


def test_cli_by_key_onto_as_many_partitions(kafka_bootstrap: str, backup: Archive) -> None:
    """Explicit ``--by-key`` on a topic with as many partitions: murmur2 of the key decides,
    not the source partition; per-key order kept."""
    target = create_topic(kafka_bootstrap, PARTITIONS)
    out, _ = restore_cli(backup.props, target, "--by-key", "--no-progress")
    line = summary_line(out)
    assert line.startswith(head(N, backup.source, target, kafka_bootstrap, PARTITIONS)), line
    assert "partitions by key hash (murmur2, as the Java client) because --by-key" in line, line
    got = read_committed(kafka_bootstrap, target)
    as_rec = [(r.key, r.value, r.headers, r.timestamp_ms) for r in got]
    want = [(r.key, r.value, r.headers, r.timestamp_ms) for r in backup.records]
    assert collections.Counter(as_rec) == collections.Counter(want)
    for r in got:
        if r.key is not None:
            assert r.partition == (murmur2(r.key) & 0x7FFFFFFF) % PARTITIONS, r.key
    src_partition = {r.key: r.partition for r in backup.records if r.key is not None}
    moved = sum(1 for r in got if r.key is not None and src_partition[r.key] != r.partition)
    assert moved > 0, "the source's partitioner and murmur2 agree on every key: a weak test"
    ordered = sorted(got, key=lambda r: (r.partition, r.offset))
    for k in src_partition:
        assert [r.value for r in ordered if r.key == k] == [
            r.value for r in backup.records if r.key == k
        ]


def test_cli_iso_time_window(kafka_bootstrap: str, backup: Archive) -> None:
    """``--from-time`` (inclusive) and ``--to-time`` (exclusive) in ISO 8601, zones honoured."""
    target = create_topic(kafka_bootstrap, PARTITIONS)
    # T0 is 2020-09-13T12:26:40Z; record i has the timestamp T0 + i s
    lo, hi = T0 + 200_000, T0 + 800_000
    out, _ = restore_cli(
        backup.props,
        target,
        "--from-time",
        "2020-09-13T12:30:00Z",
        "--to-time",
        "2020-09-13T14:40:00+02:00",
        "--no-progress",
    )
    want = {
        p: kept for p, rs in backup.want.items() if (kept := [r for r in rs if lo <= r[3] < hi])
    }
    n = sum(map(len, want.values()))
    assert n == 600
    line = summary_line(out)
    assert line.startswith(head(n, backup.source, target, kafka_bootstrap, PARTITIONS)), line
    assert f"; {N - n:,} records outside the time window skipped; " in line, line
    assert re.search(rf"; job {re.escape(backup.cfg.name)}\.[^ ]+\.[0-9a-f]{{8}}$", line), line
    assert by_partition(read_committed(kafka_bootstrap, target)) == want


def test_cli_dry_run_prints_the_plan_and_produces_nothing(
    kafka_bootstrap: str, backup: Archive
) -> None:
    target = create_topic(kafka_bootstrap, 2)
    progress_topic = unique_name("progress")
    out, _ = restore_cli(
        backup.props, target, "--dry-run", "--progress-topic", progress_topic, "--partitions", "1-3"
    )
    storage = storage_from_config(backup.cfg)
    lines = out.splitlines()
    plan = [x for x in lines if x.startswith("partition ")]
    expected = []
    for p in (1, 2, 3):
        commits = [m for m in markers(storage, backup.source, p) if m.files]
        expected.append(
            f"partition {p}: {len(commits)} commits, {sum(len(m.files) for m in commits)} files, "
            f"{sum(f.records for m in commits for f in m.files):,} records, "
            f"offsets up to {commits[-1].end}"
        )
    assert plan == expected
    assert sum(len(backup.want[p]) for p in (1, 2, 3)) == sum(
        int(x.split(" files, ")[1].split(" records")[0].replace(",", "")) for x in plan
    )
    (mapping,) = [x for x in lines if x.startswith("mapping: ")]
    assert mapping.startswith("mapping: partitions by key hash (murmur2"), mapping
    assert "because the target has 2 partitions, the source 4" in mapping, mapping
    assert not any(x.startswith("restore ") for x in lines), out
    # nothing produced, no progress topic created
    assert log_ends(kafka_bootstrap, target) == {0: 0, 1: 0}
    assert progress_topic not in create_admin(kafka_bootstrap).list_topics(timeout=10).topics


def create_admin(bootstrap: str) -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap})


# -- 2. progress and a graceful stop -----------------------------------------------------------


class Lines:
    """The lines of a child's pipe, read by a thread as they come."""

    def __init__(self, pipe: IO[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe: IO[str]) -> None:
        for line in pipe:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no line matching {pattern!r} in {self.lines[-20:]}"
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            assert line is not None, f"the pipe closed before {pattern!r}: {self.lines[-20:]}"
            self.lines.append(line)
            if re.search(pattern, line):
                return line

    def rest(self) -> list[str]:
        self._thread.join(30)
        while (line := self._queue.get_nowait() if not self._queue.empty() else None) is not None:
            self.lines.append(line)
        return self.lines


PROGRESS = r"restore progress: (\d+)/(\d+) records \((\d+)%\)"


def test_sigterm_stops_between_transactions_and_a_rerun_completes(
    kafka_bootstrap: str, backup: Archive
) -> None:
    """Log lines show the progress on a non-terminal; SIGTERM mid-restore stops after the
    current transaction (exit 0, "rerun to continue"); the rerun finishes: each record once."""
    target = create_topic(kafka_bootstrap, PARTITIONS)
    cmd = restore_cmd(
        backup.props, target, "--transaction-records", "5", "--progress-interval", "0"
    )
    proc = subprocess.Popen(
        cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stderr is not None and proc.stdout is not None
        err = Lines(proc.stderr)
        # a progress line after each transaction: stop it after the third
        third = err.wait_for(r"restore progress: 15/")
        proc.send_signal(signal.SIGTERM)
        out = proc.stdout.read()
        assert proc.wait(60) == 0, "\n".join(err.rest()[-30:])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    stderr = err.rest()
    # JSON log lines on a non-terminal (log.format=auto)
    logged = json.loads(third)
    assert (logged["level"], logged["logger"], logged["msg"]) == (
        "info",
        "s3sink.restore",
        f"restore progress: 15/{N} records (1%)",
    ), third
    assert any("SIGTERM: stopping after the current transaction" in x for x in stderr), stderr[-20:]
    line = summary_line(out)
    assert line.startswith("restore stopped (rerun to continue): "), line
    stopped_at = int(line.split(": ", 1)[1].split(" records")[0].replace(",", ""))
    assert 0 < stopped_at < N, line
    # a line after each transaction, growing, up to where it stopped
    seen = [int(m.group(1)) for x in stderr if (m := re.search(PROGRESS, x))]
    assert seen == list(range(5, stopped_at + 1, 5)), seen
    # what read_committed consumers see: exactly the committed transactions, none left open
    assert len(read_committed(kafka_bootstrap, target)) == stopped_at
    assert log_ends(kafka_bootstrap, target, stable=True) == log_ends(kafka_bootstrap, target)

    out, _ = restore_cli(backup.props, target, "--no-progress")
    line = summary_line(out)
    assert line.startswith(head(N - stopped_at, backup.source, target, kafka_bootstrap, 4)), line
    assert "; resumed partition 0 at offset " in line, line
    assert by_partition(read_committed(kafka_bootstrap, target)) == backup.want


def test_second_signal_aborts_the_open_transaction(kafka_bootstrap: str, backup: Archive) -> None:
    """The CLI's signal handler in this process: a first SIGTERM asks for a stop after the
    transaction, a second one (while the transaction is open) aborts it and stops at once."""
    target = create_topic(kafka_bootstrap, PARTITIONS)
    opts = RestoreOptions(to_topic=target, transaction_records=100)

    class Signalled(Restorer):
        """SIGTERM twice to itself after the 250th record (inside the third transaction)."""

        def _make_producer(self, mapping_key: bool) -> Any:
            return SignallingProducer(super()._make_producer(mapping_key), target, 250)

    restorer = Signalled(backup.cfg, opts)
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        _install_signals(restorer)
        with pytest.raises(KeyboardInterrupt):
            restorer.run()
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
    assert restorer.stopped
    # two transactions committed; the third was aborted, not left open
    assert by_partition(read_committed(kafka_bootstrap, target)) == by_partition(
        backup.records[:200]
    )
    ends = log_ends(kafka_bootstrap, target)
    assert log_ends(kafka_bootstrap, target, stable=True) == ends
    assert sum(ends.values()) >= 250 + 3  # the aborted records, the transaction markers

    summary = Restorer(backup.cfg, opts).run()
    assert summary.records == N - 200 and 0 in summary.resumed, summary.text()
    assert by_partition(read_committed(kafka_bootstrap, target)) == backup.want


class SignallingProducer:
    """A real producer that sends this process SIGTERM twice after ``after`` records (once
    they are on the broker)."""

    def __init__(self, inner: Any, topic: str, after: int) -> None:
        self._inner = inner
        self._topic = topic
        self._after = after
        self._count = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def produce(self, topic: str, **kw: Any) -> None:
        self._inner.produce(topic, **kw)
        if topic == self._topic:
            self._count += 1
            if self._count == self._after:
                # the open transaction's records on the broker: left open, they would hold
                # read_committed consumers back (the last stable offset stays before them)
                assert self._inner.flush(30) == 0
                os.kill(os.getpid(), signal.SIGTERM)  # handled here: stop after the transaction
                os.kill(os.getpid(), signal.SIGTERM)  # raises KeyboardInterrupt


# -- 5. a parquet archive back as JSON ---------------------------------------------------------


def test_cli_parquet_archive_restored_as_json(kafka_bootstrap: str, tmp_path: Path) -> None:
    """JSON records archived as parquet (``store.kafka.metadata=true``) come back with
    ``--value-format json`` as the same documents, re-encoded (compact, UTF-8): equal as JSON,
    not byte for byte, as the summary says; keys, headers and timestamps are the originals."""
    source = create_topic(kafka_bootstrap, 2)
    n = 300
    produce_n(
        kafka_bootstrap,
        source,
        n,
        value=lambda i: json.dumps(
            {"id": i, "name": f"n\u00e9{i}", "score": i / 4, "tags": ["a", "b"][: i % 3]}
        ).encode(),
        key=lambda i: b"k%d" % (i % 9),
        headers=lambda i: [("h", b"%d" % i), ("h", None)],
        timestamp_ms=lambda i: T0 + i,
    )
    storage = {"storage.url": (tmp_path / "archive").as_uri()}
    extra = {
        "format.class": "parquet",
        "value.converter": "json",
        "store.kafka.metadata": "true",
        "flush.size": "100",
    }
    cfg = sink_config(kafka_bootstrap, source, storage, **extra)
    archive(cfg, n)
    props = write_props(tmp_path / "parquet.properties", cfg, storage, **extra)
    target = create_topic(kafka_bootstrap, 2)
    out, _ = restore_cli(props, target, "--value-format", "json", "--no-progress")
    line = summary_line(out)
    assert line.startswith(head(n, source, target, kafka_bootstrap, 2)), line
    assert "; values from parquet files re-encoded as JSON (not byte-exact); " in line, line
    want = by_partition(read_committed(kafka_bootstrap, source))
    got = by_partition(read_committed(kafka_bootstrap, target))
    assert {p: [(k, h, ts) for k, _, h, ts in rs] for p, rs in got.items()} == {
        p: [(k, h, ts) for k, _, h, ts in rs] for p, rs in want.items()
    }

    def docs(rs: list[Rec]) -> list[Any]:
        return [json.loads(v) for _, v, _, _ in rs if v is not None]

    assert {p: docs(rs) for p, rs in got.items()} == {p: docs(rs) for p, rs in want.items()}
    pairs = [(a[1], b[1]) for p in want for a, b in zip(want[p], got[p], strict=True)]
    assert all(a != b for a, b in pairs)  # not the same bytes: re-encoded
    one = next(b for a, b in pairs if a is not None and json.loads(a)["id"] == 1)
    assert one is not None and b'"name":"n\xc3\xa91"' in one, (
        one
    )  # compact, UTF-8 where the source had \u00e9
