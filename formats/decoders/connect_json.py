"""JsonConverter envelopes (``value.converter=json`` + ``value.converter.schemas.enable=true``).

Each value is ``{"schema": <Kafka Connect schema>, "payload": <value>}``. The Connect schema
gives the Arrow type: ``int8``..``int64``, ``float``/``float32``, ``double``/``float64``,
``boolean``, ``string``, ``bytes`` (base64 in JSON), ``array``, ``map`` (objects, or
``[[key, value], ...]`` for non-string keys) and ``struct``; the logical types
``org.apache.kafka.connect.data.Timestamp`` (ms), ``Date`` (days), ``Time`` (ms) and
``Decimal`` (base64 two's-complement unscaled value, ``scale`` parameter). Consecutive records
with the same schema form one part (schema id ``connect:<fingerprint>``); a schema change rolls
the file. Records are parsed one by one (the schema travels with every record).
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import hashlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from formats.decoders import jsonutil
from formats.decoders.base import META_ENCODING, META_WRAPPED, Decoded, DecodedPart
from formats.decoders.wire import runs

if TYPE_CHECKING:
    from s3sink.records import RecordBatch

Converter = Callable[[Any], Any]

_PRIMITIVES: dict[str, pa.DataType] = {
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float": pa.float32(),
    "float32": pa.float32(),
    "double": pa.float64(),
    "float64": pa.float64(),
    "boolean": pa.bool_(),
    "string": pa.string(),
}
_EPOCH_DAY = dt.date(1970, 1, 1)


class BadSchema(ValueError):
    pass


def connect_to_arrow(s: Any, depth: int = 0) -> tuple[pa.DataType, Converter | None]:
    if depth > jsonutil.MAX_DEPTH:
        raise BadSchema("schema nested too deeply")
    if not isinstance(s, dict):
        raise BadSchema(f"not a Connect schema: {str(s)[:80]}")
    t = s.get("type")
    name = s.get("name")
    if name == "org.apache.kafka.connect.data.Timestamp":
        return pa.timestamp("ms", "UTC"), None
    if name == "org.apache.kafka.connect.data.Date":
        return pa.date32(), lambda v: _EPOCH_DAY + dt.timedelta(days=int(v))
    if name == "org.apache.kafka.connect.data.Time":
        return pa.time32("ms"), None
    if name == "org.apache.kafka.connect.data.Decimal":
        params = s.get("parameters") or {}
        scale = int(params.get("scale", 0))
        precision = int(params.get("connect.decimal.precision", 38))
        typ = pa.decimal128(min(max(precision, scale, 1), 38), scale)

        def dec(v: Any) -> decimal.Decimal:
            if isinstance(v, (int, float)):
                return decimal.Decimal(str(v))
            unscaled = int.from_bytes(base64.b64decode(v), "big", signed=True)
            return decimal.Decimal(unscaled).scaleb(-scale)

        return typ, dec
    if t in _PRIMITIVES:
        return _PRIMITIVES[t], None
    if t == "bytes":
        return pa.binary(), base64.b64decode
    if t == "array":
        items, conv = connect_to_arrow(s.get("items"), depth + 1)
        c = conv
        return pa.list_(items), (
            None if c is None else lambda v: [None if x is None else c(x) for x in v]
        )
    if t == "map":
        kt, kc = connect_to_arrow(s.get("keys"), depth + 1)
        vt, vc = connect_to_arrow(s.get("values"), depth + 1)

        def conv_map(v: Any) -> Any:
            pairs = v.items() if isinstance(v, dict) else [(p[0], p[1]) for p in v]
            return [
                (k if kc is None else kc(k), x if x is None or vc is None else vc(x))
                for k, x in pairs
            ]

        return pa.map_(kt, vt), conv_map
    if t == "struct":
        fields: list[pa.Field] = []
        convs: list[tuple[str, Converter]] = []
        for f in s.get("fields") or ():
            if not isinstance(f, dict) or "field" not in f:
                raise BadSchema("struct field without a name")
            ft, fc = connect_to_arrow(f, depth + 1)
            fields.append(pa.field(str(f["field"]), ft))
            if fc is not None:
                convs.append((str(f["field"]), fc))
        if not convs:
            return pa.struct(fields), None

        def conv_struct(v: Any) -> Any:
            if not isinstance(v, dict):
                raise ValueError("expected an object")
            out = dict(v)
            for k, c in convs:
                x = out.get(k)
                if x is not None:
                    out[k] = c(x)
            return out

        return pa.struct(fields), conv_struct
    raise BadSchema(f"unknown Connect type {t!r}")


class ConnectJsonDecoder:
    def __init__(self) -> None:
        self._types: dict[str, tuple[str, pa.DataType, Converter | None]] = {}

    def _schema(self, schema: Any) -> tuple[str, pa.DataType, Converter | None]:
        text = json.dumps(schema, sort_keys=True, separators=(",", ":"))
        hit = self._types.get(text)
        if hit is None:
            typ, conv = connect_to_arrow(schema)
            sid = "connect:" + hashlib.sha256(text.encode()).hexdigest()[:16]
            hit = self._types[text] = (sid, typ, conv)
        return hit

    def decode(self, batch: RecordBatch) -> Decoded:
        errors: dict[int, str] = {}
        keys: list[str | None] = [None] * len(batch)
        payloads: list[Any] = [None] * len(batch)
        types: dict[str, tuple[pa.DataType, Converter | None]] = {}
        for i, v in enumerate(batch.values):
            if v is None:
                continue
            doc, reason = jsonutil.precheck(v)
            if doc is None:
                errors[i] = reason or "bad value"
                continue
            try:
                env = jsonutil.loads(doc)
            except (ValueError, RecursionError) as exc:
                errors[i] = f"not valid JSON: {str(exc)[:200]}"
                continue
            if not isinstance(env, dict) or set(env) != {"schema", "payload"}:
                errors[i] = (
                    "not a JsonConverter envelope {schema, payload} "
                    "(value.converter.schemas.enable=true)"
                )
                continue
            try:
                sid, typ, conv = self._schema(env["schema"])
                payload = env["payload"]
                if payload is not None and conv is not None:
                    payload = conv(payload)
            except (
                BadSchema,
                ValueError,
                TypeError,
                KeyError,
                IndexError,
                ArithmeticError,
                pa.ArrowException,
            ) as exc:
                errors[i] = f"payload does not match its schema: {str(exc)[:200]}"
                continue
            keys[i] = sid
            payloads[i] = payload
            types[sid] = (typ, conv)
        parts = []
        for key, run_rows in runs(keys, set(errors)):
            rows = run_rows
            all_rows = None if len(rows) == len(batch) else rows
            if key is None:
                parts.append(DecodedPart(all_rows, None, None))
                continue
            typ, _ = types[str(key)]
            try:
                arr = pa.array([payloads[r] for r in rows], typ)
            except (pa.ArrowException, ValueError, TypeError, OverflowError):
                for r in rows:  # find the payloads that do not fit their schema
                    try:
                        pa.array([payloads[r]], typ)
                    except (pa.ArrowException, ValueError, TypeError, OverflowError) as exc:
                        errors[r] = f"payload does not match its schema: {str(exc)[:200]}"
                rows = [r for r in rows if r not in errors]
                if not rows:
                    continue
                all_rows = rows
                arr = pa.array([payloads[r] for r in rows], typ)
            if pa.types.is_struct(typ):
                table = pa.Table.from_struct_array(arr)
                md = {META_ENCODING: b"connect-json"}
            else:
                table = pa.table({"value": arr})
                md = {META_ENCODING: b"connect-json", META_WRAPPED: b"1"}
            parts.append(DecodedPart(all_rows, table.replace_schema_metadata(md), str(key)))
        return Decoded(parts, errors)
