"""The ``backup`` format: every field of a Kafka record, losslessly, in plain Avro files."""

from __future__ import annotations

import io
import json
from typing import Any

import fastavro
import pytest

from formats import load_format
from formats.backup import SCHEMA, BackupFormat, is_backup_schema
from formats.base import Format, RecordWriter
from s3sink.clock import ManualClock
from s3sink.commitlog import PartitionLog
from s3sink.committer import Committer
from s3sink.config import SinkConfig, parse
from s3sink.context import build_context
from s3sink.errors import ConfigError
from s3sink.metrics import Metrics
from s3sink.records import RecordBatch
from s3sink.rotation import RotationReason
from s3sink.storage.memory import MemoryStorage
from s3sink.writer import PartitionWriter
from tests.rig.archive import markers


def cfg(**kw: Any) -> SinkConfig:
    return SinkConfig(bootstrap_servers="127.0.0.1:9", format_class="backup", **kw)


def batch(start: int = 0, topic: str = "orders", partition: int = 4) -> RecordBatch:
    return RecordBatch(
        topic,
        partition,
        offsets=[start, start + 1, start + 2, start + 5],
        timestamps=[1_700_000_000_000, -1, 0, 1_700_000_000_999],
        timestamp_types=[1, 0, 1, 2],
        keys=[b"k", None, b"", bytes(range(256))],
        values=[b"\x00\xffbinary", None, b"", b'{"json": true}\n'],
        headers=[
            [("a", b"1"), ("a", None), ("b", b"")],
            None,
            [],
            [("\u00e9t\u00e9", b"\x00")],
        ],
    )


def write(config: SinkConfig, batches: list[RecordBatch]) -> tuple[bytes, Any]:
    fmt = load_format(config)
    out = io.BytesIO()
    w = fmt.open(out)
    assert isinstance(w, RecordWriter)
    for b in batches:
        w.write(b, None)
    stats = w.close()
    assert stats.bytes == len(out.getvalue())
    return out.getvalue(), stats


def read(data: bytes) -> tuple[list[dict[str, Any]], Any]:
    reader: Any = fastavro.reader(io.BytesIO(data))
    return list(reader), reader


def test_is_a_format_and_needs_no_decoding() -> None:
    fmt = load_format(cfg())
    assert isinstance(fmt, BackupFormat)
    assert isinstance(fmt, Format)
    assert fmt.extension() == ".avro"
    assert fmt.needs_values() is False


def test_every_field_round_trips() -> None:
    b = batch()
    data, stats = write(cfg(), [b])
    rows, reader = read(data)
    assert stats.records == 4
    assert reader.metadata["s3sink.format"] == "backup"
    assert reader.metadata["s3sink.backup.version"] == "1"
    assert is_backup_schema(reader.writer_schema)
    assert [r["topic"] for r in rows] == ["orders"] * 4
    assert [r["partition"] for r in rows] == [4] * 4
    assert [r["offset"] for r in rows] == b.offsets
    assert [r["timestamp"] for r in rows] == b.timestamps
    assert [r["timestamp_type"] for r in rows] == [
        "CreateTime",
        "NoTimestampType",
        "CreateTime",
        "LogAppendTime",
    ]
    assert [r["key"] for r in rows] == b.keys  # null and empty keys stay apart
    assert [r["value"] for r in rows] == b.values  # a tombstone stays a tombstone
    assert [[(h["name"], h["value"]) for h in r["headers"]] for r in rows] == [
        h or [] for h in b.headers
    ]


@pytest.mark.parametrize("codec", ["null", "deflate", "snappy", "zstd", "bzip2", "xz"])
def test_codecs(codec: str) -> None:
    data, _ = write(cfg(avro_codec=codec), [batch(), batch(10)])
    rows, reader = read(data)
    assert reader.metadata["avro.codec"] == {"zstd": "zstandard"}.get(codec, codec)
    assert [r["offset"] for r in rows] == [0, 1, 2, 5, 10, 11, 12, 15]


def test_missing_codec_package_fails_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    import formats.backup as backup

    monkeypatch.setitem(backup.CODECS, "snappy", ("no-such-codec", "cramjam"))
    with pytest.raises(ConfigError, match=r"avro.codec: snappy needs the cramjam package"):
        BackupFormat(cfg(avro_codec="snappy"))


def test_same_records_same_bytes() -> None:
    a, _ = write(cfg(avro_codec="deflate"), [batch()])
    b, _ = write(cfg(avro_codec="deflate"), [batch()])
    c, _ = write(cfg(avro_codec="deflate"), [batch(1)])
    assert a == b
    assert a != c


def test_empty_file_is_valid_avro() -> None:
    data, stats = write(cfg(), [])
    rows, reader = read(data)
    assert rows == [] and stats.records == 0
    assert reader.metadata["s3sink.format"] == "backup"


def test_blocks_reach_the_stream_while_writing() -> None:
    fmt = load_format(cfg())
    out = io.BytesIO()
    w = fmt.open(out)
    big = b"x" * 1000
    last = 0
    for k in range(20):
        n = 100
        w.write(
            RecordBatch(
                "t", 0, list(range(k * n, k * n + n)), [1] * n, [1] * n, [None] * n,
                [big] * n, [None] * n,
            ),
            None,
        )  # fmt: skip
        assert w.buffered_bytes() < 300 * 1024
        assert w.bytes_written() >= last
        last = w.bytes_written()
    assert len(out.getvalue()) > 1_000_000  # handed on before close
    assert w.close().bytes == len(out.getvalue())


def test_schema_is_the_documented_one() -> None:
    names = [f["name"] for f in SCHEMA["fields"]]
    assert names == [
        "topic",
        "partition",
        "offset",
        "timestamp",
        "timestamp_type",
        "key",
        "value",
        "headers",
    ]


# -- tombstones through the writer ------------------------------------------------------------


def _commit_through_writer(**keys: str) -> list[dict[str, Any]]:
    raw = {
        "topics": "t",
        "bootstrap.servers": "127.0.0.1:1",
        "storage.url": "memory://",
        "http.listen": "none",
        "format.class": "backup",
        **keys,
    }
    config = parse(raw, environ={})
    storage = MemoryStorage()
    clock = ManualClock(1_700_000_000_000)
    metrics = Metrics()
    committer = Committer(2, clock, metrics, lambda w, m: None)
    ctx = build_context(config, storage, clock, metrics, committer)
    plog = PartitionLog(storage, "t", 0, "test", "attempt-1", clock)
    writer = PartitionWriter(ctx, "t", 0, plog, plog.takeover(None, lambda: 0).fence.end)
    values: list[bytes | None] = [b"a", None, b"c"]
    writer.append(
        RecordBatch("t", 0, [0, 1, 2], [1, 2, 3], [1, 1, 1], [b"k"] * 3, values, [None] * 3)
    )
    writer.seal(RotationReason.SHUTDOWN)
    assert committer.wait_idle(None, 30)
    assert writer.failure is None, writer.failure
    rows: list[dict[str, Any]] = []
    for m in markers(storage, "t", 0):
        for f in m.files:
            data, _ = storage.get(f.key)
            rows.extend(read(data)[0])
    return rows


def test_tombstones_kept_without_behavior_on_null_values() -> None:
    """The default (fail) would reject a tombstone; a backup keeps it (accepts_nulls)."""
    rows = _commit_through_writer()
    assert [(r["offset"], r["value"]) for r in rows] == [(0, b"a"), (1, None), (2, b"c")]
    rows = _commit_through_writer(**{"behavior.on.null.values": "write"})
    assert [r["value"] for r in rows] == [b"a", None, b"c"]


def test_tombstones_dropped_when_asked() -> None:
    rows = _commit_through_writer(**{"behavior.on.null.values": "ignore"})
    assert [(r["offset"], r["value"]) for r in rows] == [(0, b"a"), (2, b"c")]


def test_json_values_stay_bytes() -> None:
    """Nothing is decoded: a JSON value is stored as its bytes."""
    doc = json.dumps({"a": [1, 2]}).encode()
    b = batch()
    b.values[0] = doc
    rows, _ = read(write(cfg(value_converter="json"), [b])[0])
    assert rows[0]["value"] == doc
