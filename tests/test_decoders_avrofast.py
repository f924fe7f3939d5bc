"""The native Avro reader (formats/decoders/avrofast.py) against fastavro: the same verdicts on
valid records, the same Arrow arrays (types and values) as ``avro_to_arrow`` + ``pa.array`` of
fastavro's records, and never a crash or an accepted record fastavro would reject on corrupt,
truncated or random bytes."""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import io
import math
import random
from array import array
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import fastavro
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from formats.decoders import avrofast, load_value_decoder
from formats.decoders.avro import AvroDecoder
from formats.decoders.avro_arrow import avro_to_arrow
from formats.decoders.avrofast import OK, compile_schema, join
from tests.rig.schema_registry import SchemaRegistryServer
from tests.test_decoders_avro_bulk import record_by_record, summary
from tests.test_decoders_registry import avro, batch, cfg, decode

pytestmark = pytest.mark.skipif(not avrofast.AVAILABLE, reason="_avrofast not built")

HEADER = b"\x00\x00\x00\x00\x07"


# -- schemas and records -------------------------------------------------------------------------

_PRIMITIVES = ["null", "boolean", "int", "long", "float", "double", "bytes", "string"]
_LOGICAL = [
    {"type": "int", "logicalType": "date"},
    {"type": "int", "logicalType": "time-millis"},
    {"type": "long", "logicalType": "time-micros"},
    {"type": "long", "logicalType": "timestamp-millis"},
    {"type": "long", "logicalType": "timestamp-micros"},
    {"type": "long", "logicalType": "timestamp-nanos"},
    {"type": "long", "logicalType": "local-timestamp-millis"},
    {"type": "long", "logicalType": "local-timestamp-micros"},
    {"type": "string", "logicalType": "uuid"},
]


class Names:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self, kind: str) -> str:
        self.n += 1
        return f"{kind}{self.n}"


def gen_schema(data: st.DataObject, names: Names, depth: int = 0) -> Any:
    kinds = ["primitive", "logical", "decimal", "enum", "fixed", "union"]
    if depth < 3:
        kinds += ["record", "array", "map"]
    kind = data.draw(st.sampled_from(kinds))
    if kind == "primitive":
        return data.draw(st.sampled_from(_PRIMITIVES))
    if kind == "logical":
        return dict(data.draw(st.sampled_from(_LOGICAL)))
    if kind == "decimal":
        precision = data.draw(st.integers(1, 38))
        scale = data.draw(st.integers(0, precision))
        if data.draw(st.booleans()):
            return {
                "type": "bytes",
                "logicalType": "decimal",
                "precision": precision,
                "scale": scale,
            }
        size = data.draw(st.integers(16, 20)) if precision > 18 else data.draw(st.integers(8, 20))
        return {
            "type": "fixed",
            "name": names("Dec"),
            "size": size,
            "logicalType": "decimal",
            "precision": precision,
            "scale": scale,
        }
    if kind == "enum":
        k = data.draw(st.integers(1, 4))
        return {"type": "enum", "name": names("E"), "symbols": [f"S{i}" for i in range(k)]}
    if kind == "fixed":
        return {"type": "fixed", "name": names("F"), "size": data.draw(st.integers(0, 5))}
    if kind == "union":
        inner = gen_schema(data, names, depth + 1)
        if inner == "null" or isinstance(inner, list):
            return ["null"]
        return data.draw(st.sampled_from([["null", inner], [inner, "null"], [inner]]))
    if kind == "record":
        k = data.draw(st.integers(0, 4))
        return {
            "type": "record",
            "name": names("R"),
            "fields": [
                {"name": f"f{i}", "type": gen_schema(data, names, depth + 1)} for i in range(k)
            ],
        }
    if kind == "array":
        return {"type": "array", "items": gen_schema(data, names, depth + 1)}
    return {"type": "map", "values": gen_schema(data, names, depth + 1)}


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def gen_value(data: st.DataObject, s: Any) -> Any:
    if isinstance(s, list):
        branch = data.draw(st.sampled_from(s))
        return None if branch == "null" else gen_value(data, branch)
    if isinstance(s, str):
        strategies: dict[str, st.SearchStrategy[Any]] = {
            "null": st.none(),
            "boolean": st.booleans(),
            "int": st.integers(-(2**31), 2**31 - 1),
            "long": st.integers(-(2**63), 2**63 - 1),
            "float": st.floats(width=32, allow_nan=False),
            "double": st.floats(allow_nan=False),
            "bytes": st.binary(max_size=12),
            "string": st.text(max_size=8),
        }
        return data.draw(strategies[s])
    t, logical = s["type"], s.get("logicalType")
    if logical == "decimal":
        p, scale = s["precision"], s.get("scale", 0)
        unscaled = data.draw(st.integers(-(10**p) + 1, 10**p - 1))
        return decimal.Decimal(unscaled).scaleb(-scale, decimal.Context(prec=80))
    if logical == "date":
        return data.draw(st.dates(dt.date(2, 1, 2), dt.date(9998, 12, 30)))
    if logical == "time-millis":
        tm = data.draw(st.times())
        return tm.replace(microsecond=tm.microsecond // 1000 * 1000)
    if logical == "time-micros":
        return data.draw(st.times())
    if logical in ("timestamp-millis", "timestamp-micros", "local-timestamp-millis",
                   "local-timestamp-micros"):  # fmt: skip
        ts = data.draw(st.datetimes(dt.datetime(2, 1, 2), dt.datetime(9998, 12, 30)))
        if logical.endswith("millis"):
            ts = ts.replace(microsecond=ts.microsecond // 1000 * 1000)
        return ts if logical.startswith("local") else ts.replace(tzinfo=dt.UTC)
    if logical == "timestamp-nanos":
        return data.draw(st.integers(-(2**63), 2**63 - 1))
    if logical == "uuid":
        return data.draw(st.uuids())
    if t == "enum":
        return data.draw(st.sampled_from(s["symbols"]))
    if t == "fixed":
        return data.draw(st.binary(min_size=s["size"], max_size=s["size"]))
    if t == "record":
        return {f["name"]: gen_value(data, f["type"]) for f in s["fields"]}
    if t == "array":
        return [gen_value(data, s["items"]) for _ in range(data.draw(st.integers(0, 3)))]
    if t == "map":
        keys = data.draw(st.lists(st.text(max_size=4), max_size=3, unique=True))
        return {k: gen_value(data, s["values"]) for k in keys}
    return gen_value(data, t)


def encode(parsed: Any, records: list[Any]) -> list[bytes]:
    out = []
    for r in records:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, r)
        out.append(buf.getvalue())
    return out


class TrailingBytesError(Exception):
    pass


def fastavro_read(parsed: Any, body: bytes) -> Any:
    """fastavro's record, as the decoder reads it; raises on a bad record (and on bytes left
    over)."""
    bio = io.BytesIO(body)
    rec = fastavro.schemaless_reader(
        bio, parsed, None, return_record_name=True, return_record_name_override=True
    )
    if bio.tell() != len(body):
        raise TrailingBytesError(len(body) - bio.tell())
    return rec


def fastavro_array(parsed: Any, bodies: list[bytes]) -> pa.Array:
    """What the decoder builds today: ``avro_to_arrow`` + converter + ``pa.array``."""
    typ, conv = avro_to_arrow(parsed)
    recs = [fastavro_read(parsed, b) for b in bodies]
    return pa.array([None if r is None or conv is None else conv(r) for r in recs]
                    if conv is not None else recs, typ)  # fmt: skip


def same(a: pa.Array, b: pa.Array) -> bool:
    """Same type and values (a NaN equals a NaN: corrupt float bytes may be NaNs, and their
    payload bits need not survive fastavro's float -> double -> float)."""
    if a.type != b.type:
        return False
    if a.equals(b):
        return True
    try:
        return _same_values(a.to_pylist(), b.to_pylist())
    except ValueError:  # nanosecond timestamps have no Python value
        return False


def _same_values(x: Any, y: Any) -> bool:
    if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
        return True
    if isinstance(x, list | tuple) and isinstance(y, list | tuple):
        return len(x) == len(y) and all(_same_values(p, q) for p, q in zip(x, y, strict=True))
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(_same_values(x[k], y[k]) for k in x)
    return bool(x == y)


# -- properties ----------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_decodes_like_fastavro(data: st.DataObject) -> None:
    schema = gen_schema(data, Names())
    parsed = fastavro.parse_schema(schema)
    native = compile_schema(parsed)
    assert native is not None, schema  # every generated schema is covered
    records = [gen_value(data, schema) for _ in range(data.draw(st.integers(0, 6)))]
    bodies = encode(parsed, records)
    for header in (b"", HEADER):
        buf, offsets = join([header + b for b in bodies])
        assert native.validate(buf, offsets, len(header)) == bytes(len(bodies))
        arr = native.decode(buf, offsets, len(header))
        assert arr is not None, (schema, records, bodies)
        arr.validate(full=True)
        assert same(arr, fastavro_array(parsed, bodies))
        values = [header + b for b in bodies]
        assert native.validate_values(values, len(header)) == bytes(len(bodies))
        from_list = native.decode_values(values, len(header))
        assert from_list is not None and same(from_list, arr)


def corrupt(rng: random.Random, v: bytes) -> bytes:
    kind = rng.randrange(6)
    if kind == 0 and v:
        return v[: rng.randrange(len(v))]
    if kind == 1:
        return v + bytes(rng.randrange(256) for _ in range(rng.randint(1, 3)))
    if kind == 2 and v:
        b = bytearray(v)
        for _ in range(rng.randint(1, 3)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    if kind == 3 and v:
        i = rng.randrange(len(v))
        return v[:i] + b"\xff" * rng.randint(1, 12) + v[i:]
    if kind == 4:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
    return v


def check_against_fastavro(parsed: Any, bodies: list[bytes]) -> None:
    """Verdicts and arrays on any bytes: what the native path accepts, fastavro reads the same
    (the native path may reject more: those batches go to fastavro)."""
    native = compile_schema(parsed)
    assert native is not None
    buf, offsets = join(bodies)
    status = native.validate(buf, offsets)
    assert len(status) == len(bodies)
    for body, verdict in zip(bodies, status, strict=True):
        if verdict == OK:
            # fastavro accepts it too (reading it whole; skipping would accept more)
            # (values fastavro cannot convert: decode() rejects them, below)
            with contextlib.suppress(ValueError, OverflowError, UnicodeDecodeError):
                fastavro_read(parsed, body)
    arr = native.decode(buf, offsets)
    assert native.validate_values(bodies) == status
    from_list = native.decode_values(bodies)
    assert (arr is None) == (from_list is None)
    if arr is not None:
        assert from_list is not None and same(arr, from_list)
        assert bytes(status) == bytes(len(bodies))
        arr.validate(full=True)
        assert same(arr, fastavro_array(parsed, bodies))
    # one by one: the same verdicts as in the batch
    for body, verdict in zip(bodies, status, strict=True):
        b, o = join([body])
        assert native.validate(b, o)[0] == verdict
        one = native.decode(b, o)
        if one is not None:
            assert same(one, fastavro_array(parsed, [body]))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.randoms(use_true_random=False))
def test_corrupt_bytes_never_crash_and_never_pass_what_fastavro_rejects(
    data: st.DataObject, rng: random.Random
) -> None:
    schema = gen_schema(data, Names())
    parsed = fastavro.parse_schema(schema)
    records = [gen_value(data, schema) for _ in range(data.draw(st.integers(1, 5)))]
    bodies = [corrupt(rng, b) for b in encode(parsed, records)]
    check_against_fastavro(parsed, bodies)


RICH = {
    "type": "record",
    "name": "Rich",
    "fields": [
        {"name": "b", "type": "boolean"},
        {"name": "i", "type": "int"},
        {"name": "l", "type": "long"},
        {"name": "f", "type": "float"},
        {"name": "d", "type": "double"},
        {"name": "by", "type": "bytes"},
        {"name": "s", "type": ["null", "string"]},
        {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B", "C"]}},
        {"name": "fx", "type": {"type": "fixed", "name": "F", "size": 3}},
        {"name": "arr", "type": {"type": "array", "items": ["null", "long"]}},
        {"name": "m", "type": {"type": "map", "values": {"type": "array", "items": "string"}}},
        {
            "name": "r",
            "type": [
                "null",
                {"type": "record", "name": "In", "fields": [{"name": "x", "type": "E"}]},
            ],
        },
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "dt", "type": {"type": "int", "logicalType": "date"}},
        {
            "name": "dec",
            "type": {"type": "bytes", "logicalType": "decimal", "precision": 20, "scale": 4},
        },
        {"name": "u", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "nulls", "type": {"type": "array", "items": "null"}},
    ],
}


def rich_record(k: int) -> dict[str, Any]:
    return {
        "b": k % 2 == 0, "i": k, "l": -k * 10**12, "f": k / 4, "d": k / 3, "by": bytes([k % 256]),
        "s": None if k % 3 == 0 else "é" * (k % 4), "e": "ABC"[k % 3], "fx": b"xyz",
        "arr": [k, None, -k], "m": {"a": ["x"] * (k % 3), "b": []},
        "r": None if k % 2 else {"x": "C"}, "ts": _EPOCH + dt.timedelta(microseconds=k * 999),
        "dt": dt.date(2024, 1, 1) + dt.timedelta(days=k),
        "dec": decimal.Decimal(k * 12345).scaleb(-4), "u": f"{k:08x}-0000-4000-8000-000000000000",
        "nulls": [None] * (k % 4),
    }  # fmt: skip


def test_random_bytes_never_crash() -> None:
    """A few thousand random and mutated inputs (run once under ASan when changing the C)."""
    parsed = fastavro.parse_schema(RICH)
    good = encode(parsed, [rich_record(k) for k in range(50)])
    rng = random.Random(6)
    for _ in range(60):
        bodies = [corrupt(rng, rng.choice(good)) for _ in range(50)]
        check_against_fastavro(parsed, bodies)
    native = compile_schema(parsed)
    assert native is not None
    for _ in range(3000):
        blob = bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
        buf, offsets = join([blob])
        native.validate(buf, offsets)
        native.decode(buf, offsets)


def test_rich_schema_decodes_like_fastavro() -> None:
    parsed = fastavro.parse_schema(RICH)
    native = compile_schema(parsed)
    assert native is not None
    bodies = encode(parsed, [rich_record(k) for k in range(200)])
    buf, offsets = join(bodies)
    assert native.validate(buf, offsets) == bytes(200)
    arr = native.decode(buf, offsets)
    assert arr is not None and same(arr, fastavro_array(parsed, bodies))


def test_threads_share_a_program() -> None:
    """The walk runs without the GIL: one compiled schema decodes in several threads at once."""
    parsed = fastavro.parse_schema(RICH)
    native = compile_schema(parsed)
    assert native is not None
    values = [HEADER + b for b in encode(parsed, [rich_record(k) for k in range(2000)])]
    expected = native.decode_values(values, 5)
    assert expected is not None

    def run(_: int) -> bool:
        got = native.decode_values(values, 5)
        return (
            got is not None and same(got, expected) and not any(native.validate_values(values, 5))
        )

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(run, range(16)))


@pytest.mark.parametrize(
    ("schema", "body", "verdict"),
    [
        ("long", b"\x80", 1),  # truncated varint
        ("long", b"\x80" * 10 + b"\x01", 5),  # varint too long
        ("string", b"\x03", 4),  # negative length
        ("string", b"\x7e", 1),  # longer than the record
        (["null", "int"], b"\x04", 3),  # union index 2
        ({"type": "enum", "name": "E", "symbols": ["A"]}, b"\x02", 7),
        ({"type": "array", "items": "long"}, b"\x7e\x00", 1),  # count beyond the bytes
        ({"type": "array", "items": "long"}, b"\x03\x7e\x02\x00", 1),  # block size too big
        ({"type": "array", "items": "null"}, b"\xfe\xff\xff\xff\x0f\x00", 6),  # 2^31 nulls
        ("int", b"\x02\x00", 2),  # trailing byte
    ],
)
def test_verdicts(schema: Any, body: bytes, verdict: int) -> None:
    native = compile_schema(fastavro.parse_schema(schema))
    assert native is not None
    buf, offsets = join([body])
    assert native.validate(buf, offsets)[0] == verdict
    assert native.decode(buf, offsets) is None
    assert native.validate(*join([HEADER[:3]]), 5)[0] == 9  # shorter than the header


@pytest.mark.parametrize(
    ("schema", "value"),
    [
        ("string", b"\x04\xff\xfe"),  # invalid UTF-8: fastavro raises
        ({"type": "map", "values": "int"}, b"\x04\x02a\x02\x02a\x04\x00"),  # duplicate keys
        ("int", b"\x80\x80\x80\x80\x10"),  # 2^31: beyond int32
        ({"type": "string", "logicalType": "uuid"}, b"\x48" + b"A" * 36),
        ({"type": "int", "logicalType": "time-millis"}, b"\x01"),  # -1 ms
        ({"type": "long", "logicalType": "timestamp-millis"}, b"\xff" * 8 + b"\x7f"),
        ({"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 2}, b"\x04\x7f\xff"),
    ],
)
def test_values_left_to_fastavro(schema: Any, value: bytes) -> None:
    """Valid Avro that fastavro + pyarrow turn into something else or reject: the native
    decoder leaves the batch to fastavro (validation alone accepts the bytes)."""
    native = compile_schema(fastavro.parse_schema(schema))
    assert native is not None
    buf, offsets = join([value])
    assert native.validate(buf, offsets) == b"\x00"
    assert native.decode(buf, offsets) is None


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "record", "name": "U", "fields": [{"name": "u", "type": ["int", "string"]}]},
        {
            "type": "record",
            "name": "Node",
            "fields": [{"name": "next", "type": ["null", "Node"]}],
        },
        {"type": "bytes", "logicalType": "decimal", "precision": 40, "scale": 0},
    ],
)
def test_unsupported_schemas_compile_to_none(schema: Any) -> None:
    assert compile_schema(fastavro.parse_schema(schema)) is None


def test_without_the_extension_fastavro_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    values = [HEADER + b"ab", HEADER, HEADER + b"c"]
    assert avrofast.bodies(values, 5) == b"abc"
    with pytest.raises(ValueError):
        avrofast.bodies([b"abc"], 5)
    monkeypatch.setattr(avrofast, "_native", None)
    assert compile_schema(fastavro.parse_schema(RICH)) is None
    assert avrofast.bodies(values, 5) == b"abc"


def test_offsets_are_checked() -> None:
    native = compile_schema(fastavro.parse_schema("int"))
    assert native is not None
    for offsets in ([0, 5], [1, 0], [-1, 0], []):
        with pytest.raises(ValueError):
            native.validate(b"\x02\x02", array("q", offsets))
    with pytest.raises(TypeError):
        native.validate_values(["x"], 0)  # type: ignore[list-item]


# -- the decoder ---------------------------------------------------------------------------------


@pytest.fixture
def registry() -> Iterator[SchemaRegistryServer]:
    with SchemaRegistryServer() as server:
        yield server


@pytest.mark.parametrize("fmt", ["parquet", "avro"])
def test_decoder_native_bulk_equals_record_by_record(
    registry: SchemaRegistryServer, fmt: str
) -> None:
    ser = avro(registry, RICH)
    values: list[bytes | None] = [ser(rich_record(k)) for k in range(60)]
    dec = load_value_decoder(cfg(registry, "avro", format_class=fmt))
    assert isinstance(dec, AvroDecoder)
    bulk = decode(dec, batch(values))
    assert next(iter(dec._schemas.values())).native is not None  # the native path was taken
    slow = record_by_record(load_value_decoder(cfg(registry, "avro", format_class=fmt)), values)
    assert summary(bulk) == summary(slow)


@pytest.mark.parametrize("damage", ["truncate", "trailing", "garbage", "enum"])
def test_decoder_native_finds_corrupt_values(registry: SchemaRegistryServer, damage: str) -> None:
    ser = avro(registry, RICH)
    values: list[bytes | None] = [ser(rich_record(k)) for k in range(10)]
    v = values[4]
    assert v is not None
    # RICH starts with a boolean, an int 4, a long -4e12 (7 bytes), a float, a double, bytes of
    # one, an empty string (union 1, length 0), then the enum index
    enum_at = 5 + 1 + 1 + 7 + 4 + 8 + 2 + 2
    assert v[enum_at] == 2  # "B"
    values[4] = {
        "truncate": v[:-3],
        "trailing": v + b"\x00",
        "garbage": v[:5] + b"\xff" * 12,
        "enum": v[:enum_at] + b"\x06" + v[enum_at + 1 :],  # index 3 of 3 symbols
    }[damage]
    for fmt in ("parquet", "avro"):
        d = decode(load_value_decoder(cfg(registry, "avro", format_class=fmt)), batch(values))
        assert list(d.errors) == [4], d.errors
        assert sum(len(p.rows or range(10)) for p in d.parts) == 9


def test_decoder_without_the_extension(
    registry: SchemaRegistryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(avrofast, "_native", None)
    ser = avro(registry, RICH)
    values: list[bytes | None] = [ser(rich_record(k)) for k in range(20)]
    dec = load_value_decoder(cfg(registry, "avro", format_class="parquet"))
    assert isinstance(dec, AvroDecoder)
    bulk = decode(dec, batch(values))
    assert next(iter(dec._schemas.values())).native is None
    slow = record_by_record(
        load_value_decoder(cfg(registry, "avro", format_class="parquet")), values
    )
    assert summary(bulk) == summary(slow)
