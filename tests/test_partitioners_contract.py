"""The Partitioner contract, run over every registered partitioner (``partitioners.BUILTIN``)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from partitioners import ALIASES, BUILTIN, load_partitioner
from partitioners.base import Encoded, Partitioner
from s3sink.config import SinkConfig
from s3sink.errors import ConfigError
from s3sink.records import RecordBatch

#: The settings each built-in needs to be constructed.
SETTINGS: dict[str, dict[str, Any]] = {
    "default": {},
    "field": {"partition_field_name": ("country", "address.city")},
    "time": {"path_format": "'dt'=YYYY-MM-dd/'hour'=HH", "timestamp_extractor": "Record"},
    "hourly": {"timestamp_extractor": "RecordField", "timestamp_field": "at"},
    "daily": {"timestamp_extractor": "Wallclock", "timezone": "Asia/Kolkata"},
    "field_time": {
        "partition_field_name": ("country",),
        "path_format": "'year'=YYYY/'month'=MM",
        "timestamp_extractor": "RecordField",
        "timestamp_field": "at",
    },
}
ALL = sorted(BUILTIN)
NOW = 1_714_719_600_000  # 2024-05-03T07:00:00Z


def cfg(name: str, **kw: Any) -> SinkConfig:
    return SinkConfig(
        bootstrap_servers="127.0.0.1:9", **({"partitioner_class": name} | SETTINGS[name] | kw)
    )


def batch(n: int) -> RecordBatch:
    return RecordBatch(
        "orders",
        3,
        list(range(n)),
        [NOW + i * 600_000 for i in range(n)],
        [1] * n,
        [None] * n,
        [b"{}"] * n,
        [None] * n,
    )


def values(n: int) -> pa.Table:
    return pa.table(
        {
            "country": pa.array(["FR", "DE", None, "a/b"][i % 4] for i in range(n)),
            "address": pa.array([{"city": f"c{i % 3}"} for i in range(n)]),
            "at": pa.array([f"2024-05-0{1 + i % 3}T10:00:00Z" for i in range(n)]),
        }
    )


def per_record(enc: Encoded, n: int) -> list[str | None]:
    return [enc.partitions] * n if isinstance(enc.partitions, str) else list(enc.partitions)


def test_every_builtin_has_settings() -> None:
    assert set(SETTINGS) == set(BUILTIN)
    assert set(ALIASES.values()) <= set(BUILTIN)


@pytest.mark.parametrize("name", ALL)
def test_contract(name: str) -> None:
    p = load_partitioner(cfg(name))
    assert isinstance(p, Partitioner)
    assert p.name == name
    n = 9
    b, v = batch(n), values(n)
    enc = p.encode(b, v if p.needs_values() else None, NOW)
    assert not enc.errors
    parts = per_record(enc, n)
    assert len(parts) == n
    columns = [c.name for c in p.partition_columns()]
    for e in parts:
        assert e
        path = p.path("orders", e)
        assert path.startswith("orders/")
        assert not path.startswith("/") and not path.endswith("/")
        names = [seg.split("=", 1)[0] for seg in e.split("/") if "=" in seg]
        assert names == columns
    times = p.record_times(b, v, NOW)
    assert times is None or len(times) == n
    assert all(c.type in ("int", "string") for c in p.partition_columns())


@pytest.mark.parametrize("name", ALL)
def test_deterministic(name: str) -> None:
    p1, p2 = load_partitioner(cfg(name)), load_partitioner(cfg(name))
    b, v = batch(20), values(20)
    assert p1.encode(b, v, NOW) == p2.encode(b, v, NOW)


@pytest.mark.parametrize("name", ALL)
def test_empty_batch(name: str) -> None:
    p = load_partitioner(cfg(name))
    enc = p.encode(batch(0), values(0), NOW)
    assert per_record(enc, 0) == [] or isinstance(enc.partitions, str)


garbage_columns = st.sampled_from(
    [
        pa.array([None, None, None]),
        pa.array([1, 2, 3]),
        pa.array([1.5, -1e300, float("nan")]),
        pa.array(["", "not a time", "2024-13-45T99:99:99"]),
        pa.array([{"x": 1}, None, {"x": 2}]),
        pa.array([[1], [], None]),
        pa.array([b"\xff", b"", None]),
        pa.array([True, False, None]),
        pa.array([10**18, -(10**18), 0]),
    ]
)


@pytest.mark.parametrize("name", ALL)
@settings(max_examples=30, deadline=None)
@given(country=garbage_columns, at=garbage_columns, drop=st.booleans())
def test_garbage_never_raises(name: str, country: pa.Array, at: pa.Array, drop: bool) -> None:
    p = load_partitioner(cfg(name))
    table = pa.table({"country": country, "at": at})
    if drop:
        table = table.drop_columns(["at"])
    b = batch(3)
    b.timestamps[1] = -1
    enc = p.encode(b, table, NOW)
    parts = per_record(enc, 3)
    for i, e in enumerate(parts):
        assert (e is None) == (i in enc.errors)
    assert all(isinstance(r, str) and r for r in enc.errors.values())
    times = p.record_times(b, table, NOW)
    assert times is None or len(times) == 3


@pytest.mark.parametrize("name", ["field", "field_time"])
def test_fields_need_values(name: str) -> None:
    p = load_partitioner(cfg(name))
    assert p.needs_values()
    enc = p.encode(batch(2), None, NOW)
    assert sorted(enc.errors) == [0, 1]
    assert "value.converter" in enc.errors[0]


def test_field_paths() -> None:
    p = load_partitioner(cfg("field"))
    enc = p.encode(batch(4), values(4), NOW)
    assert per_record(enc, 4) == [
        "country=FR/address.city=c0",
        "country=DE/address.city=c1",
        "country=__HIVE_DEFAULT_PARTITION__/address.city=c2",
        "country=a%2Fb/address.city=c0",
    ]
    same = p.encode(
        batch(2), pa.table({"country": ["X", "X"], "address": [{"city": "y"}] * 2}), NOW
    )
    assert same.partitions == "country=X/address.city=y"


def test_field_missing_goes_to_default_partition() -> None:
    p = load_partitioner(cfg("field"))
    enc = p.encode(batch(1), pa.table({"other": [1]}), NOW)
    assert (
        enc.partitions
        == "country=__HIVE_DEFAULT_PARTITION__/address.city=__HIVE_DEFAULT_PARTITION__"
    )


def test_field_time_paths() -> None:
    p = load_partitioner(cfg("field_time"))
    enc = p.encode(batch(2), values(2), NOW)
    assert per_record(enc, 2) == ["country=FR/year=2024/month=05", "country=DE/year=2024/month=05"]
    assert [(c.name, c.type) for c in p.partition_columns()] == [
        ("country", "string"),
        ("year", "int"),
        ("month", "int"),
    ]


def test_default_partitioner() -> None:
    p = load_partitioner(cfg("default"))
    assert p.encode(batch(3), None, NOW).partitions == "partition=3"
    assert p.path("orders", "partition=3") == "orders/partition=3"


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("io.confluent.connect.storage.partitioner.DefaultPartitioner", "default"),
        ("io.confluent.connect.storage.partitioner.FieldPartitioner", "field"),
        ("io.confluent.connect.storage.partitioner.TimeBasedPartitioner", "time"),
        ("io.confluent.connect.storage.partitioner.HourlyPartitioner", "hourly"),
        ("io.confluent.connect.storage.partitioner.DailyPartitioner", "daily"),
    ],
)
def test_confluent_class_names(alias: str, name: str) -> None:
    assert load_partitioner(cfg(name, partitioner_class=alias)).name == name
    assert ALIASES[alias] == name


def test_required_settings() -> None:
    with pytest.raises(ConfigError, match=r"partition\.field\.name"):
        load_partitioner(SinkConfig(bootstrap_servers="x", partitioner_class="field"))
    with pytest.raises(ConfigError, match=r"path\.format"):
        load_partitioner(SinkConfig(bootstrap_servers="x", partitioner_class="time"))
