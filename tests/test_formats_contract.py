"""The Format contract, run over every registered format (``formats.BUILTIN``).

Each format writes batches through ``open()`` into an in-memory stream; the bytes are read back
as users read them (pyarrow and DuckDB for Parquet, fastavro for Avro, JSON lines, split bytes)
and compared record by record, types included.
"""

from __future__ import annotations

import gzip
import io
import json
from typing import Any

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from formats import ALIASES, BUILTIN, load_format
from formats.base import FileStats, Format, OutputStream, RecordWriter
from formats.decoders import load_value_decoder
from s3sink.config import SinkConfig
from s3sink.records import RecordBatch

ALL = sorted(BUILTIN)


class Stream:
    """An OutputStream that records every write."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes | memoryview) -> None:
        self.chunks.append(bytes(data))

    def getvalue(self) -> bytes:
        return b"".join(self.chunks)


def cfg(**kw: Any) -> SinkConfig:
    return SinkConfig(bootstrap_servers="127.0.0.1:9", **kw)


def batch(values: list[bytes | None], start: int = 0, topic: str = "orders") -> RecordBatch:
    n = len(values)
    return RecordBatch(
        topic,
        2,
        list(range(start, start + n)),
        [1_714_719_600_000 + i for i in range(n)],
        [1] * n,
        [f"k{i}".encode() for i in range(n)],
        values,
        [[("trace", b"t%d" % i)] for i in range(n)],
    )


DOCS = [
    {"id": i, "name": f"n{i}", "tags": ["a", "b"][: i % 3], "geo": {"lat": i / 2}} for i in range(7)
]
VALUES: list[bytes | None] = [json.dumps(d).encode() for d in DOCS]


def write(
    fmt: Format, config: SinkConfig, batches: list[RecordBatch]
) -> tuple[bytes, FileStats, Stream]:
    decoder = load_value_decoder(config)
    out = Stream()
    w = fmt.open(out)
    assert isinstance(w, RecordWriter)
    for b in batches:
        if fmt.needs_values():
            d = decoder.decode(b)
            assert not d.errors
            for part in d.parts:
                w.write(b if part.rows is None else b.take(part.rows), part.table)
        else:
            w.write(b, None)
        assert w.bytes_written() >= 0
        assert w.buffered_bytes() >= 0
    stats = w.close()
    return out.getvalue(), stats, out


def read_back(name: str, data: bytes) -> list[Any]:
    """The records of a file as Python values."""
    if name == "parquet":
        return list(pq.read_table(io.BytesIO(data)).to_pylist())
    if name == "avro":
        out: list[Any] = list(fastavro.reader(io.BytesIO(data)))
        return out
    if name == "json":
        return [json.loads(line) for line in data.decode().splitlines()]
    if name == "bytearray":
        return data.split(b"\n")[:-1]
    if name == "backup":  # the Kafka records; values are the raw JSON bytes
        recs: list[Any] = list(fastavro.reader(io.BytesIO(data)))
        return [None if r["value"] is None else json.loads(r["value"]) for r in recs]
    raise AssertionError(name)


def test_every_format_is_a_format() -> None:
    for name in ALL:
        fmt = load_format(cfg(format_class=name))
        assert isinstance(fmt, Format)
        assert fmt.name == name
        assert fmt.extension().startswith(".")


@pytest.mark.parametrize("name", ALL)
def test_round_trip_json_values(name: str) -> None:
    config = cfg(format_class=name, value_converter="json")
    fmt = load_format(config)
    data, stats, _ = write(fmt, config, [batch(VALUES[:4]), batch(VALUES[4:], 4)])
    assert stats.records == len(VALUES)
    assert stats.bytes == len(data)
    got = read_back(name, data)
    if name == "bytearray":
        assert got == VALUES
        return
    if name == "avro":
        got = [{**r, "geo": r["geo"]} for r in got]
    assert got == DOCS


@pytest.mark.parametrize("name", ALL)
def test_empty_file_is_valid(name: str) -> None:
    config = cfg(format_class=name, value_converter="json")
    fmt = load_format(config)
    data, stats, _ = write(fmt, config, [])
    assert stats.records == 0
    assert read_back(name, data) == []


@pytest.mark.parametrize("name", ALL)
def test_tombstones_written(name: str) -> None:
    config = cfg(format_class=name, value_converter="json", behavior_on_null_values="write")
    fmt = load_format(config)
    values: list[bytes | None] = [VALUES[0], None, VALUES[1]]
    data, stats, _ = write(fmt, config, [batch(values)])
    assert stats.records == 3
    got = read_back(name, data)
    assert len(got) == 3
    if name == "parquet":
        assert got[1] == {"id": None, "name": None, "tags": None, "geo": None}
    elif name in ("avro", "json", "backup"):
        assert got[1] is None
        assert got[0] == DOCS[0]
    else:
        assert got[1] == b""


@pytest.mark.parametrize("name", ["parquet", "avro", "json"])
def test_kafka_metadata(name: str) -> None:
    config = cfg(format_class=name, value_converter="json", store_kafka_metadata=True)
    fmt = load_format(config)
    b = batch(VALUES[:2], start=40)
    b.timestamps[1] = -1
    b.timestamp_types[1] = 0
    b.keys[1] = None
    data, _, _ = write(fmt, config, [b])
    got = read_back(name, data)
    meta = [r["_kafka"] for r in got]
    assert [m["offset"] for m in meta] == [40, 41]
    assert {m["topic"] for m in meta} == {"orders"}
    assert {m["partition"] for m in meta} == {2}
    assert [m["timestamp_type"] for m in meta] == ["CreateTime", "NoTimestampType"]
    assert meta[1]["timestamp"] is None
    assert meta[1]["key"] is None
    if name == "json":
        assert meta[0]["timestamp"] == 1_714_719_600_000
        assert meta[0]["key"] == "azA="  # base64 of k0
        assert meta[0]["headers"] == [{"key": "trace", "value": "dDA="}]
        assert [r["value"] for r in got] == DOCS[:2]
    else:
        assert meta[0]["key"] == b"k0"
        assert meta[0]["headers"] == [{"key": "trace", "value": b"t0"}]
        assert meta[0]["timestamp"].timestamp() == 1_714_719_600
        assert {k: v for k, v in got[0].items() if k != "_kafka"} == DOCS[0]


@pytest.mark.parametrize("name", ALL)
def test_bytes_written_grows_and_matches_at_close(name: str) -> None:
    config = cfg(format_class=name, value_converter="json", parquet_row_group_bytes=1024)
    fmt = load_format(config)
    decoder = load_value_decoder(config)
    out = Stream()
    w = fmt.open(out)
    last = 0
    for k in range(5):
        b = batch(VALUES * 5, start=k * 35)
        d = decoder.decode(b) if fmt.needs_values() else None
        w.write(b, None if d is None else d.parts[0].table)
        now = w.bytes_written()
        assert now >= last
        last = now
    stats = w.close()
    assert stats.bytes == len(out.getvalue())


@pytest.mark.parametrize("name", ALL)
def test_bytes_reach_the_stream_before_close(name: str) -> None:
    """Memory stays bounded: a large file is handed on while it is written."""
    config = cfg(format_class=name, value_converter="json", parquet_row_group_bytes=4096)
    fmt = load_format(config)
    decoder = load_value_decoder(config)
    out = Stream()
    w = fmt.open(out)
    big = [json.dumps({"id": i, "pad": "x" * 200}).encode() for i in range(3000)]
    b = batch(list(big))
    table = decoder.decode(b).parts[0].table if fmt.needs_values() else None
    for start in range(0, 3000, 300):
        sub = b.slice(start, start + 300)
        w.write(sub, None if table is None else table.slice(start, 300))
        assert w.buffered_bytes() < 600_000
    # (parquet encodes row groups in the background: the last one may still be in flight)
    assert sum(len(c) for c in out.chunks) > 80_000
    w.close()


def test_compression_of_line_formats() -> None:
    for name, ext in (("json", ".json.gz"), ("bytearray", ".bin.gz")):
        config = cfg(format_class=name, s3_compression_type="gzip")
        fmt = load_format(config)
        assert fmt.extension() == ext
        data, _, _ = write(fmt, config, [batch(VALUES)])
        assert read_back(name, gzip.decompress(data))[:1] in ([DOCS[0]], [VALUES[0]])


def _sink_type(out: OutputStream) -> None:
    assert isinstance(out, OutputStream)


def test_stream_protocol() -> None:
    _sink_type(Stream())
    _sink_type(io.BytesIO())


def test_decoded_types_survive(tmp_path: Any) -> None:
    """Parquet keeps the decoder's Arrow types exactly (ns timestamps become us)."""
    config = cfg(format_class="parquet", value_converter="json")
    fmt = load_format(config)
    table = pa.table(
        {
            "i8": pa.array([1], pa.int8()),
            "dec": pa.array([1], pa.decimal128(10, 2)),
            "ts_ms": pa.array([1], pa.timestamp("ms", "UTC")),
            "ts_ns": pa.array([1000], pa.timestamp("ns")),
            "d": pa.array([1], pa.date32()),
            "m": pa.array([[("a", 1)]], pa.map_(pa.string(), pa.int32())),
            "l": pa.array([[{"x": 1}]], pa.list_(pa.struct([("x", pa.int64())]))),
        }
    )
    out = Stream()
    w = fmt.open(out)
    w.write(batch([b"{}"]), table)
    w.close()
    got = pq.read_table(io.BytesIO(out.getvalue()))
    expected = table.schema.set(3, pa.field("ts_ns", pa.timestamp("us")))
    assert got.schema.remove_metadata().equals(expected)


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("io.confluent.connect.s3.format.json.JsonFormat", "json"),
        ("io.confluent.connect.s3.format.bytearray.ByteArrayFormat", "bytearray"),
        ("io.confluent.connect.s3.format.parquet.ParquetFormat", "parquet"),
        ("io.confluent.connect.s3.format.avro.AvroFormat", "avro"),
    ],
)
def test_confluent_class_names(alias: str, name: str) -> None:
    assert ALIASES[alias] == name
    fmt = load_format(cfg(format_class=alias, value_converter="json"))
    assert fmt.name == name
    data, stats, _ = write(fmt, cfg(format_class=alias, value_converter="json"), [batch(VALUES)])
    assert stats.records == len(VALUES)
    got = read_back(name, data)
    assert got == (VALUES if name == "bytearray" else DOCS)
