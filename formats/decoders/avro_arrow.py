"""Avro schemas as Arrow types, and fastavro's decoded values as Arrow input.

Records become structs, arrays lists, maps ``map<string, T>``, enums strings, fixed
``fixed_size_binary``; ``["null", T]`` is a nullable ``T``. Logical types: ``date`` ->
``date32``, ``time-millis``/``-micros`` -> ``time32[ms]``/``time64[us]``,
``timestamp-millis``/``-micros``/``-nanos`` -> ``timestamp[ms|us|ns, UTC]``
(``local-timestamp-*`` without a zone), ``decimal`` -> ``decimal128`` (``decimal256`` above 38
digits), ``uuid`` -> string. A union of several non-null types becomes a struct with one field
per branch (``member0``, ``member1``, ... as parquet-avro names them), the taken branch set and
the others null. A recursive type is cut where it recurs: that field holds the JSON text of the
rest.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from formats.arrow_types import json_default

Converter = Callable[[Any], Any]

_PRIMITIVES: dict[str, pa.DataType] = {
    "null": pa.null(),
    "boolean": pa.bool_(),
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "bytes": pa.binary(),
    "string": pa.string(),
}


def _to_json_text(v: Any) -> str:
    return json.dumps(v, default=json_default, separators=(",", ":"))


class AvroToArrow:
    """Converts one parsed (fastavro ``parse_schema``) schema."""

    def __init__(self) -> None:
        self.named: dict[str, Any] = {}

    def convert(
        self, schema: Any, stack: tuple[str, ...] = ()
    ) -> tuple[pa.DataType, Converter | None]:
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                return _PRIMITIVES[schema], None
            if schema in stack:
                return pa.string(), _to_json_text
            definition = self.named.get(schema)
            if definition is None:
                raise ValueError(f"unknown Avro type {schema!r}")
            return self.convert(definition, stack)
        if isinstance(schema, list):
            return self._union(schema, stack)
        if not isinstance(schema, dict):
            raise ValueError(f"not an Avro schema: {schema!r}")
        t = schema.get("type")
        logical = schema.get("logicalType")
        if logical is not None:
            lt = self._logical(t, logical, schema)
            if lt is not None:
                return lt
        if t in {"record", "error"}:
            name = schema.get("name", "")
            self.named[name] = schema
            inner = (*stack, name)
            fields: list[pa.Field] = []
            convs: list[tuple[str, Converter]] = []
            for f in schema.get("fields", ()):
                ftype, conv = self.convert(f["type"], inner)
                fields.append(pa.field(f["name"], ftype))
                if conv is not None:
                    convs.append((f["name"], conv))
            return pa.struct(fields), _record_converter(convs)
        if t == "enum":
            self.named[schema.get("name", "")] = schema
            return pa.string(), None
        if t == "fixed":
            self.named[schema.get("name", "")] = schema
            return pa.binary(int(schema["size"])), None
        if t == "array":
            items, conv = self.convert(schema["items"], stack)
            if conv is None:
                return pa.list_(items), None
            c = conv
            return pa.list_(items), lambda v: [None if x is None else c(x) for x in v]
        if t == "map":
            values, conv = self.convert(schema["values"], stack)
            typ = pa.map_(pa.string(), values)
            if conv is None:
                return typ, None
            vc = conv
            return typ, lambda v: [(k, None if x is None else vc(x)) for k, x in v.items()]
        if isinstance(t, (str, list, dict)):
            return self.convert(t, stack)
        raise ValueError(f"not an Avro schema: {schema!r}")

    def _logical(
        self, t: Any, logical: str, schema: dict[str, Any]
    ) -> tuple[pa.DataType, Converter | None] | None:
        if t == "int" and logical == "date":
            return pa.date32(), None
        if t == "int" and logical == "time-millis":
            return pa.time32("ms"), None
        if t == "long" and logical == "time-micros":
            return pa.time64("us"), None
        units = {"millis": "ms", "micros": "us", "nanos": "ns"}
        if t == "long" and logical.startswith(("timestamp-", "local-timestamp-")):
            unit = units.get(logical.rsplit("-", 1)[1])
            if unit is None:
                return None
            return pa.timestamp(unit, "UTC" if logical.startswith("timestamp-") else None), None
        if logical == "decimal" and t in ("bytes", "fixed"):
            precision = int(schema.get("precision", 38))
            scale = int(schema.get("scale", 0))
            if t == "fixed":
                self.named[schema.get("name", "")] = schema
            if 0 < precision <= 38:
                return pa.decimal128(precision, scale), None
            if 38 < precision <= 76:
                return pa.decimal256(precision, scale), None
            return None
        if t == "string" and logical == "uuid":
            return pa.string(), lambda v: str(v) if isinstance(v, uuid.UUID) else v
        return None

    def _union(
        self, branches: list[Any], stack: tuple[str, ...]
    ) -> tuple[pa.DataType, Converter | None]:
        non_null = [b for b in branches if b != "null"]
        if not non_null:
            return pa.null(), None
        if len(non_null) == 1:
            return self.convert(non_null[0], stack)
        members: list[tuple[pa.DataType, Converter | None]] = [
            self.convert(b, stack) for b in non_null
        ]
        names = [f"member{i}" for i in range(len(non_null))]
        struct = pa.struct([pa.field(n, m[0]) for n, m in zip(names, members, strict=True)])
        tests = [self._branch_test(b) for b in non_null]
        record_names = [self._record_name(b) for b in non_null]

        def convert(v: Any) -> Any:
            out: dict[str, Any] = dict.fromkeys(names)
            if isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str):
                # fastavro (return_record_name): ("ns.Name", record) for unions of records
                for i, rn in enumerate(record_names):
                    if rn is not None and rn == v[0]:
                        c = members[i][1]
                        out[names[i]] = v[1] if c is None else c(v[1])
                        return out
                v = v[1]
            for i, test in enumerate(tests):
                if test(v):
                    c = members[i][1]
                    out[names[i]] = v if c is None else c(v)
                    return out
            return out

        return struct, convert

    def _record_name(self, branch: Any) -> str | None:
        if isinstance(branch, dict) and branch.get("type") in ("record", "error"):
            return str(branch.get("name"))
        if isinstance(branch, str) and branch not in _PRIMITIVES:
            d = self.named.get(branch)
            if isinstance(d, dict) and d.get("type") in ("record", "error"):
                return branch
        return None

    def _branch_test(self, branch: Any) -> Callable[[Any], bool]:
        b = branch
        if isinstance(b, str) and b not in _PRIMITIVES:
            b = self.named.get(b, b)
        t = b.get("type") if isinstance(b, dict) else b
        logical = b.get("logicalType") if isinstance(b, dict) else None
        if logical is not None:
            import datetime as dt
            import decimal

            kinds: dict[str, tuple[type, ...]] = {
                "date": (dt.date,),
                "time-millis": (dt.time,),
                "time-micros": (dt.time,),
                "decimal": (decimal.Decimal,),
                "uuid": (uuid.UUID, str),
            }
            if logical in kinds:
                k = kinds[logical]
                return lambda v: isinstance(v, k)
            if "timestamp" in logical:
                return lambda v: isinstance(v, dt.datetime)
        simple: dict[str, Callable[[Any], bool]] = {
            "boolean": lambda v: isinstance(v, bool),
            "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
            "long": lambda v: isinstance(v, int) and not isinstance(v, bool),
            "float": lambda v: isinstance(v, float),
            "double": lambda v: isinstance(v, float),
            "bytes": lambda v: isinstance(v, bytes),
            "fixed": lambda v: isinstance(v, bytes),
            "string": lambda v: isinstance(v, str),
            "enum": lambda v: isinstance(v, str),
            "array": lambda v: isinstance(v, list),
            "map": lambda v: isinstance(v, dict),
            "record": lambda v: isinstance(v, dict),
            "error": lambda v: isinstance(v, dict),
        }
        return simple.get(str(t), lambda v: False)


def _record_converter(convs: list[tuple[str, Converter]]) -> Converter | None:
    if not convs:
        return None

    def convert(v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        out = dict(v)
        for name, c in convs:
            x = out.get(name)
            if x is not None:
                out[name] = c(x)
        return out

    return convert


def avro_to_arrow(parsed_schema: Any) -> tuple[pa.DataType, Converter | None]:
    """Arrow type and value converter (``None``: fastavro's values fit as they are)."""
    return AvroToArrow().convert(parsed_schema)
