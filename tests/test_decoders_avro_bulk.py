"""The Avro decoder's bulk path (one fastavro block for a batch of one schema id) gives what the
record-by-record path gives, and hands corrupt values to it."""

from __future__ import annotations

import datetime as dt
import decimal
import random
from collections.abc import Iterator
from typing import Any

import pytest

from formats.decoders import load_value_decoder
from formats.decoders.avro import AvroDecoder
from formats.decoders.base import META_LAZY, Decoded, meta
from tests.rig.schema_registry import SchemaRegistryServer
from tests.test_decoders_registry import avro, batch, cfg, decode

SCHEMA = {
    "type": "record",
    "name": "All",
    "namespace": "x",
    "fields": [
        {"name": "b", "type": "boolean"},
        {"name": "i", "type": "int"},
        {"name": "by", "type": "bytes"},
        {"name": "e", "type": {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]}},
        {"name": "fx", "type": {"type": "fixed", "name": "Two", "size": 2}},
        {"name": "arr", "type": {"type": "array", "items": "string"}},
        {"name": "m", "type": {"type": "map", "values": "long"}},
        {"name": "opt", "type": ["null", "string"], "default": None},
        {"name": "u", "type": ["null", "string", "long"], "default": None},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "d", "type": {"type": "int", "logicalType": "date"}},
        {
            "name": "dec",
            "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2},
        },
        {
            "name": "nested",
            "type": {"type": "record", "name": "In", "fields": [{"name": "c", "type": "Color"}]},
        },
        {
            "name": "ru",
            "type": [
                "null",
                {"type": "record", "name": "A", "fields": [{"name": "a", "type": "int"}]},
                {"type": "record", "name": "B", "fields": [{"name": "b", "type": "string"}]},
            ],
            "default": None,
        },
    ],
}


def record(k: int) -> dict[str, Any]:
    return {
        "b": k % 2 == 0, "i": k, "by": bytes([k % 256]), "e": "GREEN" if k % 3 else "RED",
        "fx": b"ab", "arr": ["x"] * (k % 3), "m": {"k": k}, "opt": None if k % 2 else "o",
        "u": k if k % 2 else "s", "ts": dt.datetime(2024, 5, 3, 7, 0, k % 60, tzinfo=dt.UTC),
        "d": dt.date(2024, 5, 3), "dec": decimal.Decimal(f"{k}.25"), "nested": {"c": "RED"},
        "ru": ("x.A", {"a": k}) if k % 2 else ("x.B", {"b": str(k)}),
    }  # fmt: skip


@pytest.fixture
def registry() -> Iterator[SchemaRegistryServer]:
    with SchemaRegistryServer() as server:
        yield server


def record_by_record(dec: Any, values: list[bytes | None]) -> Decoded:
    dec._decode_uniform = lambda _b: None  # force the per-record path
    return decode(dec, batch(values))


def summary(d: Decoded) -> Any:
    return (
        dict(d.errors),
        [
            (
                p.rows,
                p.schema_id,
                None if p.table is None else p.table.to_pylist(),
                None if p.table is None else p.table.schema,
            )
            for p in d.parts
        ],
    )


@pytest.mark.parametrize("fmt", ["parquet", "avro"])
def test_bulk_equals_record_by_record(registry: SchemaRegistryServer, fmt: str) -> None:
    ser = avro(registry, SCHEMA)
    values: list[bytes | None] = [ser(record(k)) for k in range(50)]
    dec = load_value_decoder(cfg(registry, "avro", format_class=fmt))
    assert isinstance(dec, AvroDecoder)
    assert dec._decode_uniform(batch(values)) is not None  # the bulk path is taken
    bulk = decode(dec, batch(values))
    slow = record_by_record(load_value_decoder(cfg(registry, "avro", format_class=fmt)), values)
    assert summary(bulk) == summary(slow)
    if fmt == "avro":
        t = bulk.parts[0].table
        assert t is not None and meta(t, META_LAZY) == b"1"


@pytest.mark.parametrize("where", [0, 7, 9])
@pytest.mark.parametrize("damage", ["truncate", "trailing", "garbage"])
def test_corrupt_values_are_found_one_by_one(
    registry: SchemaRegistryServer, where: int, damage: str
) -> None:
    ser = avro(registry, SCHEMA)
    values: list[bytes | None] = [ser(record(k)) for k in range(10)]
    v = values[where]
    assert v is not None
    values[where] = {
        "truncate": v[:-3],
        "trailing": v + b"\x00",
        "garbage": v[:5] + b"\xff" * 12,
    }[damage]
    for fmt in ("parquet", "avro"):
        d = decode(load_value_decoder(cfg(registry, "avro", format_class=fmt)), batch(values))
        assert list(d.errors) == [where]
        assert sum(len(p.rows or range(10)) for p in d.parts) == 9


def test_top_level_primitive_schema(registry: SchemaRegistryServer) -> None:
    ser = avro(registry, "string")
    values: list[bytes | None] = [ser(f"s{k}") for k in range(5)]
    dec = load_value_decoder(cfg(registry, "avro", format_class="parquet"))
    bulk = decode(dec, batch(values))
    slow = record_by_record(
        load_value_decoder(cfg(registry, "avro", format_class="parquet")), values
    )
    assert summary(bulk) == summary(slow)


def test_a_misalignment_that_resynchronises_is_still_found(registry: SchemaRegistryServer) -> None:
    """A value missing its last bytes can make the next value's header complete it, and the
    byte counts over the whole batch still add up; only record-by-record boundaries show it."""
    user = {
        "type": "record",
        "name": "User",
        "fields": [
            {"name": "name", "type": "string"},
            {"name": "tags", "type": {"type": "array", "items": "string"}},
        ],
    }
    schema = {
        "type": "record",
        "name": "Event",
        "fields": [
            {"name": "id", "type": "long"},
            {"name": "user", "type": user},
            {"name": "others", "type": {"type": "array", "items": "User"}},
            {"name": "maybe", "type": ["null", "User"], "default": None},
        ],
    }
    ser = avro(registry, schema)
    rng = random.Random(3)

    def rec(k: int) -> dict[str, Any]:
        def u() -> dict[str, Any]:
            return {"name": "x" * rng.randint(0, 3), "tags": ["t"] * rng.randint(0, 2)}

        return {"id": k, "user": u(), "others": [u() for _ in range(rng.randint(0, 2))],
                "maybe": None if k % 2 else u()}  # fmt: skip

    clean: list[bytes | None] = [ser(rec(k)) for k in range(100)]
    found = 0
    for k in range(100):
        for cut in (1, 2, 3):
            values = list(clean)
            v = values[k]
            assert v is not None
            values[k] = v[:-cut]
            for fmt in ("parquet", "avro"):
                dec = load_value_decoder(cfg(registry, "avro", format_class=fmt))
                d = decode(dec, batch(values))
                assert k in d.errors, (k, cut, fmt)
                found += 1
    assert found == 600
