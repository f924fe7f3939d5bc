"""Native bulk Avro reading (the ``_avrofast`` C extension), with fastavro as the fallback.

A parsed (fastavro) Avro schema compiles once into a program: a tree of
``(op, lo, hi, size, extra, children, symbols)`` tuples the extension walks. Over one buffer of
concatenated values and their boundaries it either

* **validates**: walks every record, bounds-checked on every read, and gives a verdict per
  record (:data:`OK` or why not: truncated, trailing bytes, a bad union or enum index, a
  negative length, an over-long varint, a block count the bytes cannot hold), or
* **decodes** into Arrow buffers that become exactly the arrays ``avro_to_arrow`` and
  ``pa.array`` make of fastavro's records today (same types, same values).

Stricter than fastavro on purpose: whatever this path does not accept (a bad record, or a value
fastavro and pyarrow would turn into something else: a timestamp or date outside Python's
range, a decimal wider than its precision, an ``int`` outside 32 bits, a non-canonical uuid,
invalid UTF-8, duplicate map keys) makes the caller take the fastavro path for the batch, which
then says which record is bad and why. A schema with anything not covered here (unions of
several non-null types, recursive types, ``decimal`` above 38 digits, references to names
defined elsewhere ...) compiles to ``None``: fastavro reads it, decided once per schema.

The extension is optional: without it (a build without a C compiler) :func:`compile_schema`
returns ``None`` and fastavro reads everything, as before.
"""

from __future__ import annotations

import logging
import types
from array import array
from collections.abc import Sequence
from datetime import UTC, date, datetime
from itertools import accumulate
from typing import Any

import pyarrow as pa

from formats.decoders.avro_arrow import avro_to_arrow

log = logging.getLogger(__name__)

#: The interface of the extension this module calls (``_avrofast.API``).
API = 2

_native: types.ModuleType | None
try:
    from formats.decoders import _avrofast as _native
except ImportError as _exc:  # pragma: no cover - depends on the build
    _native = None
    log.debug("native Avro decoder not available (%s): fastavro reads every record", _exc)
else:
    if getattr(_native, "API", None) != API:  # pragma: no cover - a stale in-place build
        log.debug("native Avro decoder is a stale build (pip install -e . rebuilds it)")
        _native = None

AVAILABLE = _native is not None

# ops (keep in sync with _avrofast.c)
NULL, BOOL, INT, LONG, FLOAT, DOUBLE, BYTES, STRING, FIXED, ENUM = range(10)
RECORD, ARRAY, MAP, UNION, DECIMAL_BYTES, DECIMAL_FIXED, UUID = range(10, 17)

# verdicts (keep in sync with _avrofast.c)
OK = 0
REASONS = {
    1: "truncated",
    2: "trailing bytes after the record",
    3: "union index out of range",
    4: "negative length",
    5: "varint longer than 10 bytes",
    6: "block count or size does not fit the record",
    7: "enum index out of range",
    8: "nesting too deep",
    9: "value shorter than its header",
    10: "out of memory",
    20: "a value this path does not decode like fastavro",
}

_INT64 = (-(2**63), 2**63 - 1)
_INT32 = (-(2**31), 2**31 - 1)
_PRIMITIVE_OPS = {
    "null": (NULL, pa.null()),
    "boolean": (BOOL, pa.bool_()),
    "int": (INT, pa.int32()),
    "long": (LONG, pa.int64()),
    "float": (FLOAT, pa.float32()),
    "double": (DOUBLE, pa.float64()),
    "bytes": (BYTES, pa.binary()),
    "string": (STRING, pa.string()),
}
# fastavro's logical readers (``<type>-<logicalType>``): a logical type fastavro converts but
# this path does not know makes the schema unsupported
_FASTAVRO_LOGICAL = {
    "long-timestamp-millis",
    "long-local-timestamp-millis",
    "long-timestamp-micros",
    "long-local-timestamp-micros",
    "int-date",
    "bytes-decimal",
    "fixed-decimal",
    "string-uuid",
    "int-time-millis",
    "long-time-micros",
}
# values fastavro turns into Python datetimes/dates: kept a year inside Python's range
_SECONDS_LO = int(datetime(2, 1, 1, tzinfo=UTC).timestamp())
_SECONDS_HI = int(datetime(9998, 12, 31, tzinfo=UTC).timestamp())
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_DAYS = (
    date(2, 1, 1).toordinal() - _EPOCH_ORDINAL,
    date(9998, 12, 31).toordinal() - _EPOCH_ORDINAL,
)
_MAX_DEPTH = 60

Node = tuple[int, int, int, int, int, tuple[Any, ...], tuple[bytes, ...]]


class Unsupported(Exception):
    """The schema (or a part of it) is left to fastavro."""


def _node(
    op: int,
    lo: int = 0,
    hi: int = 0,
    size: int = 0,
    extra: int = 0,
    children: tuple[Node, ...] = (),
    symbols: tuple[bytes, ...] = (),
) -> Node:
    return (op, lo, hi, size, extra, children, symbols)


class _Compiler:
    def __init__(self) -> None:
        self.named: dict[str, Any] = {}

    def compile(self, schema: Any, stack: tuple[str, ...], depth: int) -> tuple[Node, pa.DataType]:
        if depth > _MAX_DEPTH:
            raise Unsupported("nested too deep")
        if isinstance(schema, str):
            if schema in _PRIMITIVE_OPS:
                op, typ = _PRIMITIVE_OPS[schema]
                if op == INT:
                    return _node(op, *_INT32), typ
                if op == LONG:
                    return _node(op, *_INT64), typ
                return _node(op), typ
            if schema in stack:
                raise Unsupported(f"recursive type {schema}")
            definition = self.named.get(schema)
            if definition is None:
                raise Unsupported(f"unknown type {schema}")
            return self.compile(definition, stack, depth + 1)
        if isinstance(schema, list):
            return self._union(schema, stack, depth)
        if not isinstance(schema, dict):
            raise Unsupported(f"not an Avro schema: {schema!r}")
        t = schema.get("type")
        logical = schema.get("logicalType")
        if logical is not None:
            compiled = self._logical(t, logical, schema)
            if compiled is not None:
                return compiled
        if t in ("record", "error"):
            name = schema.get("name", "")
            self.named[name] = schema
            inner = (*stack, name)
            nodes: list[Node] = []
            fields: list[pa.Field] = []
            for f in schema.get("fields", ()):
                n, typ = self.compile(f["type"], inner, depth + 1)
                nodes.append(n)
                fields.append(pa.field(f["name"], typ))
            return _node(RECORD, children=tuple(nodes)), pa.struct(fields)
        if t == "enum":
            self.named[schema.get("name", "")] = schema
            symbols = tuple(str(s).encode() for s in schema.get("symbols", ()))
            if not symbols:
                raise Unsupported("enum without symbols")
            return _node(ENUM, symbols=symbols), pa.string()
        if t == "fixed":
            self.named[schema.get("name", "")] = schema
            size = int(schema["size"])
            return _node(FIXED, size=size), pa.binary(size)
        if t == "array":
            n, typ = self.compile(schema["items"], stack, depth + 1)
            return _node(ARRAY, children=(n,)), pa.list_(typ)
        if t == "map":
            n, typ = self.compile(schema["values"], stack, depth + 1)
            return _node(MAP, children=(n,)), pa.map_(pa.string(), typ)
        if isinstance(t, (str, list, dict)):
            return self.compile(t, stack, depth + 1)
        raise Unsupported(f"not an Avro schema: {schema!r}")

    def _logical(
        self, t: Any, logical: Any, schema: dict[str, Any]
    ) -> tuple[Node, pa.DataType] | None:
        ms = (_SECONDS_LO * 1000, _SECONDS_HI * 1000)
        us = (_SECONDS_LO * 1_000_000, _SECONDS_HI * 1_000_000)
        simple: dict[tuple[Any, Any], tuple[Node, pa.DataType]] = {
            ("int", "date"): (_node(INT, *_DAYS), pa.date32()),
            ("int", "time-millis"): (_node(INT, 0, 86_400_000 - 1), pa.time32("ms")),
            ("long", "time-micros"): (_node(LONG, 0, 86_400_000_000 - 1), pa.time64("us")),
            ("long", "timestamp-millis"): (_node(LONG, *ms), pa.timestamp("ms", "UTC")),
            ("long", "timestamp-micros"): (_node(LONG, *us), pa.timestamp("us", "UTC")),
            ("long", "timestamp-nanos"): (_node(LONG, *_INT64), pa.timestamp("ns", "UTC")),
            ("long", "local-timestamp-millis"): (_node(LONG, *ms), pa.timestamp("ms")),
            ("long", "local-timestamp-micros"): (_node(LONG, *us), pa.timestamp("us")),
            ("long", "local-timestamp-nanos"): (_node(LONG, *_INT64), pa.timestamp("ns")),
            ("string", "uuid"): (_node(UUID), pa.string()),
        }
        key = (t, logical)
        if key in simple:
            return simple[key]
        if logical == "decimal" and t in ("bytes", "fixed"):
            precision = int(schema.get("precision", 38))
            scale = int(schema.get("scale", 0))
            if not 0 < precision <= 38:
                raise Unsupported(f"decimal precision {precision}")
            typ = pa.decimal128(precision, scale)
            if t == "bytes":
                return _node(DECIMAL_BYTES, extra=precision), typ
            self.named[schema.get("name", "")] = schema
            return _node(DECIMAL_FIXED, size=int(schema["size"]), extra=precision), typ
        if f"{t}-{logical}" in _FASTAVRO_LOGICAL:
            raise Unsupported(f"logical type {logical} on {t}")
        return None

    def _union(
        self, branches: list[Any], stack: tuple[str, ...], depth: int
    ) -> tuple[Node, pa.DataType]:
        if any(isinstance(b, dict) and b.get("type") == "null" for b in branches):
            raise Unsupported("a null branch spelled as a record")
        non_null = [b for b in branches if b != "null"]
        nulls = len(branches) - len(non_null)
        if len(non_null) > 1 or nulls > 1 or not branches:
            raise Unsupported("union of several types")
        null_index = branches.index("null") if nulls else -1
        if non_null:
            child, typ = self.compile(non_null[0], stack, depth + 1)
        else:
            child, typ = _node(NULL), pa.null()
        return _node(UNION, size=len(branches), extra=null_index, children=(child,)), typ


class NativeSchema:
    """One compiled schema: validates and decodes buffers of records."""

    def __init__(self, program: Any, node: Node, arrow: pa.DataType) -> None:
        self._program = program
        self._node = node
        self.arrow = arrow

    def validate(self, buf: bytes, offsets: array[int], header: int = 0) -> bytes:
        """A verdict per record (``buf[offsets[i] + header:offsets[i + 1]]``): :data:`OK` or a
        key of :data:`REASONS`."""
        assert _native is not None
        out: bytes = _native.validate(self._program, buf, offsets, header)
        return out

    def decode(self, buf: bytes, offsets: array[int], header: int = 0) -> pa.Array | None:
        """The records as one Arrow array of :attr:`arrow`, or ``None`` when one of them is
        bad or holds a value this path does not decode like fastavro (then fastavro reads the
        batch)."""
        assert _native is not None
        out = _native.decode(self._program, buf, offsets, header)
        if isinstance(out, tuple):
            return None
        arr = _build(self._node, self.arrow, iter(out))
        arr.validate()
        return arr

    def validate_values(self, values: Sequence[bytes], header: int = 0) -> bytes:
        """:meth:`validate` over the values as they are (no joined copy)."""
        assert _native is not None
        out: bytes = _native.validate_values(self._program, values, header)
        return out

    def decode_values(self, values: Sequence[bytes], header: int = 0) -> pa.Array | None:
        """:meth:`decode` over the values as they are (no joined copy)."""
        assert _native is not None
        out = _native.decode_values(self._program, values, header)
        if isinstance(out, tuple):
            return None
        arr = _build(self._node, self.arrow, iter(out))
        arr.validate()
        return arr


def bodies(values: Sequence[bytes], header: int) -> bytes:
    """``b"".join(v[header:] for v in values)``, in one copy when the extension is built."""
    if _native is not None:
        out: bytes = _native.bodies(values, header)
        return out
    return b"".join([v[header:] for v in values])


def join(values: Sequence[bytes]) -> tuple[bytes, array[int]]:
    """One buffer of the values and their boundaries (``n + 1`` offsets)."""
    return b"".join(values), array("q", accumulate(map(len, values), initial=0))


def compile_schema(parsed: Any) -> NativeSchema | None:
    """The native program of a parsed (fastavro) schema, or ``None``: the extension is not
    built, or the schema has something it does not cover (fastavro reads it)."""
    if _native is None:
        return None
    try:
        node, arrow = _Compiler().compile(parsed, (), 0)
        expected, _ = avro_to_arrow(parsed)
    except (Unsupported, ValueError, TypeError, KeyError) as exc:
        log.debug("Avro schema left to fastavro: %s", exc)
        return None
    if arrow != expected:
        log.debug("Avro schema left to fastavro: Arrow types differ (%s, %s)", arrow, expected)
        return None
    try:
        program = _native.compile(node)
    except (ValueError, TypeError) as exc:
        log.debug("Avro schema left to fastavro: %s", exc)
        return None
    return NativeSchema(program, node, arrow)


_FIXED_WIDTH = {BOOL, INT, LONG, FLOAT, DOUBLE, FIXED, DECIMAL_BYTES, DECIMAL_FIXED}
_VARIABLE = {BYTES, STRING, ENUM, UUID}


def _buf(b: bytes | None) -> pa.Buffer | None:
    return None if b is None else pa.py_buffer(b)


def _build(node: Node, typ: pa.DataType, cols: Any) -> pa.Array:
    op = node[0]
    if op == UNION:
        return _build(node[5][0], typ, cols)
    length, nulls, validity, offsets, data, keys = next(cols)
    vb = _buf(validity)
    if op == NULL:
        return pa.nulls(length)
    if op in _FIXED_WIDTH:
        return pa.Array.from_buffers(typ, length, [vb, _buf(data)], null_count=nulls)
    if op in _VARIABLE:
        return pa.Array.from_buffers(typ, length, [vb, _buf(offsets), _buf(data)], null_count=nulls)
    if op == RECORD:
        children = [_build(n, typ.field(i).type, cols) for i, n in enumerate(node[5])]
        return pa.Array.from_buffers(typ, length, [vb], null_count=nulls, children=children)
    if op == ARRAY:
        child = _build(node[5][0], typ.value_type, cols)
        return pa.Array.from_buffers(
            typ, length, [vb, _buf(offsets)], null_count=nulls, children=[child]
        )
    if op == MAP:
        items = _build(node[5][0], typ.item_type, cols)
        key_array = pa.Array.from_buffers(pa.string(), len(items), [None, _buf(keys), _buf(data)])
        entries = pa.StructArray.from_arrays(
            [key_array, items], fields=[typ.key_field, typ.item_field]
        )
        return pa.Array.from_buffers(
            typ, length, [vb, _buf(offsets)], null_count=nulls, children=[entries]
        )
    raise AssertionError(f"op {op}")
