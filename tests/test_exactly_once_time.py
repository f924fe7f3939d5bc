"""The kill test with the time partitioner and wall-clock rotation: SIGKILL ``s3sink run`` at
random moments; every record lands exactly once, in the hour directory of its own time.

4 partitions of JSON records with a unique ``id`` and a ``created_at`` ISO-8601 time spread over
six hours (mostly rising with the id, every 37th record two hours late, so several hour
directories of a partition are open at once) are produced in the background while
``s3sink run`` archives them to MinIO as Parquet with ``partitioner.class=time``
(``'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH``, one-hour buckets, ``timestamp.extractor=
RecordField`` on ``created_at``) and all three rotation triggers: ``flush.size=700``,
``rotate.interval.ms=600000`` (record time) and ``rotate.schedule.interval.ms=1000`` (wall
clock). The sink is SIGKILLed at random moments and restarted, then a final ``s3sink catchup``
drains the topic. The checks read the bucket as a reader does (list ``topics.dir``, read every
Parquet file with pyarrow): the ids equal the produced ids exactly (no loss, no duplicate), each
record sits in the directory of its ``created_at`` hour, the listed files are exactly the data
files of the commit log, each partition's log is contiguous from offset 0 to the end offset,
``s3sink verify`` is clean, and no staging file or multipart upload is left. Figures are printed.

The same runs, smaller, with ``format.class=backup``: the backup format goes through the same
partitioner, rotation and commit protocol. Its Avro files are read with fastavro through the
commit log (the files its markers name): the values' ids are the produced ids exactly, each in
the hour directory of its ``created_at``, and each row's Kafka coordinates are those of its
file, every offset of every partition from 0 to the end offset exactly once.

Size: ``TIME_KILL_TEST_RECORDS`` (default 40,000), ``TIME_KILL_TEST_KILLS`` (default 8);
for the backup run ``TIME_KILL_TEST_BACKUP_RECORDS`` (default 12,000) and
``TIME_KILL_TEST_BACKUP_KILLS`` (default 3). ``TIME_KILL_TEST_SEED`` replays a run's kill
schedule.
"""

from __future__ import annotations

import collections
import io
import itertools
import json
import os
import random
import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
import pyarrow.parquet as pq
import pytest
from confluent_kafka import KafkaError, Message, Producer

from s3sink.commitlog import ROOT
from s3sink.local import S3Endpoint
from s3sink.storage.base import Storage
from tests.rig.archive import check_exactly_once, markers, staging_left
from tests.rig.kafka import create_topic, end_offsets, unique_name
from tests.rig.sinkproc import (
    SinkProcess,
    info,
    percentile,
    run_command,
    s3_keys,
    sink_config,
    storage_of,
)

pytestmark = pytest.mark.slow

PARTITIONS = 4
N = int(os.environ.get("TIME_KILL_TEST_RECORDS", "40000"))
KILLS = int(os.environ.get("TIME_KILL_TEST_KILLS", "8"))
BACKUP_N = int(os.environ.get("TIME_KILL_TEST_BACKUP_RECORDS", "12000"))
BACKUP_KILLS = int(os.environ.get("TIME_KILL_TEST_BACKUP_KILLS", "3"))
#: A kill comes this long after the start (seconds): during start-up, takeover, consumption and
#: commits alike.
KILL_AFTER = (1.0, 6.0)
#: Records per second of the background producer: production spans most of the kill phase.
RATE = 1300.0
HOUR_MS = 3_600_000
SPAN_MS = 6 * HOUR_MS
PATH_FORMAT = "'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH"
HOUR_DIR = re.compile(r"/year=(\d{4})/month=(\d{2})/day=(\d{2})/hour=(\d{2})/[^/]+$")
#: ``<topic>+<kafka partition>+<start offset>.<extension>``
FILE_NAME = re.compile(r"/[^/]+\+(\d+)\+(\d+)\.[^/]+$")
COMMITTED = re.compile(r"committed seq \d+")
REASON = re.compile(r"committed seq \d+ .*\((\w+)\)$")


def _created_at_ms(base: int, i: int, n: int) -> int:
    """Rising with the id over SPAN_MS; every 37th record two hours late (an older hour)."""
    ms = base + i * SPAN_MS // n
    if i % 37 == 0:
        ms = max(base, ms - 2 * HOUR_MS)
    return ms


def _iso(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _hour_of(iso: str) -> tuple[int, int, int, int]:
    d = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(UTC)
    return (d.year, d.month, d.day, d.hour)


class TimedProducer(threading.Thread):
    """Produces ``{"id": i, "created_at": <ISO-8601>, "pad": ...}`` for i in [0, n) round-robin
    over the partitions at ``rate`` records/s (idempotent, acks=all), in the background."""

    def __init__(self, bootstrap: str, topic: str, n: int, base: int, rate: float) -> None:
        super().__init__(name=f"produce-{topic}", daemon=True)
        self.bootstrap, self.topic, self.n, self.base, self.rate = bootstrap, topic, n, base, rate
        self.acked = 0
        self.errors: list[str] = []
        self.failure: BaseException | None = None

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is None:
            self.acked += 1
        else:
            self.errors.append(str(err))

    def run(self) -> None:
        try:
            producer = Producer(
                {
                    "bootstrap.servers": self.bootstrap,
                    "enable.idempotence": True,
                    "acks": "all",
                    "linger.ms": 20,
                }
            )
            started = time.monotonic()
            for i in range(self.n):
                if i % 100 == 0:
                    ahead = i / self.rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
                value = json.dumps(
                    {
                        "id": i,
                        "created_at": _iso(_created_at_ms(self.base, i, self.n)),
                        "pad": "x" * (i % 40),
                    }
                ).encode()
                while True:
                    try:
                        producer.produce(
                            self.topic,
                            value,
                            partition=i % PARTITIONS,
                            on_delivery=self._on_delivery,
                        )
                        break
                    except BufferError:
                        producer.poll(0.05)
                producer.poll(0)
            left = producer.flush(120)
            if left:
                self.errors.append(f"{left} records not acknowledged in 120s")
        except BaseException as exc:  # reported by join_checked
            self.failure = exc

    def join_checked(self, timeout: float) -> None:
        self.join(timeout)
        assert not self.is_alive(), f"producing to {self.topic} did not finish in {timeout:.0f}s"
        assert self.failure is None, f"producing failed: {self.failure!r}"
        assert not self.errors and self.acked == self.n, (self.acked, self.errors[:3])


def _read_final_files(
    storage: Storage, topics_dir: str, topic: str
) -> tuple[list[str], list[tuple[str, str, str]]]:
    """The data files listed under ``<topics.dir>/<topic>/`` and, for every record in them,
    (file key, id, created_at) -- read the way a reader does, file by file with pyarrow."""
    keys = [i.key for i in storage.list(f"{topics_dir}/{topic}/")]
    rows: list[tuple[str, str, str]] = []
    for key in keys:
        data, _ = storage.get(key)
        table = pq.read_table(io.BytesIO(data), columns=["id", "created_at"])
        ids = table.column("id").to_pylist()
        times = table.column("created_at").to_pylist()
        rows.extend((key, str(i), str(t)) for i, t in zip(ids, times, strict=True))
    return keys, rows


@dataclass
class BackupRows:
    """What the backup files named by the commit log hold."""

    #: (file key, id, created_at) of every record, from its value.
    rows: list[tuple[str, str, str]]
    #: Kafka partition -> the offsets of its rows, in file order.
    offsets: dict[int, list[int]]
    #: Rows whose topic, partition, offset or timestamp disagree with their file.
    wrong: list[str]


def _read_backup_files(storage: Storage, topic: str, files: list[str]) -> BackupRows:
    """Every row of the backup files ``files`` (the commit log's), read with fastavro."""
    out = BackupRows([], collections.defaultdict(list), [])
    for key in files:
        name = FILE_NAME.search(key)
        assert name is not None, key
        partition, start = int(name.group(1)), int(name.group(2))
        data, _ = storage.get(key)
        reader: Any = fastavro.reader(io.BytesIO(data))
        for n, row in enumerate(reader):
            value = json.loads(row["value"])
            out.rows.append((key, str(value["id"]), str(value["created_at"])))
            out.offsets[row["partition"]].append(row["offset"])
            if (
                row["topic"] != topic
                or row["partition"] != partition
                or value["id"] % PARTITIONS != partition
                or (n == 0 and row["offset"] != start)
                or row["timestamp_type"] != "CreateTime"
                or row["timestamp"] <= 0
            ):
                out.wrong.append(f"{key} row {n}: {row}")
    return out


@dataclass(frozen=True)
class Run:
    """One kill test: the format of the archive, records produced, SIGKILLs."""

    fmt: str
    n: int
    kills: int


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "run", [Run("parquet", N, KILLS), Run("backup", BACKUP_N, BACKUP_KILLS)], ids=lambda r: r.fmt
)
def test_sigkill_with_time_partitioner_and_wall_clock_rotation(
    run: Run, kafka_bootstrap: str, minio_endpoint: S3Endpoint, minio_bucket: str, tmp_path: Path
) -> None:
    n, kills = run.n, run.kills
    seed = int(os.environ.get("TIME_KILL_TEST_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    info(f"time kill test seed {seed} (TIME_KILL_TEST_SEED={seed} replays the kill schedule)")
    started = time.monotonic()
    topic = create_topic(kafka_bootstrap, PARTITIONS, prefix="killtime")
    now = int(time.time() * 1000)
    base = now - now % HOUR_MS - 8 * HOUR_MS
    producer = TimedProducer(kafka_bootstrap, topic, n, base, RATE)
    producer.start()

    cfg = sink_config(
        kafka_bootstrap,
        topic,
        s3_keys(minio_endpoint, minio_bucket),
        **{
            "value.converter": "json",
            "format.class": run.fmt,
            "partitioner.class": "time",
            "path.format": PATH_FORMAT,
            "partition.duration.ms": str(HOUR_MS),
            "timestamp.extractor": "RecordField",
            "timestamp.field": "created_at",
            "rotate.schedule.interval.ms": "1000",
            "rotate.interval.ms": "600000",
            "flush.size": "700",
            # static membership: a restarted incarnation takes the killed one's place at once
            "consumer.group.instance.id": unique_name("killtime"),
            "consumer.session.timeout.ms": "10000",
        },
    )
    proc = SinkProcess(cfg, tmp_path, "sink")
    recovery: list[float] = []
    no_commit_runs = 0
    with proc:
        for step in range(kills):
            proc.start()
            time.sleep(rng.uniform(*KILL_AFTER))
            code = proc.kill()
            assert code == -9, f"run {step} exited by itself ({code}):\n{proc.tail()}"
            first = next((r for r in proc.records(current=True) if COMMITTED.search(r.msg)), None)
            if first is None:
                no_commit_runs += 1
            else:
                recovery.append(first.ts - proc.started_at)
        kill_phase = time.monotonic() - started
        producer.join_checked(120)

        catchup_started = time.monotonic()
        catchup = SinkProcess(cfg, tmp_path, "catchup", command="catchup", args=["--no-progress"])
        with catchup:
            catchup.start()
            assert catchup.wait(150) == 0, catchup.tail()
        catchup_time = time.monotonic() - catchup_started
        summary = [line for line in catchup.lines() if line.startswith("catch-up done")]

    code, report = run_command("verify", cfg, tmp_path, "verify", timeout=120)
    assert code == 0, report

    storage = storage_of(cfg)
    ends = end_offsets(kafka_bootstrap, topic)
    assert sum(ends.values()) == n
    # the commit log: contiguous from 0 to each end offset, its data files are the listing
    log_problems: list[str] = []
    committed_files: list[str] = []
    commits = fences = 0
    for p, end in sorted(ends.items()):
        ms = sorted(markers(storage, topic, p), key=lambda m: m.seq)
        if not ms or [m.seq for m in ms] != list(range(len(ms))):
            log_problems.append(f"partition {p}: log seqs {[m.seq for m in ms][:10]}... not 0..n")
            continue
        if ms[0].start != 0 or ms[-1].end != end:
            log_problems.append(
                f"partition {p}: log covers {ms[0].start}..{ms[-1].end}, not 0..{end}"
            )
        log_problems += [
            f"partition {p}: seq {b.seq} starts at {b.start}, not {a.end}"
            for a, b in itertools.pairwise(ms)
            if b.start != a.end
        ]
        commits += sum(1 for m in ms if m.kind == "commit")
        fences += sum(1 for m in ms if m.kind == "fence")
        committed_files += [f.key for m in ms for f in m.files if f.role == "data"]
    backup_wrong: list[str] = []
    if run.fmt == "backup":  # read through the commit log, as a restore does
        keys = [i.key for i in storage.list(f"topics/{topic}/")]
        backup = _read_backup_files(storage, topic, committed_files)
        rows = backup.rows
        backup_wrong = backup.wrong
        for p, end in sorted(ends.items()):
            offsets = backup.offsets.get(p, [])
            if sorted(offsets) != list(range(end)):
                got_offsets = collections.Counter(offsets)
                backup_wrong.append(
                    f"partition {p}: offsets {len(offsets)} rows, "
                    f"{sum(1 for o in range(end) if o not in got_offsets)} of 0..{end} missing, "
                    f"{sum(c - 1 for c in got_offsets.values() if c > 1)} repeated"
                )
    else:  # list topics.dir, as a reader does
        keys, rows = _read_final_files(storage, "topics", topic)
    produced = [str(i) for i in range(n)]
    exact = check_exactly_once(produced, (r[1] for r in rows))
    got = collections.Counter(r[1] for r in rows)
    duplicates = sum(c - 1 for c in got.values() if c > 1)

    # each record in the hour directory of its created_at (and created_at as produced)
    misplaced: list[str] = []
    for key, rid, created_at in rows:
        m = HOUR_DIR.search(key)
        if m is None or tuple(map(int, m.groups())) != _hour_of(created_at):
            misplaced.append(f"id {rid} ({created_at}) in {key}")
        elif created_at != _iso(_created_at_ms(base, int(rid), n)):
            misplaced.append(f"id {rid}: created_at {created_at} was not produced")
    hours = {m.groups() for m in map(HOUR_DIR.search, keys) if m is not None}

    listed, logged = set(keys), set(committed_files)
    if listed != logged or len(logged) != len(committed_files):
        log_problems.append(
            f"listing and log differ: {len(listed - logged)} listed files not in the log "
            f"{sorted(listed - logged)[:3]}, {len(logged - listed)} logged files "
            f"not listed {sorted(logged - listed)[:3]}, "
            f"{len(committed_files) - len(logged)} files named twice in the log"
        )
    reasons = collections.Counter(
        m.group(1)
        for r in [*proc.records(), *catchup.records()]
        if (m := REASON.search(r.msg)) is not None
    )
    staging = staging_left(storage)
    pending = [u.key for u in storage.list_pending_uploads(f"{ROOT}/staging/")]

    info(
        f"{run.fmt}: records {n} produced over {PARTITIONS} partitions, created_at over "
        f"{len(hours)} hours"
    )
    info(
        f"kills {kills} (each {KILL_AFTER[0]}-{KILL_AFTER[1]}s after start), {no_commit_runs} "
        f"runs killed before their first commit; recovery (start to first commit) p50 "
        f"{percentile(recovery, 50):.2f}s, max {max(recovery, default=float('nan')):.2f}s"
    )
    info(
        f"archived {exact.archived} in {len(keys)} files ({commits} commits, {fences} fence "
        f"markers): duplicates {duplicates}, losses {len(exact.missing)}, unexpected "
        f"{len(exact.unexpected)}, misplaced {len(misplaced)}"
    )
    info("commits by rotation reason: " + ", ".join(f"{k} {v}" for k, v in reasons.most_common()))
    info(f"catch-up: {summary[-1] if summary else '?'}")
    info(
        f"wall time: kill phase {kill_phase:.0f}s, catch-up {catchup_time:.0f}s, total "
        f"{time.monotonic() - started:.0f}s"
    )
    assert exact.ok, str(exact)
    assert not backup_wrong, f"{len(backup_wrong)} backup rows wrong, e.g. {backup_wrong[:3]}"
    assert not misplaced, f"{len(misplaced)} records misplaced, e.g. {misplaced[:3]}"
    assert not log_problems, "\n".join(log_problems)
    assert not staging, f"{len(staging)} staging files left, e.g. {staging[:3]}"
    assert not pending, f"{len(pending)} multipart uploads left: {pending[:3]}"
    assert len(hours) >= 6
    # the wall-clock schedule rolled files (not only flush.size and record time)
    assert reasons["schedule"] > 0, reasons
