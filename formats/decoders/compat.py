"""``schema.compatibility``: which schema a record is written with, per Kafka partition.

As the Confluent S3 sink defines the modes (versions are the registry's subject versions of
``<topic>-value``, or schema ids when the registry lists none):

* ``NONE``: every record keeps its own schema; each change of schema between consecutive
  records rolls the file. Interleaved versions (v1, v2, v1, v2, ...) roll at every change,
  so they make many small files: use BACKWARD, FORWARD or FULL for such topics.
* ``BACKWARD`` and ``FULL``: the partition keeps the newest schema seen so far. A record of a
  newer version switches to it (the file rolls once); a record of an older version is
  *projected* onto the current one (read with it as the reader schema: new fields get their
  defaults, removed ones are dropped) and written into the same file. Interleaved v1/v2 thus
  roll once, at the first v2.
* ``FORWARD``: the mirror image: the partition keeps the oldest schema seen; newer records are
  projected onto it, an older one switches (and rolls).

A record that cannot be projected (the schemas are not compatible after all) keeps its own
schema, which rolls the file; the current schema does not change.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

MODES = ("NONE", "BACKWARD", "FORWARD", "FULL")


@dataclass(frozen=True, slots=True)
class Version:
    """Orders schemas: by registry version when both are known, else by schema id."""

    schema_id: int
    version: int | None = None

    def newer_than(self, other: Version) -> bool:
        if self.version is not None and other.version is not None and self.version != other.version:
            return self.version > other.version
        return self.schema_id > other.schema_id


class CompatibilityTracker:
    def __init__(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(mode)
        self.mode = mode
        self._current: dict[tuple[str, int], Version] = {}
        self._lock = threading.Lock()

    def current(self, topic: str, partition: int) -> Version | None:
        with self._lock:
            return self._current.get((topic, partition))

    def target(self, topic: str, partition: int, v: Version) -> int:
        """The schema id to write a record of schema ``v`` with (``v.schema_id`` or the
        partition's current schema, onto which the record is then projected)."""
        key = (topic, partition)
        with self._lock:
            cur = self._current.get(key)
            if self.mode == "NONE" or cur is None or cur.schema_id == v.schema_id:
                self._current[key] = v
                return v.schema_id
            switch = v.newer_than(cur) if self.mode in ("BACKWARD", "FULL") else cur.newer_than(v)
            if switch:
                self._current[key] = v
                return v.schema_id
            return cur.schema_id


def project_table(table: pa.Table, schema: pa.Schema) -> pa.Table | None:
    """``table`` projected onto ``schema`` (missing fields null, extra ones dropped, types cast
    safely), or ``None`` when a value does not fit."""
    import pyarrow as pa

    n = table.num_rows
    cols = []
    names = table.schema.names
    try:
        for f in schema:
            if f.name in names:
                col = table.column(f.name)
                cols.append(col if col.type.equals(f.type) else _project_array(col, f.type))
            else:
                cols.append(pa.nulls(n, f.type))
        return pa.Table.from_arrays(cols, schema=pa.schema(list(schema)))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, ValueError):
        return None


def _project_array(col: pa.ChunkedArray | pa.Array, t: pa.DataType) -> pa.Array:
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    src = arr.type
    if pa.types.is_struct(t) and pa.types.is_struct(src):
        children = []
        for f in t:
            idx = src.get_field_index(f.name)
            if idx < 0:
                children.append(pa.nulls(len(arr), f.type))
            else:
                child = pc.struct_field(arr, [idx])
                children.append(
                    child if child.type.equals(f.type) else _project_array(child, f.type)
                )
        mask = arr.is_null() if arr.null_count else None
        return pa.StructArray.from_arrays(children, fields=list(t), mask=mask)
    if pa.types.is_list(t) and pa.types.is_list(src):
        values = _project_array(arr.values, t.value_type)
        mask = arr.is_null() if arr.null_count else None
        return pa.ListArray.from_arrays(arr.offsets, values, type=t, mask=mask)
    out: pa.Array = arr.cast(t)
    return out
