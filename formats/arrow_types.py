"""Arrow type helpers shared by the formats: what readers accept, Avro schemas from Arrow.

Readers' limits decide the normalisation: Athena and Hive cannot read nanosecond Parquet
timestamps (they become microseconds), a column of Arrow's ``null`` type (a JSON field that was
only ever null) becomes a nullable string, and dictionary columns are written as their values.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import re
from collections.abc import Callable
from typing import Any

import pyarrow as pa

Converter = Callable[[Any], Any]


def normalize_type(t: pa.DataType) -> pa.DataType:
    if pa.types.is_timestamp(t):
        return pa.timestamp("us", t.tz) if t.unit == "ns" else t
    if pa.types.is_time64(t) and t.unit == "ns":
        return pa.time64("us")
    if pa.types.is_null(t):
        return pa.string()
    if pa.types.is_dictionary(t):
        return normalize_type(t.value_type)
    if pa.types.is_struct(t):
        return pa.struct([f.with_type(normalize_type(f.type)) for f in t])
    if pa.types.is_map(t):
        return pa.map_(
            t.key_field.with_type(normalize_type(t.key_type)),
            t.item_field.with_type(normalize_type(t.item_type)),
        )
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t):
        return pa.list_(t.value_field.with_type(normalize_type(t.value_type)))
    if pa.types.is_fixed_size_list(t):
        return pa.list_(t.value_field.with_type(normalize_type(t.value_type)))
    if pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_binary_view(t):
        return pa.binary()
    if pa.types.is_duration(t):
        return pa.int64()
    return t


def normalize_schema(schema: pa.Schema) -> pa.Schema:
    fields = [f.with_type(normalize_type(f.type)) for f in schema]
    return pa.schema(fields)


def normalize_table(table: pa.Table) -> pa.Table:
    """``table`` with reader-safe types and without decoder metadata."""
    target = normalize_schema(table.schema)
    if target.equals(table.schema.remove_metadata()):
        return table.replace_schema_metadata(None)
    out: pa.Table = table.replace_schema_metadata(None).cast(target, safe=False)
    return out


# -- Avro schemas from Arrow ---------------------------------------------------------------

_NAME_RE = re.compile(r"[^A-Za-z0-9_]")


def avro_name(text: str) -> str:
    """A valid Avro name for ``text`` (letters, digits, ``_``; not starting with a digit)."""
    name = _NAME_RE.sub("_", text) or "_"
    return "_" + name if name[0].isdigit() else name


class AvroSchemaBuilder:
    """Avro schema + value converter for an Arrow type; names are made unique per file."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._names: set[str] = set()

    def _unique(self, base: str) -> str:
        name = avro_name(base)
        candidate, i = name, 1
        while candidate in self._names:
            i += 1
            candidate = f"{name}_{i}"
        self._names.add(candidate)
        return candidate

    def record(self, schema: pa.Schema, name: str) -> tuple[dict[str, Any], Converter | None]:
        return self._struct(list(schema), name)

    def _struct(self, fields: list[pa.Field], name: str) -> tuple[dict[str, Any], Converter | None]:
        avro_fields: list[dict[str, Any]] = []
        convs: list[tuple[str, Converter]] = []
        used: set[str] = set()
        renames: list[tuple[str, str]] = []
        for f in fields:
            fname = avro_name(f.name)
            while fname in used:
                fname += "_"
            used.add(fname)
            if fname != f.name:
                renames.append((f.name, fname))
            ftype, conv = self.type(f.type, f"{name}_{fname}")
            avro_fields.append({"name": fname, "type": ["null", ftype], "default": None})
            if conv is not None:
                convs.append((f.name, conv))
        rec: dict[str, Any] = {"type": "record", "name": self._unique(name), "fields": avro_fields}
        if self.namespace:
            rec["namespace"] = self.namespace
        if not convs and not renames:
            return rec, None
        conv_map = dict(convs)
        rename_map = dict(renames)

        def convert(v: Any) -> Any:
            if v is None:
                return None
            out = {}
            for k, x in v.items():
                c = conv_map.get(k)
                out[rename_map.get(k, k)] = x if c is None or x is None else c(x)
            return out

        return rec, convert

    def type(self, t: pa.DataType, name: str) -> tuple[Any, Converter | None]:
        t = normalize_type(t)
        if pa.types.is_boolean(t):
            return "boolean", None
        if pa.types.is_int8(t) or pa.types.is_int16(t) or pa.types.is_int32(t):
            return "int", None
        if pa.types.is_uint8(t) or pa.types.is_uint16(t):
            return "int", None
        if pa.types.is_integer(t):
            return "long", None
        if pa.types.is_float16(t) or pa.types.is_float32(t):
            return "float", None
        if pa.types.is_floating(t):
            return "double", None
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            return "string", None
        if pa.types.is_fixed_size_binary(t):
            return {"type": "fixed", "name": self._unique(name), "size": t.byte_width}, None
        if pa.types.is_binary(t) or pa.types.is_large_binary(t):
            return "bytes", None
        if pa.types.is_timestamp(t):
            prefix = "timestamp" if t.tz is not None else "local-timestamp"
            if t.unit == "s":
                return {"type": "long", "logicalType": f"{prefix}-millis"}, _naive_utc(t)
            logical = f"{prefix}-millis" if t.unit == "ms" else f"{prefix}-micros"
            return {"type": "long", "logicalType": logical}, _naive_utc(t)
        if pa.types.is_date(t):
            return {"type": "int", "logicalType": "date"}, None
        if pa.types.is_time32(t):
            return {"type": "int", "logicalType": "time-millis"}, None
        if pa.types.is_time64(t):
            return {"type": "long", "logicalType": "time-micros"}, None
        if pa.types.is_decimal(t):
            return {
                "type": "bytes",
                "logicalType": "decimal",
                "precision": t.precision,
                "scale": t.scale,
            }, None
        if pa.types.is_struct(t):
            return self._struct(list(t), name)
        if pa.types.is_list(t) or pa.types.is_large_list(t):
            items, conv = self.type(t.value_type, name + "_item")
            schema = {"type": "array", "items": ["null", items]}
            if conv is None:
                return schema, None
            c = conv
            return schema, lambda v: [None if x is None else c(x) for x in v]
        if pa.types.is_map(t):
            values, conv = self.type(t.item_type, name + "_value")
            vc = conv
            schema = {"type": "map", "values": ["null", values]}
            return schema, lambda v: {
                str(k): (x if vc is None or x is None else vc(x)) for k, x in v
            }
        # anything else (unions, ...): its JSON text
        return "string", lambda v: json.dumps(v, default=json_default, separators=(",", ":"))


def _naive_utc(t: pa.DataType) -> Converter | None:
    if t.tz is not None:
        return None
    return lambda v: v  # fastavro writes naive datetimes of local-timestamp-* as they are


# -- JSON rendering ----------------------------------------------------------------------------


def json_default(v: Any) -> Any:
    """``json.dumps`` fallback for values of Arrow's ``to_pylist``."""
    if isinstance(v, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(v)).decode("ascii")
    if isinstance(v, dt.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(dt.UTC).replace(tzinfo=None)
            spec = "microseconds" if v.microsecond % 1000 else "milliseconds"
            return v.isoformat(timespec=spec) + "Z"
        return v.isoformat()
    if isinstance(v, (dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, dt.timedelta):
        return v // dt.timedelta(microseconds=1)
    if isinstance(v, decimal.Decimal):
        return str(v)  # exact; a JSON number would go through a double
    return str(v)


def rows_as_json(table: pa.Table, wrapped: bool) -> list[bytes]:
    """One compact JSON document per row of a decoded table (maps become objects)."""
    maps = _map_columns(table.schema)
    rows = table.to_pylist()
    out: list[bytes] = []
    for raw in rows:
        row = _fix_maps(raw) if maps else raw
        doc = row.get("value") if wrapped else row
        out.append(
            json.dumps(
                doc, default=json_default, separators=(",", ":"), ensure_ascii=False
            ).encode()
        )
    return out


def _map_columns(schema: pa.Schema) -> bool:
    return any(_has_map(f.type) for f in schema)


def _has_map(t: pa.DataType) -> bool:
    if pa.types.is_map(t):
        return True
    if pa.types.is_struct(t):
        return any(_has_map(f.type) for f in t)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return _has_map(t.value_type)
    return False


def _fix_maps(v: Any) -> Any:
    # Arrow gives maps as lists of (key, value) tuples; JSON wants objects.
    if isinstance(v, dict):
        return {k: _fix_maps(x) for k, x in v.items()}
    if isinstance(v, list):
        if v and all(isinstance(x, tuple) and len(x) == 2 for x in v):
            return {str(k): _fix_maps(x) for k, x in v}
        return [_fix_maps(x) for x in v]
    return v
