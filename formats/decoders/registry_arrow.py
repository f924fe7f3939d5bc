"""The common shape of the JSON Schema and Protobuf decoders: wire format, registry schemas by
id, ``schema.compatibility`` projection in Arrow, parts in row order.

A subclass loads a schema id into a :class:`Loaded`: the Arrow schema of its tables and a
``parse`` that turns whole values (header included) into a table plus the rows it rejected.
Records a compatibility mode projects onto the partition's current schema are parsed with their
own schema, then projected (:func:`~formats.decoders.compat.project_table`); if that fails they
keep their own schema, which rolls the file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from formats.decoders.base import META_WRAPPED, Decoded, DecodedPart
from formats.decoders.compat import CompatibilityTracker, Version, project_table
from formats.decoders.registry import Registry, UnknownSchema
from formats.decoders.wire import runs, schema_ids

if TYPE_CHECKING:
    from s3sink.records import RecordBatch

Parse = Callable[[list[bytes]], tuple[pa.Table, dict[int, str]]]
Converter = Callable[[Any], Any]


@dataclass(frozen=True)
class Loaded:
    schema_id: int
    #: Schema of the tables (``value`` only when ``wrapped``), without metadata.
    schema: pa.Schema
    wrapped: bool
    parse: Parse
    #: Metadata for the tables (encoding, raw offset).
    metadata: dict[bytes, bytes]


class RegistryArrowDecoder:
    kind = ""

    def __init__(
        self, registry: Registry, compatibility: str = "NONE", subject_suffix: str = "-value"
    ) -> None:
        self._registry = registry
        self._tracker = CompatibilityTracker(compatibility)
        self._suffix = subject_suffix
        self._loaded: dict[int, Loaded] = {}

    def load(self, schema_id: int) -> Loaded:
        raise NotImplementedError

    def _get(self, schema_id: int) -> Loaded:
        hit = self._loaded.get(schema_id)
        if hit is None:
            hit = self._loaded[schema_id] = self.load(schema_id)
        return hit

    def decode(self, batch: RecordBatch) -> Decoded:
        values = batch.values
        ids, errors = schema_ids(values)
        for sid in {i for i in ids if i is not None}:
            try:
                self._get(sid)
            except UnknownSchema as exc:
                for row, rid in enumerate(ids):
                    if rid == sid:
                        errors[row] = str(exc)
        subject = batch.topic + self._suffix
        targets: list[int | None] = [None] * len(values)
        for i, row_id in enumerate(ids):
            if row_id is not None and i not in errors:
                targets[i] = self._target(batch, row_id, subject)
        # parse each writer schema's rows once
        tables: dict[int, tuple[pa.Table, dict[int, int]]] = {}
        by_writer: dict[int, list[int]] = {}
        for i, row_id in enumerate(ids):
            if row_id is not None and i not in errors:
                by_writer.setdefault(row_id, []).append(i)
        for sid, rows in by_writer.items():
            table, bad = self._loaded[sid].parse([values[r] for r in rows])  # type: ignore[misc]
            for j, reason in bad.items():
                errors[rows[j]] = reason
            good = [r for j, r in enumerate(rows) if j not in bad]
            tables[sid] = (table, {r: k for k, r in enumerate(good)})
        # project onto targets; rows that do not project keep their own schema
        projected: dict[tuple[int, int], pa.Table] = {}
        for _ in range(len(by_writer) + 1):
            failed = False
            for i, t in enumerate(targets):
                w = ids[i]
                if t is None or w is None or i in errors or t == w or (w, t) in projected:
                    continue
                out = project_table(tables[w][0], self._loaded[t].schema)
                if out is None:
                    for r in by_writer[w]:
                        if targets[r] == t:
                            targets[r] = w
                    failed = True
                else:
                    projected[(w, t)] = out
            if not failed:
                break
        parts = []
        for key, rows in runs(targets, set(errors)):
            all_rows = None if len(rows) == len(batch) else rows
            if key is None:
                parts.append(DecodedPart(all_rows, None, None))
                continue
            target = self._loaded[int(str(key))]
            parts.append(
                DecodedPart(
                    all_rows,
                    self._assemble(target, rows, ids, tables, projected),
                    str(target.schema_id),
                )
            )
        return Decoded(parts, errors)

    def _target(self, batch: RecordBatch, sid: int, subject: str) -> int:
        if self._tracker.mode == "NONE":
            return sid
        version = self._registry.version(sid, subject)
        return self._tracker.target(batch.topic, batch.partition, Version(sid, version))

    def _assemble(
        self,
        target: Loaded,
        rows: list[int],
        ids: list[int | None],
        tables: dict[int, tuple[pa.Table, dict[int, int]]],
        projected: dict[tuple[int, int], pa.Table],
    ) -> pa.Table:
        schema = target.schema
        pieces: list[pa.Table] = []
        offsets: dict[int, int] = {}
        base = 0
        for sid in dict.fromkeys(ids[r] for r in rows if ids[r] is not None):
            assert sid is not None
            t = tables[sid][0] if sid == target.schema_id else projected[(sid, target.schema_id)]
            pieces.append(t.cast(schema) if not t.schema.equals(schema) else t)
            offsets[sid] = base
            base += t.num_rows
        pieces.append(pa.table({f.name: pa.nulls(1, f.type) for f in schema}, schema=schema))
        null_row = base
        take: list[int] = []
        for r in rows:
            sid = ids[r]
            take.append(null_row if sid is None else offsets[sid] + tables[sid][1][r])
        table = pa.concat_tables(pieces).take(pa.array(take, pa.int64()))
        md = dict(target.metadata)
        if target.wrapped:
            md[META_WRAPPED] = b"1"
        return table.replace_schema_metadata(md)
