"""Parquet specifics: codecs and names, row groups, dictionary encoding, types, DuckDB."""

from __future__ import annotations

import io
import json
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from formats import load_format
from formats.decoders import load_value_decoder
from formats.parquet import ParquetFormat
from s3sink.config import SinkConfig
from s3sink.records import RecordBatch


def cfg(**kw: Any) -> SinkConfig:
    return SinkConfig(bootstrap_servers="127.0.0.1:9", format_class="parquet", **kw)


def batch(values: list[bytes | None], start: int = 0) -> RecordBatch:
    n = len(values)
    return RecordBatch(
        "t", 0, list(range(start, start + n)), [0] * n, [1] * n, [None] * n, values, [None] * n
    )


def write_tables(config: SinkConfig, tables: list[pa.Table]) -> bytes:
    fmt = load_format(config)
    out = io.BytesIO()
    w = fmt.open(out)
    for t in tables:
        w.write(batch([b"x"] * t.num_rows), t)
    w.close()
    return out.getvalue()


@pytest.mark.parametrize(
    ("codec", "ext", "stored"),
    [
        ("none", ".parquet", "UNCOMPRESSED"),
        ("snappy", ".snappy.parquet", "SNAPPY"),
        ("gzip", ".gz.parquet", "GZIP"),
        ("zstd", ".zstd.parquet", "ZSTD"),
        ("lz4", ".lz4.parquet", "LZ4"),
    ],
)
def test_codecs(codec: str, ext: str, stored: str) -> None:
    config = cfg(parquet_codec=codec)
    assert load_format(config).extension() == ext
    data = write_tables(config, [pa.table({"a": list(range(100))})])
    md = pq.ParquetFile(io.BytesIO(data)).metadata
    assert md.row_group(0).column(0).compression.startswith(stored)
    assert pq.read_table(io.BytesIO(data))["a"].to_pylist() == list(range(100))


def test_row_groups_follow_the_byte_target() -> None:
    config = cfg(parquet_row_group_bytes=8 * 1024)
    t = pa.table({"a": pa.array(range(1000), pa.int64())})  # 8000 bytes each
    data = write_tables(config, [t] * 6)
    f = pq.ParquetFile(io.BytesIO(data))
    assert 3 <= f.metadata.num_row_groups <= 7
    assert f.metadata.num_rows == 6000


def test_one_huge_batch_is_split_into_row_groups() -> None:
    config = cfg(parquet_row_group_bytes=16 * 1024)
    t = pa.table({"a": pa.array(range(20_000), pa.int64())})  # 160 KB
    f = pq.ParquetFile(io.BytesIO(write_tables(config, [t])))
    assert f.metadata.num_row_groups >= 8


@pytest.mark.parametrize("enabled", [True, False])
def test_dictionary_encoding(enabled: bool) -> None:
    config = cfg(parquet_enable_dictionary=enabled)
    t = pa.table({"s": ["a", "b"] * 500})
    md = pq.ParquetFile(io.BytesIO(write_tables(config, [t]))).metadata
    encodings = md.row_group(0).column(0).encodings
    assert any("DICT" in e for e in encodings) is enabled


def test_timestamps_never_nanoseconds() -> None:
    t = pa.table(
        {
            "ns": pa.array([1_500_000], pa.timestamp("ns", "UTC")),
            "us": pa.array([1], pa.timestamp("us")),
            "ms": pa.array([1], pa.timestamp("ms", "UTC")),
            "t": pa.array([1000], pa.time64("ns")),
        }
    )
    f = pq.ParquetFile(io.BytesIO(write_tables(cfg(), [t])))
    schema = f.schema_arrow
    assert schema.field("ns").type == pa.timestamp("us", "UTC")
    assert schema.field("us").type == pa.timestamp("us")
    assert schema.field("ms").type == pa.timestamp("ms", "UTC")
    assert schema.field("t").type == pa.time64("us")
    for i in range(4):
        logical = str(f.schema.column(i).logical_type)
        assert "NANOS" not in logical


def test_null_only_column_is_a_string() -> None:
    t = pa.table({"a": [1, 2], "b": pa.nulls(2)})
    got = pq.read_table(io.BytesIO(write_tables(cfg(), [t])))
    assert got.schema.field("b").type == pa.string()


def test_raw_values_are_one_binary_column() -> None:
    config = cfg()
    fmt = load_format(config)
    out = io.BytesIO()
    w = fmt.open(out)
    w.write(batch([b"\x00\x01", None]), None)
    w.close()
    got = pq.read_table(io.BytesIO(out.getvalue()))
    assert got.schema.field("value").type == pa.binary()
    assert got["value"].to_pylist() == [b"\x00\x01", None]


def test_string_converter_column() -> None:
    config = cfg(value_converter="string")
    d = load_value_decoder(config).decode(batch([b"caf\xc3\xa9", b"x"]))
    out = io.BytesIO()
    w = load_format(config).open(out)
    w.write(batch([b"caf\xc3\xa9", b"x"]), d.parts[0].table)
    w.close()
    assert pq.read_table(io.BytesIO(out.getvalue())).to_pylist() == [
        {"value": "café"},
        {"value": "x"},
    ]


def test_duckdb_reads_nested_json_output(tmp_path: Any) -> None:
    config = cfg(value_converter="json", store_kafka_metadata=True)
    docs = [
        {"id": i, "user": {"name": f"u{i}", "roles": ["a"] * i}, "amount": i * 1.5}
        for i in range(5)
    ]
    b = batch([json.dumps(d).encode() for d in docs])
    part = load_value_decoder(config).decode(b).parts[0]
    out = io.BytesIO()
    w = load_format(config).open(out)
    w.write(b, part.table)
    w.close()
    path = tmp_path / "f.snappy.parquet"
    path.write_bytes(out.getvalue())
    con = duckdb.connect()
    con.execute(f"create view t as select * from read_parquet('{path}')")
    rows = con.execute(
        "select id, user.name, len(user.roles), amount, _kafka.offset from t order by id"
    ).fetchall()
    assert rows == [(i, f"u{i}", i, i * 1.5, i) for i in range(5)]
    types = dict(con.execute("select column_name, column_type from (describe t)").fetchall())
    assert types["id"] == "BIGINT"
    assert types["amount"] == "DOUBLE"
    assert types["user"].startswith("STRUCT(")


def test_schema_of_a_later_batch_is_conformed() -> None:
    """Tables that differ only in what a cast fixes share one file."""
    t1 = pa.table({"a": pa.array([1], pa.int64()), "b": pa.array(["x"])})
    t2 = pa.table({"a": pa.array([2], pa.int64())})
    got = pq.read_table(io.BytesIO(write_tables(cfg(), [t1, t2])))
    assert got.to_pylist() == [{"a": 1, "b": "x"}, {"a": 2, "b": None}]


def test_compression_ratio_estimate_is_shared() -> None:
    fmt = load_format(cfg(parquet_row_group_bytes=1024))
    assert isinstance(fmt, ParquetFormat)
    out = io.BytesIO()
    w = fmt.open(out)
    t = pa.table({"a": ["same"] * 5000})
    w.write(batch([b"x"] * 5000), t)
    w.close()
    assert fmt.ratio < 0.5
