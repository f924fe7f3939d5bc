"""PartitionWriter + Committer against in-memory storage and a manual clock (no Kafka)."""

from __future__ import annotations

import json

import pytest

from s3sink.clock import ManualClock
from s3sink.commitlog import Marker, PartitionLog
from s3sink.committer import Committer
from s3sink.config import parse
from s3sink.context import build_context
from s3sink.errors import BadRecordFatal
from s3sink.metrics import Metrics
from s3sink.records import RecordBatch
from s3sink.rotation import RotationReason
from s3sink.storage.memory import MemoryStorage
from s3sink.writer import PartitionWriter
from tests.rig.archive import markers

TOPIC = "events"


class Rig:
    def __init__(self, **keys: str) -> None:
        raw = {
            "topics": TOPIC,
            "bootstrap.servers": "127.0.0.1:1",
            "storage.url": "memory://",
            "http.listen": "none",
            "format.class": "json",
        }
        raw.update(keys)
        self.config = parse(raw, environ={})
        self.storage = MemoryStorage()
        self.clock = ManualClock(1_700_000_000_000)
        self.metrics = Metrics()
        self.committed: list[Marker] = []
        self.committer = Committer(
            2, self.clock, self.metrics, lambda w, m: self.committed.append(m)
        )
        self.ctx = build_context(
            self.config, self.storage, self.clock, self.metrics, self.committer
        )
        plog = PartitionLog(self.storage, TOPIC, 0, "test", "attempt-1", self.clock)
        fence = plog.takeover(None, lambda: 0).fence
        self.writer = PartitionWriter(self.ctx, TOPIC, 0, plog, fence.end)

    def batch(
        self,
        start: int,
        n: int,
        ts: int | None = None,
        step: int = 0,
        values: list[bytes | None] | None = None,
    ) -> RecordBatch:
        base = self.clock.now_ms() if ts is None else ts
        vals: list[bytes | None] = [json.dumps({"id": start + i}).encode() for i in range(n)]
        if values is not None:
            vals = values
        return RecordBatch(
            TOPIC,
            0,
            offsets=list(range(start, start + n)),
            timestamps=[base + i * step for i in range(n)],
            timestamp_types=[1] * n,
            keys=[None] * n,
            values=vals,
            headers=[None] * n,
        )

    def finish(self) -> list[Marker]:
        self.writer.seal(RotationReason.SHUTDOWN)
        assert self.committer.wait_idle(None, 30)
        assert self.writer.failure is None, self.writer.failure
        return [m for m in markers(self.storage, TOPIC, 0) if m.kind == "commit"]


def test_flush_size_gives_exact_files_even_across_batches() -> None:
    rig = Rig(**{"flush.size": "300"})
    rig.writer.append(rig.batch(0, 1000))
    rig.writer.append(rig.batch(1000, 250))
    commits = rig.finish()
    sizes = [f.records for m in commits for f in m.files]
    assert sizes == [300, 300, 300, 300, 50]
    # contiguous offsets, marker after marker
    assert [(m.start, m.end) for m in commits] == [
        (0, 300),
        (300, 600),
        (600, 900),
        (900, 1200),
        (1200, 1250),
    ]
    assert rig.metrics.total("rotations_total", reason="flush_size") == 4


def test_rotate_interval_on_record_time() -> None:
    rig = Rig(**{"flush.size": "100000", "rotate.interval.ms": "1000"})
    # 30 records 100 ms apart: a new file every 10 records
    rig.writer.append(rig.batch(0, 30, ts=10_000, step=100))
    commits = rig.finish()
    assert [f.records for m in commits for f in m.files] == [10, 10, 10]
    assert next((f.min_timestamp, f.max_timestamp) for m in commits for f in m.files) == (
        10_000,
        10_900,
    )


def test_schedule_rolls_an_idle_writer() -> None:
    rig = Rig(**{"flush.size": "100000", "rotate.schedule.interval.ms": "60000"})
    rig.writer.append(rig.batch(0, 5))
    rig.writer.maybe_rotate(rig.clock.now_ms())
    assert rig.writer.files  # not yet
    rig.clock.advance(60_000)
    rig.writer.maybe_rotate(rig.clock.now_ms())
    assert not rig.writer.files
    assert rig.committer.wait_idle(None, 30)
    assert rig.metrics.total("rotations_total", reason="schedule") == 1


def test_stale_records_below_position_are_skipped() -> None:
    rig = Rig()
    rig.writer.append(rig.batch(0, 10))
    rig.writer.append(rig.batch(5, 10))  # 5..9 again (a stale prefetch), then 10..14
    commits = rig.finish()
    assert sum(m.records for m in commits) == 15


def test_tombstones_follow_behavior_on_null_values() -> None:
    vals: list[bytes | None] = [b'{"id":0}', None, b'{"id":2}']
    ignore = Rig(**{"behavior.on.null.values": "ignore"})
    ignore.writer.append(ignore.batch(0, 3, values=vals))
    (m,) = ignore.finish()
    assert m.records == 2 and (m.start, m.end) == (0, 3)

    write = Rig(**{"behavior.on.null.values": "write"})
    write.writer.append(write.batch(0, 3, values=vals))
    (m,) = write.finish()
    data, _ = write.storage.get(m.files[0].key)
    assert data.split(b"\n")[1] == b"null"

    fail = Rig(**{"behavior.on.null.values": "fail"})
    with pytest.raises(BadRecordFatal, match=r"events-0 offset 1"):
        fail.writer.append(fail.batch(0, 3, values=vals))


def test_bad_records_go_to_the_error_prefix_in_the_same_commit() -> None:
    rig = Rig(**{"value.converter": "json", "format.class": "parquet", "errors.tolerance": "all"})
    vals: list[bytes | None] = [b'{"id":0}', b"{not json", b'{"id":2}']
    rig.writer.append(rig.batch(0, 3, values=vals))
    (m,) = rig.finish()
    errors = [f for f in m.files if f.key.startswith("_s3sink/errors/")]
    data = [f for f in m.files if f.key.startswith("topics/")]
    assert [f.records for f in errors] == [1]
    assert sum(f.records for f in data) == 2
    line = json.loads(rig.storage.get(errors[0].key)[0])
    assert line["offset"] == 1 and line["topic"] == TOPIC and line["reason"]
    assert rig.metrics.total("dead_lettered_records_total") == 1


def test_bad_records_between_good_ones_stay_inside_their_commit() -> None:
    rig = Rig(
        **{
            "value.converter": "json",
            "format.class": "parquet",
            "errors.tolerance": "all",
            "flush.size": "1",
        }
    )
    vals: list[bytes | None] = [b'{"id":0}', b'{"id":1}', b"{bad", b'{"id":3}', b"{bad"]
    rig.writer.append(rig.batch(0, 5, values=vals))
    commits = rig.finish()
    for m in commits:
        for f in m.files:
            assert m.start <= f.first_offset <= f.last_offset < m.end, (m, f)
    assert [(m.start, m.end) for m in commits] == [(0, 1), (1, 2), (2, 4), (4, 5)]
    assert sum(f.records for m in commits for f in m.files) == 5


def test_memory_seal_and_accounting() -> None:
    rig = Rig(**{"flush.size": "100000"})
    rig.writer.append(rig.batch(0, 100))
    assert rig.writer.memory() > 0  # the in-memory upload holds the bytes
    rig.writer.seal(RotationReason.MEMORY)
    assert rig.writer.memory() == 0
    assert rig.committer.wait_idle(None, 30)
    assert rig.committer.memory() == 0
    assert rig.committed and rig.committed[0].records == 100


def test_keys_and_headers_files_sit_next_to_each_data_file() -> None:
    rig = Rig(**{"store.kafka.keys": "true", "store.kafka.headers": "true", "flush.size": "4"})
    b = rig.batch(0, 6)
    b.keys = [f"k{i}".encode() for i in range(6)]
    b.headers = [[("h", f"v{i}".encode())] for i in range(6)]
    rig.writer.append(b)
    commits = rig.finish()
    for m in commits:
        names = sorted(f.key.rsplit("/", 1)[1] for f in m.files)
        start = f"{m.start:010d}"
        assert names == [
            f"{TOPIC}+0+{start}.headers.json",
            f"{TOPIC}+0+{start}.json",
            f"{TOPIC}+0+{start}.keys.json",
        ]
        assert len({f.records for f in m.files}) == 1
        dirs = sorted(f.key.rsplit("/", 1)[0] for f in m.files)
        assert dirs == [
            f"topics/_headers/{TOPIC}/partition=0",
            f"topics/_keys/{TOPIC}/partition=0",
            f"topics/{TOPIC}/partition=0",
        ]
    keys_file = next(f for f in commits[0].files if ".keys." in f.key)
    lines = rig.storage.get(keys_file.key)[0].splitlines()
    assert len(lines) == 4


def test_json_files_do_not_roll_when_the_inferred_schema_widens() -> None:
    rig = Rig(**{"value.converter": "json", "format.class": "json"})
    vals: list[bytes | None] = [b'{"a":1}', b'{"a":2,"b":"x"}', b'{"a":3,"c":[1]}']
    for i, v in enumerate(vals):
        rig.writer.append(rig.batch(i, 1, values=[v]))
    (m,) = rig.finish()
    assert m.records == 3
    assert rig.metrics.total("rotations_total", reason="schema_change") == 0
