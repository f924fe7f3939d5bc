"""PartitionWriter + Committer against in-memory storage and a manual clock (no Kafka)."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator
from typing import Any

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


def _parquet_names(rig: Rig, key: str) -> list[str]:
    import io

    import pyarrow.parquet as pq

    return list(pq.read_schema(io.BytesIO(rig.storage.get(key)[0])).names)


def _parquet_rows(rig: Rig, key: str) -> list[dict[str, object]]:
    import io

    import pyarrow.parquet as pq

    rows: list[dict[str, object]] = pq.read_table(io.BytesIO(rig.storage.get(key)[0])).to_pylist()
    return rows


def test_parquet_widened_schema_starts_a_new_file() -> None:
    rig = Rig(**{"value.converter": "json", "format.class": "parquet"})
    rig.writer.append(rig.batch(0, 3, values=[b'{"a":1}'] * 3))
    rig.writer.append(rig.batch(3, 2, values=[b'{"a":2,"b":"x"}'] * 2))
    rig.writer.append(rig.batch(5, 1, values=[b'{"a":3}']))  # an older shape: no roll back
    commits = rig.finish()
    assert rig.metrics.total("rotations_total", reason="schema_change") == 1
    files = [f for m in commits for f in m.files]
    assert [(m.start, m.end) for m in commits] == [(0, 3), (3, 6)]
    assert [(f.first_offset, f.last_offset, f.records) for f in files] == [(0, 2, 3), (3, 5, 3)]
    first, second = files
    assert _parquet_names(rig, first.key) == ["a"]
    assert _parquet_names(rig, second.key) == ["a", "b"]
    assert first.schema != second.schema
    assert _parquet_rows(rig, first.key) == [{"a": 1}] * 3
    assert _parquet_rows(rig, second.key) == [
        {"a": 2, "b": "x"},
        {"a": 2, "b": "x"},
        {"a": 3, "b": None},
    ]
    assert rig.metrics.total("records_written_total") == 6


# -- interleaved Avro schema versions (schema.compatibility) ----------------------------------

ORDER_V1 = {
    "type": "record",
    "name": "Order",
    "fields": [{"name": "id", "type": "long"}, {"name": "item", "type": "string"}],
}
ORDER_V2 = {
    **ORDER_V1,
    "fields": [*ORDER_V1["fields"], {"name": "qty", "type": "int", "default": 1}],
}


@pytest.fixture(scope="module")
def registry_url() -> Iterator[str]:
    from tests.rig.schema_registry import SchemaRegistryServer

    with SchemaRegistryServer() as server:
        yield server.url


def avro_values(url: str, schema: dict[str, Any], records: list[dict[str, Any]]) -> list[bytes]:
    """Confluent-framed Avro values, made by confluent-kafka's serializer (registers ``schema``
    under ``<topic>-value``)."""
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    ser = AvroSerializer(SchemaRegistryClient({"url": url}), json.dumps(schema))
    ctx = SerializationContext(TOPIC, MessageField.VALUE)
    return [ser(r, ctx) for r in records]


@pytest.fixture(scope="module")
def interleaved_avro(registry_url: str) -> tuple[str, list[bytes | None]]:
    """10 values alternating v1, v2, v1, ... (v2 adds ``qty`` with a default)."""
    v1 = avro_values(registry_url, ORDER_V1, [{"id": i, "item": f"i{i}"} for i in range(0, 10, 2)])
    v2 = avro_values(
        registry_url, ORDER_V2, [{"id": i, "item": f"i{i}", "qty": 7} for i in range(1, 10, 2)]
    )
    values: list[bytes | None] = [v for pair in zip(v1, v2, strict=True) for v in pair]
    return registry_url, values


def _file_columns_and_rows(rig: Rig, key: str) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns (Parquet schema / Avro writer schema) and rows of a committed file."""
    import io

    if key.endswith(".parquet"):
        return _parquet_names(rig, key), _parquet_rows(rig, key)
    import fastavro

    reader = fastavro.reader(io.BytesIO(rig.storage.get(key)[0]))
    schema: Any = reader.writer_schema
    rows: list[dict[str, Any]] = [r for r in reader if isinstance(r, dict)]
    return [f["name"] for f in schema["fields"]], rows


@pytest.mark.parametrize(
    ("mode", "files", "qty"),
    [
        # every change of schema rolls: one file per run of one version
        ("NONE", [1] * 10, [[None], [7]] * 5),
        # the newest schema so far: v1 alone, then v2 with the v1 records projected onto it
        ("BACKWARD", [1, 9], [[None], [7, 1, 7, 1, 7, 1, 7, 1, 7]]),
        ("FULL", [1, 9], [[None], [7, 1, 7, 1, 7, 1, 7, 1, 7]]),
        # the oldest schema: one file, v2 records projected onto v1 (qty dropped)
        ("FORWARD", [10], [[None] * 10]),
    ],
)
@pytest.mark.parametrize(
    ("fmt", "per_record"), [("parquet", False), ("parquet", True), ("avro", False)]
)
def test_interleaved_schema_versions_per_compatibility(
    interleaved_avro: tuple[str, list[bytes | None]],
    mode: str,
    files: list[int],
    qty: list[list[int | None]],
    fmt: str,
    per_record: bool,
) -> None:
    url, values = interleaved_avro
    rig = Rig(
        **{
            "value.converter": "avro",
            "value.converter.schema.registry.url": url,
            "format.class": fmt,
            "schema.compatibility": mode,
        }
    )
    if per_record:  # the same records, one consumer batch each
        for i, v in enumerate(values):
            rig.writer.append(rig.batch(i, 1, values=[v]))
    else:
        rig.writer.append(rig.batch(0, 10, values=values))
    commits = rig.finish()
    data = [f for m in commits for f in m.files]
    assert [f.records for f in data] == files
    assert rig.metrics.total("rotations_total", reason="schema_change") == len(files) - 1
    read = [_file_columns_and_rows(rig, f.key) for f in data]
    rows = [file_rows for _, file_rows in read]
    assert [r["id"] for file_rows in rows for r in file_rows] == list(range(10))
    assert [[r.get("qty") for r in file_rows] for file_rows in rows] == qty
    assert all(r["item"] == f"i{r['id']}" for file_rows in rows for r in file_rows)
    # a file has the qty column exactly when it is written with v2
    for (columns, _), file_qty in zip(read, qty, strict=True):
        has_v2 = any(q is not None for q in file_qty)
        assert columns == (["id", "item", "qty"] if has_v2 else ["id", "item"])


# -- record time from a field (timestamp.extractor=RecordField) ------------------------------

TIME_FIELD = {
    "partitioner.class": "hourly",
    "timestamp.extractor": "RecordField",
    "timestamp.field": "at",
    "value.converter": "json",
    "format.class": "json",
}
TIMED: list[bytes | None] = [
    b'{"id":0,"at":"2024-05-03T07:10:00Z"}',
    b'{"id":1}',  # no time field (null in the inferred schema)
    b'{"id":2,"at":"2024-05-03T08:20:00Z"}',
    b'{"id":3,"at":"the day after tomorrow"}',  # not a time
    b'{"id":4,"at":"2024-05-03T07:30:00Z"}',
]


def test_record_field_time_bad_records_go_to_the_error_prefix_of_the_commit() -> None:
    rig = Rig(**TIME_FIELD, **{"errors.tolerance": "all"})
    rig.writer.append(rig.batch(0, 5, values=TIMED))
    (m,) = rig.finish()
    assert (m.start, m.end) == (0, 5)
    by_key = {f.key: f for f in m.files}
    hour = f"topics/{TOPIC}/year=2024/month=05/day=03/hour="
    assert sorted(by_key) == [
        f"_s3sink/errors/{TOPIC}/0/{TOPIC}+0+0000000001.json",
        f"{hour}07/{TOPIC}+0+0000000000.json",
        f"{hour}08/{TOPIC}+0+0000000002.json",
    ]
    ids = {
        k: [json.loads(x)["id"] for x in rig.storage.get(k)[0].splitlines()]
        for k, f in by_key.items()
        if f.role == "data"
    }
    assert ids[f"{hour}07/{TOPIC}+0+0000000000.json"] == [0, 4]
    assert ids[f"{hour}08/{TOPIC}+0+0000000002.json"] == [2]
    errors = [
        json.loads(x)
        for x in rig.storage.get(f"_s3sink/errors/{TOPIC}/0/{TOPIC}+0+0000000001.json")[
            0
        ].splitlines()
    ]
    assert [(e["offset"], e["topic"], e["partition"]) for e in errors] == [
        (1, TOPIC, 0),
        (3, TOPIC, 0),
    ]
    assert errors[0]["reason"] == "timestamp field 'at' is null"
    assert "cannot parse 'the day after tomorrow' as a time" in errors[1]["reason"]
    assert base64.b64decode(errors[1]["value"]) == TIMED[3]
    assert rig.metrics.total("bad_records_total") == 2
    assert rig.metrics.total("dead_lettered_records_total") == 2
    assert rig.metrics.total("records_written_total") == 3


def test_record_field_time_bad_records_go_to_the_dead_letter_queue() -> None:
    rig = Rig(**TIME_FIELD, **{"errors.tolerance": "all"})
    sent: list[tuple[list[int], list[str]]] = []
    rig.ctx.dead_letter = lambda b, reasons: sent.append((list(b.offsets), list(reasons)))
    rig.writer.append(rig.batch(0, 5, values=TIMED))
    (m,) = rig.finish()
    assert [offsets for offsets, _ in sent] == [[1, 3]]
    assert sent[0][1] == [
        "timestamp field 'at' is null",
        "cannot parse 'the day after tomorrow' as a time",
    ]
    assert not [f for f in m.files if f.role == "errors"]
    assert sum(f.records for f in m.files) == 3 and (m.start, m.end) == (0, 5)
    assert rig.metrics.total("dead_lettered_records_total") == 2


def test_record_field_time_with_errors_tolerance_none_stops_at_the_bad_record() -> None:
    rig = Rig(**TIME_FIELD, **{"flush.size": "2"})
    rig.writer.append(rig.batch(0, 1, values=TIMED[:1]))
    with pytest.raises(BadRecordFatal) as info:
        rig.writer.append(rig.batch(1, 4, values=TIMED[1:]))
    msg = str(info.value)
    assert f"record {TOPIC}-0 offset 1 cannot be written" in msg
    assert "(timestamp field 'at' is null)" in msg
    assert "nothing past it was committed" in msg
    assert (info.value.error.topic, info.value.error.partition, info.value.error.offset) == (
        TOPIC,
        0,
        1,
    )
    assert rig.metrics.total("bad_records_total") == 1
    # on the way out the sink seals what is open (revoke): only what precedes the bad record
    commits = rig.finish()
    assert [(m.start, m.end) for m in commits] == [(0, 1)]
    assert [(f.first_offset, f.last_offset) for m in commits for f in m.files] == [(0, 0)]


def test_errors_tolerance_none_after_a_flush_commits_only_records_before_the_bad_one() -> None:
    rig = Rig(**TIME_FIELD, **{"flush.size": "2"})
    values = [TIMED[0], TIMED[2], TIMED[4], TIMED[3], TIMED[0]]  # offset 3 is bad
    with pytest.raises(BadRecordFatal, match=rf"record {TOPIC}-0 offset 3 cannot be written"):
        rig.writer.append(rig.batch(0, 5, values=values))
    commits = rig.finish()
    assert all(m.end <= 3 for m in commits), commits
    assert max(f.last_offset for m in commits for f in m.files) < 3


def test_errors_tolerance_none_with_several_schemas_in_one_file(registry_url: str) -> None:
    """JSON files hold several schemas (no roll between parts): records of the failing batch
    written before the bad one are committed with offsets that cover them."""
    v1 = {
        "type": "record",
        "name": "Timed",
        "fields": [{"name": "id", "type": "long"}, {"name": "at", "type": "string"}],
    }
    v2 = {**v1, "fields": [*v1["fields"], {"name": "n", "type": "int", "default": 0}]}
    a = avro_values(registry_url, v1, [{"id": 0, "at": "2024-05-03T07:10:00Z"}])
    b = avro_values(registry_url, v2, [{"id": 1, "at": "2024-05-03T07:20:00Z", "n": 1}])
    bad = avro_values(registry_url, v1, [{"id": 2, "at": "soon"}])
    c = avro_values(registry_url, v2, [{"id": 3, "at": "2024-05-03T07:40:00Z", "n": 3}])
    rig = Rig(
        **{
            **TIME_FIELD,
            "value.converter": "avro",
            "value.converter.schema.registry.url": registry_url,
        }
    )
    rig.writer.append(rig.batch(0, 1, values=list(a)))
    with pytest.raises(BadRecordFatal, match=rf"record {TOPIC}-0 offset 3 cannot be written"):
        rig.writer.append(rig.batch(1, 4, values=[*a, *b, *bad, *c]))
    commits = rig.finish()
    for m in commits:
        for f in m.files:
            assert m.start <= f.first_offset <= f.last_offset < m.end, (m, f)
    assert all(m.end <= 3 for m in commits)
    committed = [
        json.loads(line)["id"]
        for m in commits
        for f in m.files
        for line in rig.storage.get(f.key)[0].splitlines()
    ]
    assert committed == [0, 0, 1]
    from s3sink.verify import verify

    report = verify(rig.storage, rig.config)
    assert report.ok, report.problems


# -- file.max.bytes ---------------------------------------------------------------------------


def _padded(n: int, start: int = 0) -> list[bytes | None]:
    return [json.dumps({"id": f"{start + i:05d}", "pad": "x" * 50}).encode() for i in range(n)]


@pytest.mark.parametrize("fmt", ["json", "bytearray"])
@pytest.mark.parametrize("batch_size", [1, 7, 300])
def test_file_max_bytes_rolls_line_files_at_the_record_that_reaches_it(
    fmt: str, batch_size: int
) -> None:
    limit = 2048
    rig = Rig(**{"file.max.bytes": str(limit), "flush.size": "100000", "format.class": fmt})
    values = _padded(300)
    for start in range(0, 300, batch_size):
        chunk = values[start : start + batch_size]
        rig.writer.append(rig.batch(start, len(chunk), values=chunk))
    commits = rig.finish()
    files = [f for m in commits for f in m.files]
    line = len(values[0] or b"") + 1  # every line has the same length
    assert all(len(v or b"") + 1 == line for v in values)
    per_file = -(-limit // line)  # the record that reaches the limit is the file's last
    assert [f.records for f in files] == [per_file] * (300 // per_file) + (
        [300 % per_file] if 300 % per_file else []
    )
    assert all(limit <= f.size < limit + line for f in files[:-1])
    assert rig.metrics.total("rotations_total", reason="file_max_bytes") == len(files) - 1
    # nothing lost or repeated, offsets contiguous from commit to commit
    assert [(m.start, m.end) for m in commits] == [
        (f.first_offset, f.last_offset + 1) for f in files
    ]
    data = b"".join(rig.storage.get(f.key)[0] for f in files)
    assert data == b"".join((v or b"") + b"\n" for v in values)


def test_file_max_bytes_rolls_parquet_files_near_the_limit() -> None:
    limit = 16 * 1024
    rig = Rig(
        **{
            "file.max.bytes": str(limit),
            "flush.size": "100000",
            "format.class": "parquet",
            "value.converter": "json",
        }
    )
    values: list[bytes | None] = [
        json.dumps({"id": i, "pad": f"{i * 7919 % 1000003:x}" * 8}).encode() for i in range(3000)
    ]
    rig.writer.append(rig.batch(0, 3000, values=values))
    commits = rig.finish()
    files = [f for m in commits for f in m.files]
    assert len(files) > 3
    assert rig.metrics.total("rotations_total", reason="file_max_bytes") == len(files) - 1
    for f in files[:-1]:
        assert limit * 0.5 <= f.size <= limit * 1.5, [f.size for f in files]
    ids = [r["id"] for f in files for r in _parquet_rows(rig, f.key)]
    assert ids == list(range(3000))


def _varied(n: int) -> list[bytes | None]:
    """JSON lines that compress about 3-4x (ids, numbers and words that repeat loosely)."""
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    return [
        json.dumps(
            {
                "id": i,
                "user": f"user-{i * 7919 % 100003}",
                "amount": round(i * 1.37 % 997, 2),
                "note": " ".join(words[(i * k) % 8] for k in range(1, 6)),
            }
        ).encode()
        for i in range(n)
    ]


@pytest.mark.parametrize("fmt", ["json", "bytearray"])
@pytest.mark.parametrize("codec", ["gzip", "zstd"])
@pytest.mark.parametrize(
    ("limit", "batch_size", "n"), [(64 * 1024, 5000, 30000), (256 * 1024, 800, 100000)]
)
def test_file_max_bytes_holds_for_compressed_line_files(
    fmt: str, codec: str, limit: int, batch_size: int, n: int
) -> None:
    # a codec holds input back (zstd emitted nothing for hundreds of KiB): it is flushed every
    # eighth of file.max.bytes of input, so a size-rolled file ends within ~10% of the limit
    rig = Rig(
        **{
            "file.max.bytes": str(limit),
            "flush.size": "1000000",
            "format.class": fmt,
            "s3.compression.type": codec,
        }
    )
    values = _varied(n)
    for start in range(0, len(values), batch_size):
        chunk = values[start : start + batch_size]
        rig.writer.append(rig.batch(start, len(chunk), values=chunk))
    commits = rig.finish()
    files = [f for m in commits for f in m.files]
    sized = files[:-1]
    assert len(sized) >= 3, [f.size for f in files]
    assert rig.metrics.total("rotations_total", reason="file_max_bytes") == len(sized)
    for f in sized:
        assert limit <= f.size <= limit * 1.10, (limit, [f.size for f in files])
    data = b"".join(
        (gzip.decompress if codec == "gzip" else _zstd_decompress)(rig.storage.get(f.key)[0])
        for f in files
    )
    assert data == b"".join((v or b"") + b"\n" for v in values)


def _zstd_decompress(data: bytes) -> bytes:
    import pyarrow as pa

    with pa.input_stream(pa.py_buffer(data), compression="zstd") as stream:
        out: bytes = stream.read()
    return out
