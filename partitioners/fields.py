"""Reading (nested) fields out of a decoded values table."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc


def get_field(table: pa.Table, name: str) -> pa.Array | None:
    """The column ``name`` (dots for nested struct fields; an exact top-level match wins), as
    one array, or ``None`` when the schema has no such field."""
    if name in table.schema.names:
        return _combine(table.column(name))
    head, *rest = name.split(".")
    if not rest or head not in table.schema.names:
        return None
    col = _combine(table.column(head))
    for part in rest:
        t = col.type
        if not pa.types.is_struct(t) or t.get_field_index(part) < 0:
            return None
        col = pc.struct_field(col, part)
    return col


def _combine(col: pa.ChunkedArray) -> pa.Array:
    if col.num_chunks == 1:
        return col.chunk(0)
    if col.num_chunks == 0:
        return pa.array([], col.type)
    return col.combine_chunks()
