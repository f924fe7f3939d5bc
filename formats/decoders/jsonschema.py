"""``jsonschema`` (``io.confluent.connect.json.JsonSchemaConverter``): wire-format JSON with a
JSON Schema from the registry.

The schema gives the Arrow types: ``object`` with ``properties`` -> struct (in schema order;
properties not in the schema are dropped), ``object`` with only ``additionalProperties`` ->
``map<string, T>``, ``array`` -> list, ``integer`` -> int64 (``connect.type`` int8/16/32
narrow it), ``number`` -> double (``connect.type: float32`` -> float), ``string`` -> string
(``connect.type: bytes`` -> binary from base64), ``boolean``; ``["null", T]`` and
``oneOf``/``anyOf`` with ``null`` -> nullable ``T``; local ``$ref`` (``#/definitions/...``,
``#/$defs/...``) are followed. Anything else (mixed unions, untyped or recursive parts, tuple
arrays) is kept as its JSON text in a string column. Values are parsed in bulk by pyarrow when
the types allow, else one by one; a value that does not fit its schema is a bad record. The
JSON Schema's validation keywords (``required``, ``minimum``, ...) are not enforced.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pyarrow as pa

from formats.decoders import jsonutil
from formats.decoders.base import META_ENCODING, META_RAW_OFFSET
from formats.decoders.infer import json_text
from formats.decoders.registry import UnknownSchema
from formats.decoders.registry_arrow import Converter, Loaded, RegistryArrowDecoder
from formats.decoders.wire import HEADER

_INTS = {"int8": pa.int8(), "int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64()}
_TEXT: tuple[pa.DataType, Converter | None] = (pa.string(), json_text)


class JsonSchemaToArrow:
    def __init__(self, root: Any) -> None:
        self.root = root

    def _ref(self, ref: str) -> Any:
        if not ref.startswith("#"):
            return None
        node = self.root
        for raw in ref.lstrip("#").strip("/").split("/"):
            if not raw:
                continue
            part = raw.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    def convert(
        self, node: Any, stack: tuple[str, ...] = ()
    ) -> tuple[pa.DataType, Converter | None]:
        if node is True or node == {}:
            return _TEXT
        if not isinstance(node, dict) or len(stack) > jsonutil.MAX_DEPTH:
            return _TEXT
        if "$ref" in node:
            ref = str(node["$ref"])
            target = self._ref(ref)
            if target is None or ref in stack:
                return _TEXT
            return self.convert(target, (*stack, ref))
        for key in ("oneOf", "anyOf"):
            if key in node:
                options = [
                    o for o in node[key] if not (isinstance(o, dict) and o.get("type") == "null")
                ]
                return self.convert(options[0], stack) if len(options) == 1 else _TEXT
        if "allOf" in node:
            subs = node["allOf"]
            if all(
                isinstance(s, dict) and ("properties" in s or s.get("type") == "object")
                for s in subs
            ):
                merged: dict[str, Any] = {"type": "object", "properties": {}}
                for s in subs:
                    merged["properties"].update(s.get("properties", {}))
                return self.convert(merged, stack)
            return _TEXT
        t = node.get("type")
        if isinstance(t, list):
            non_null = [x for x in t if x != "null"]
            if len(non_null) == 1:
                t = non_null[0]
            elif set(non_null) <= {"integer", "number"} and non_null:
                return pa.float64(), None
            else:
                return _TEXT
        if t is None:
            if "properties" in node:
                t = "object"
            elif "enum" in node or "const" in node:
                vals = node.get("enum", [node.get("const")])
                return (pa.string(), None) if all(isinstance(v, str) for v in vals) else _TEXT
            else:
                return _TEXT
        ctype = node.get("connect.type")
        if t == "object":
            props = node.get("properties")
            if isinstance(props, dict) and props:
                fields: list[pa.Field] = []
                convs: list[tuple[str, Converter]] = []
                for name, sub in props.items():
                    ft, fc = self.convert(sub, stack)
                    fields.append(pa.field(name, ft))
                    if fc is not None:
                        convs.append((name, fc))
                return pa.struct(fields), _struct_converter([f.name for f in fields], convs)
            extra = node.get("additionalProperties")
            if isinstance(extra, dict) and extra:
                vt, vc = self.convert(extra, stack)
                return pa.map_(pa.string(), vt), lambda v: [
                    (k, x if vc is None or x is None else vc(x)) for k, x in v.items()
                ]
            return _TEXT
        if t == "array":
            items = node.get("items")
            if not isinstance(items, dict):
                return _TEXT
            it, ic = self.convert(items, stack)
            if ic is None:
                return pa.list_(it), None
            c = ic
            return pa.list_(it), lambda v: [None if x is None else c(x) for x in v]
        if t == "string":
            if ctype == "bytes":
                return pa.binary(), lambda v: base64.b64decode(v, validate=True)
            return pa.string(), None
        if t == "integer":
            return _INTS.get(str(ctype), pa.int64()), None
        if t == "number":
            return (pa.float32() if ctype in ("float32", "float") else pa.float64()), None
        if t == "boolean":
            return pa.bool_(), None
        if t == "null":
            return pa.null(), None
        return _TEXT


def _struct_converter(names: list[str], convs: list[tuple[str, Converter]]) -> Converter | None:
    if not convs:
        return None

    def convert(v: Any) -> Any:
        if not isinstance(v, dict):
            raise ValueError("expected an object")
        out = {k: v.get(k) for k in names}
        for k, c in convs:
            x = out.get(k)
            if x is not None:
                out[k] = c(x)
        return out

    return convert


class JsonSchemaDecoder(RegistryArrowDecoder):
    kind = "JSON"

    def load(self, schema_id: int) -> Loaded:
        rs = self._registry.schema(schema_id)
        if rs.schema_type != "JSON":
            raise UnknownSchema(f"schema {schema_id} is {rs.schema_type}, not JSON")
        try:
            root = json.loads(rs.schema_str)
        except ValueError as exc:
            raise UnknownSchema(f"schema {schema_id} is not valid JSON: {exc}") from None
        typ, conv = JsonSchemaToArrow(root).convert(root)
        wrapped = not pa.types.is_struct(typ) or typ.num_fields == 0
        schema = pa.schema([pa.field("value", typ)]) if wrapped else pa.schema(list(typ))
        bulk_ok = conv is None and not wrapped and _bulk_types(typ)
        md = {META_ENCODING: b"json", META_RAW_OFFSET: str(HEADER).encode()}

        def parse(values: list[bytes]) -> tuple[pa.Table, dict[int, str]]:
            return _parse(values, schema, typ, conv, wrapped, bulk_ok)

        return Loaded(schema_id, schema, wrapped, parse, md)


def _bulk_types(t: pa.DataType) -> bool:
    """Types pyarrow's JSON reader produces from an explicit schema."""
    if pa.types.is_struct(t):
        return all(_bulk_types(f.type) for f in t)
    if pa.types.is_list(t):
        return _bulk_types(t.value_type)
    return bool(
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_string(t)
        or pa.types.is_boolean(t)
        or pa.types.is_null(t)
    )


def _parse(
    values: list[bytes],
    schema: pa.Schema,
    typ: pa.DataType,
    conv: Converter | None,
    wrapped: bool,
    bulk_ok: bool,
) -> tuple[pa.Table, dict[int, str]]:
    bad: dict[int, str] = {}
    docs: list[bytes] = []
    index: list[int] = []
    for j, v in enumerate(values):
        doc, reason = jsonutil.precheck(v[HEADER:], object_only=not wrapped)
        if doc is None:
            bad[j] = reason or "bad value"
        else:
            docs.append(doc)
            index.append(j)
    if bulk_ok and docs:
        t = jsonutil.bulk(docs, schema, "ignore")
        if t is not None:
            return t.select(schema.names), bad
    data: list[Any] = []
    for j, d in zip(index, docs, strict=True):
        try:
            obj = jsonutil.loads(d)
            if conv is not None and obj is not None:
                obj = conv(obj)
            if not wrapped and not isinstance(obj, dict):
                raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
        except (ValueError, TypeError, RecursionError, ArithmeticError) as exc:
            bad[j] = f"does not match its JSON Schema: {str(exc)[:200]}"
            continue
        data.append((j, obj))
    arr_type = typ if not wrapped else schema.field("value").type
    rows = [obj for _, obj in data]
    try:
        arr = pa.array(rows, arr_type)
    except (pa.ArrowException, ValueError, TypeError, OverflowError):
        keep = []
        for j, obj in data:
            try:
                pa.array([obj], arr_type)
                keep.append(obj)
            except (pa.ArrowException, ValueError, TypeError, OverflowError) as exc:
                bad[j] = f"does not match its JSON Schema: {str(exc)[:200]}"
        arr = pa.array(keep, arr_type)
    if wrapped:
        return pa.table({"value": arr}), bad
    return pa.Table.from_struct_array(arr), bad
