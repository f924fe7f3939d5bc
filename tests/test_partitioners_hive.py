"""Hive-style path values: escaping round trips, and readers get the values back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from partitioners import load_partitioner
from partitioners.hive import DEFAULT_PARTITION, escape, escape_column, unescape
from s3sink.config import SinkConfig
from s3sink.records import RecordBatch

text = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)


@given(text)
def test_round_trip_through_hive_unescape(s: str) -> None:
    escaped = escape(s)
    assert unescape(escaped) == (s or None)
    assert "/" not in escaped
    assert "=" not in escaped
    assert all(ord(c) >= 0x20 and c != "\x7f" for c in escaped)  # no ASCII controls


def test_escaping_examples() -> None:
    assert escape("a/b=c%d") == "a%2Fb%3Dc%25d"
    assert escape("café") == "café"  # UTF-8 kept: Hive, Spark, Trino unescape per character
    assert escape("") == DEFAULT_PARTITION
    assert escape(None) == DEFAULT_PARTITION
    assert escape("a\nb") == "a%0Ab"
    assert escape("x:\"#?*[]^{}\\'") == "x%3A%22%23%3F%2A%5B%5D%5E%7B}%5C%27"  # as Hive
    assert unescape("%zz%4") == "%zz%4"


def test_escape_column_renders_types() -> None:
    cases: list[tuple[pa.Array, list[str]]] = [
        (pa.array([1, None, -2]), ["f=1", f"f={DEFAULT_PARTITION}", "f=-2"]),
        (pa.array([True, False]), ["f=true", "f=false"]),
        (pa.array([1.5, 2.0]), ["f=1.5", "f=2"]),
        (pa.array(["a/b", ""]), ["f=a%2Fb", f"f={DEFAULT_PARTITION}"]),
        (pa.array([b"bin"]), ["f=bin"]),
        (pa.array([0], pa.timestamp("ms", "UTC")), ["f=1970-01-01T00%3A00%3A00.000"]),
        (pa.array(["x", "x"]).dictionary_encode(), ["f=x", "f=x"]),
    ]
    for arr, expected in cases:
        out, errors = escape_column(arr, "f=")
        assert out.to_pylist() == expected
        assert not errors
    out, errors = escape_column(pa.array([{"a": 1}]), "f=")
    assert list(errors) == [0]


def cfg(**kw: Any) -> SinkConfig:
    return SinkConfig(bootstrap_servers="127.0.0.1:9", **kw)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=st.lists(st.one_of(st.none(), text), min_size=1, max_size=6))
def test_readers_get_the_values_back(tmp_path_factory: Any, values: list[str | None]) -> None:
    """Field-partitioned files, read back with DuckDB and pyarrow Hive partitioning."""
    root: Path = tmp_path_factory.mktemp("hive")
    p = load_partitioner(cfg(partitioner_class="field", partition_field_name=("k",)))
    n = len(values)
    b = RecordBatch("t", 0, list(range(n)), [0] * n, [1] * n, [None] * n, [b"{}"] * n, [None] * n)
    enc = p.encode(b, pa.table({"k": pa.array(values, pa.string())}), 0)
    assert not enc.errors
    encoded = [enc.partitions] * n if isinstance(enc.partitions, str) else list(enc.partitions)
    for i, e in enumerate(encoded):
        assert e is not None
        d = root / p.path("t", e)
        d.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"i": [i]}), d / f"t+0+{i:010d}.parquet")
    expected = {i: (v or None) for i, v in enumerate(values)}
    rel = duckdb.sql(
        f"select i, k from read_parquet('{root}/t/*/*.parquet', hive_partitioning=true, "
        "hive_types_autocast=false)"
    )
    assert rel is not None
    rows = rel.fetchall()
    assert dict(rows) == expected
    table = ds.dataset(
        root / "t",
        format="parquet",
        partitioning=ds.partitioning(pa.schema([("k", pa.string())]), flavor="hive"),
    ).to_table()
    got = dict(zip(table["i"].to_pylist(), table["k"].to_pylist(), strict=True))
    assert {i: (None if v is None else str(v)) for i, v in got.items()} == expected
