"""Schema inference for schemaless JSON: stable, widening only, never failing.

The rules (documented in the README, tested in ``tests/test_decoders_json.py``):

* Per topic, one inferred schema that only widens. Every part the decoder returns has exactly
  that schema (fields absent from a record are null), so the same data gives the same schema in
  every file. A new field widens the schema (a new schema id: the sink rolls the file); it is
  never dropped. Field order is the order of first appearance.
* Types: ``true``/``false`` boolean, integers ``int64`` (beyond 64 bits: ``double``), other
  numbers ``double``, strings ``string`` (ISO timestamps stay strings: text is kept as written),
  objects structs, arrays lists, a field seen only as ``null`` has Arrow's null type (written as
  a nullable string by Parquet and Avro).
* Conflicts widen: integer and double make ``double``; any other mix (string and number, object
  and string, array and object, boolean and number, ...) makes the field a ``string`` holding
  each value's text: strings as they are, numbers and booleans as JSON literals, objects and
  arrays as compact JSON. Rows already in the batch are converted the same way.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def merge_types(a: pa.DataType, b: pa.DataType) -> pa.DataType:
    if a.equals(b):
        return a
    if pa.types.is_null(a):
        return b
    if pa.types.is_null(b):
        return a
    if _is_number(a) and _is_number(b):
        return pa.float64()
    if pa.types.is_struct(a) and pa.types.is_struct(b):
        return pa.struct(merge_fields(list(a), list(b)))
    if pa.types.is_list(a) and pa.types.is_list(b):
        return pa.list_(merge_types(a.value_type, b.value_type))
    return pa.string()


def merge_fields(a: list[pa.Field], b: list[pa.Field]) -> list[pa.Field]:
    out = {f.name: f.type for f in a}
    for f in b:
        out[f.name] = merge_types(out[f.name], f.type) if f.name in out else f.type
    return [pa.field(name, t) for name, t in out.items()]


def merge_schemas(a: pa.Schema | None, b: pa.Schema) -> pa.Schema:
    if a is None:
        return pa.schema([pa.field(f.name, _plain(f.type)) for f in b])
    return pa.schema(merge_fields(list(a), [pa.field(f.name, _plain(f.type)) for f in b]))


def _plain(t: pa.DataType) -> pa.DataType:
    """Types as inference spells them (pyarrow's reader may say timestamp: we say string)."""
    if pa.types.is_timestamp(t) or pa.types.is_date(t) or pa.types.is_time(t):
        return pa.string()
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _plain(f.type)) for f in t])
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.list_(_plain(t.value_type))
    if pa.types.is_integer(t):
        return pa.int64()
    if pa.types.is_floating(t):
        return pa.float64()
    if pa.types.is_large_string(t):
        return pa.string()
    return t


def has_temporal(t: pa.DataType | pa.Schema) -> bool:
    if isinstance(t, pa.Schema):
        return any(has_temporal(f.type) for f in t)
    if pa.types.is_timestamp(t) or pa.types.is_date(t) or pa.types.is_time(t):
        return True
    if pa.types.is_struct(t):
        return any(has_temporal(f.type) for f in t)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return has_temporal(t.value_type)
    return False


def _is_number(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t))


# -- Python values (the fallback path) -----------------------------------------------------


def infer_value(v: Any) -> pa.DataType:
    if v is None:
        return pa.null()
    if isinstance(v, bool):
        return pa.bool_()
    if isinstance(v, int):
        return pa.int64() if INT64_MIN <= v <= INT64_MAX else pa.float64()
    if isinstance(v, float):
        return pa.float64()
    if isinstance(v, str):
        return pa.string()
    if isinstance(v, list):
        t: pa.DataType = pa.null()
        for x in v:
            t = merge_types(t, infer_value(x))
        return pa.list_(t)
    if isinstance(v, dict):
        fields: list[pa.Field] = []
        for k, x in v.items():
            fields = merge_fields(fields, [pa.field(k, infer_value(x))])
        return pa.struct(fields)
    return pa.string()


def infer_objects(objs: list[dict[str, Any]]) -> pa.Schema:
    fields: list[pa.Field] = []
    for o in objs:
        fields = merge_fields(fields, list(infer_value(o)))
    return pa.schema(fields)


def json_text(v: Any) -> str:
    """A value's text in a ``string`` column that had a type conflict."""
    if isinstance(v, str):
        return v
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def coerce(v: Any, t: pa.DataType) -> Any:
    """A Python value shaped for type ``t`` (an inferred, widened type)."""
    if v is None:
        return None
    if pa.types.is_string(t):
        return v if isinstance(v, str) else json_text(v)
    if pa.types.is_floating(t):
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
    if pa.types.is_struct(t):
        if not isinstance(v, dict):
            return None
        return {f.name: coerce(v.get(f.name), f.type) for f in t}
    if pa.types.is_list(t):
        if not isinstance(v, list):
            return None
        vt = t.value_type
        return [coerce(x, vt) for x in v]
    if pa.types.is_null(t):
        return None
    return v


def table_from_objects(objs: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    rows = [{f.name: coerce(o.get(f.name), f.type) for f in schema} for o in objs]
    return pa.Table.from_pylist(rows, schema=schema)


# -- Arrow values (the bulk path) ------------------------------------------------------------


def conform_table(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` (parsed from a batch) with exactly ``schema``: missing fields null, widened
    types converted by the rules above."""
    n = table.num_rows
    names = table.schema.names
    cols = []
    for f in schema:
        if f.name in names:
            col = table.column(f.name)
            arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
            cols.append(conform_array(arr, f.type))
        else:
            cols.append(pa.nulls(n, f.type))
    return pa.Table.from_arrays(cols, schema=schema)


def conform_array(arr: pa.Array, t: pa.DataType) -> pa.Array:
    src = arr.type
    if src.equals(t):
        return arr
    if pa.types.is_null(src):
        return pa.nulls(len(arr), t)
    if pa.types.is_struct(t) and pa.types.is_struct(src):
        children = []
        for f in t:
            idx = src.get_field_index(f.name)
            if idx < 0:
                children.append(pa.nulls(len(arr), f.type))
            else:
                children.append(conform_array(pc.struct_field(arr, [idx]), f.type))
        mask = arr.is_null() if arr.null_count else None
        return pa.StructArray.from_arrays(children, fields=list(t), mask=mask)
    if pa.types.is_list(t) and (pa.types.is_list(src) or pa.types.is_large_list(src)):
        if pa.types.is_large_list(src):
            arr = arr.cast(pa.list_(src.value_type))
        # .values ignores a slice, .offsets index into it: both stay consistent
        values = conform_array(arr.values, t.value_type)
        offsets = arr.offsets
        mask = arr.is_null() if arr.null_count else None
        return pa.ListArray.from_arrays(offsets, values, type=t, mask=mask)
    if pa.types.is_string(t):
        if pa.types.is_string(src) or pa.types.is_large_string(src):
            return arr.cast(pa.string())
        if pa.types.is_timestamp(src) or pa.types.is_date(src):
            raise ValueError("temporal types must be re-parsed as text")  # caught by caller
        if pa.types.is_integer(src) or pa.types.is_boolean(src):
            return arr.cast(pa.string())
        return pa.array([None if v is None else json_text(v) for v in arr.to_pylist()], pa.string())
    try:
        return arr.cast(t)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.array([coerce(v, t) for v in arr.to_pylist()], t)
