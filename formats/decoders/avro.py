"""``avro`` (``io.confluent.connect.avro.AvroConverter``): Confluent wire-format Avro.

Each value is ``0x00``, a 4-byte schema id, the Avro body. Writer schemas come from the Schema
Registry by id (cached); ``schema.compatibility`` decides which schema each record is written
with (:mod:`formats.decoders.compat`), and fastavro's schema resolution projects the records
that need it. Every record is decoded, so a truncated or corrupt body, trailing bytes, a wrong
magic byte or an unknown schema id is a bad record with a reason; it never raises.

A batch of one schema id, written with the schema the file takes, is read in bulk: by the
native reader (:mod:`formats.decoders.avrofast`: validation, or decoding straight into Arrow
buffers) when the schema compiles to it, else by fastavro from one stream; a batch with a bad
record goes record by record, which says which one and why.

The tables carry the part's Avro schema and id (:data:`~formats.decoders.base.META_AVRO_SCHEMA`)
so the ``avro`` format copies record bodies instead of re-encoding them. When nothing needs
columns (``avro`` format and a partitioner that does not read fields) the decoder validates
only and returns column-less tables (``META_LAZY``).
"""

from __future__ import annotations

import io
import json
import operator
from dataclasses import dataclass
from itertools import accumulate
from typing import TYPE_CHECKING, Any, cast

import fastavro
import pyarrow as pa

from formats.decoders.avro_arrow import Converter, avro_to_arrow
from formats.decoders.avrofast import NativeSchema, compile_schema
from formats.decoders.base import (
    META_AVRO_SCHEMA,
    META_AVRO_SCHEMA_ID,
    META_AVRO_WRITERS,
    META_ENCODING,
    META_LAZY,
    META_RAW_OFFSET,
    META_WRAPPED,
    Decoded,
    DecodedPart,
    lazy_table,
)
from formats.decoders.compat import CompatibilityTracker, Version
from formats.decoders.registry import Registry, UnknownSchema
from formats.decoders.wire import HEADER, runs, schema_ids

if TYPE_CHECKING:
    from s3sink.records import RecordBatch


@dataclass(slots=True)
class AvroSchema:
    schema_id: int
    text: str
    parsed: Any
    arrow: pa.DataType | None = None
    convert: Converter | None = None
    is_record: bool = False
    wire: WireBlock | None = None
    #: The native reader of the schema (:mod:`formats.decoders.avrofast`), ``None``: fastavro.
    native: NativeSchema | None = None


_BODY = operator.itemgetter("body")
_WIRE_NAME = "s3sink_wire_value"


@dataclass(frozen=True, slots=True)
class WireBlock:
    """Confluent wire-format values read as the wrapper record ``{magic: fixed(1), id:
    fixed(4), body: <schema>}`` (parsed), and a reader schema that skips every field."""

    schema: Any
    skip: Any

    @classmethod
    def of(cls, schema: Any) -> WireBlock | None:
        wrapper = {
            "type": "record",
            "name": _WIRE_NAME,
            "fields": [
                {
                    "name": "magic",
                    "type": {"type": "fixed", "name": "s3sink_wire_magic", "size": 1},
                },
                {"name": "id", "type": {"type": "fixed", "name": "s3sink_wire_id", "size": 4}},
                {"name": "body", "type": schema},
            ],
        }
        try:
            parsed = fastavro.parse_schema(wrapper)
        except Exception:  # a name clash or a schema fastavro cannot embed: no bulk path
            return None
        skip = fastavro.parse_schema({"type": "record", "name": _WIRE_NAME, "fields": []})
        return cls(parsed, skip)


class AvroDecoder:
    def __init__(
        self,
        registry: Registry,
        compatibility: str = "NONE",
        *,
        materialize: bool = True,
        subject_suffix: str = "-value",
    ) -> None:
        self._registry = registry
        self._tracker = CompatibilityTracker(compatibility)
        self._materialize = materialize
        self._suffix = subject_suffix
        self._schemas: dict[int, AvroSchema] = {}

    def _schema(self, schema_id: int) -> AvroSchema:
        s = self._schemas.get(schema_id)
        if s is not None:
            return s
        rs = self._registry.schema(schema_id)
        if rs.schema_type != "AVRO":
            raise UnknownSchema(f"schema {schema_id} is {rs.schema_type}, not AVRO")
        try:
            raw = json.loads(rs.schema_str)
            named: dict[str, Any] = {}
            for ref in rs.references:
                ref_schema = self._registry.reference(ref)
                fastavro.parse_schema(json.loads(ref_schema.schema_str), named_schemas=named)
            parsed = fastavro.parse_schema(raw, named_schemas=named)
        except (ValueError, TypeError, KeyError) as exc:
            raise UnknownSchema(f"schema {schema_id} is not a valid Avro schema: {exc}") from None
        s = AvroSchema(schema_id, rs.schema_str, parsed)
        if not rs.references:
            s.wire = WireBlock.of(raw)
            s.native = compile_schema(parsed)
        if self._materialize:
            arrow, conv = avro_to_arrow(parsed)
            s.arrow, s.convert = arrow, conv
        s.is_record = isinstance(parsed, dict) and parsed.get("type") in ("record", "error")
        self._schemas[schema_id] = s
        return s

    def decode(self, batch: RecordBatch) -> Decoded:
        bulk = self._decode_uniform(batch)
        if bulk is not None:
            return bulk
        values = batch.values
        ids, errors = schema_ids(values)
        schemas: dict[int, AvroSchema] = {}
        for sid in {i for i in ids if i is not None}:
            try:
                schemas[sid] = self._schema(sid)
            except UnknownSchema as exc:
                for row, rid in enumerate(ids):
                    if rid == sid:
                        errors[row] = str(exc)
        subject = batch.topic + self._suffix
        targets: list[int | None] = [None] * len(values)
        records: list[Any] = [None] * len(values)
        for i, row_id in enumerate(ids):
            if row_id is None or i in errors:
                continue
            sid = row_id
            writer = schemas[sid]
            target = self._target(batch, sid, subject)
            reader = None if target == sid else schemas.get(target) or self._schema(target)
            body = values[i][HEADER:]  # type: ignore[index]
            rec, reason = _read(body, writer.parsed, None if reader is None else reader.parsed)
            if reason is not None and reader is not None:
                # not projectable after all: keep the record's own schema (rolls the file)
                rec, reason = _read(body, writer.parsed, None)
                target = sid
            if reason is not None:
                errors[i] = f"cannot decode Avro (schema {sid}): {reason}"
                continue
            if target != sid:
                schemas[target] = self._schema(target)
            targets[i] = target
            records[i] = rec
        parts = []
        for key, rows in runs(targets, set(errors)):
            parts.append(self._part(batch, key, rows, records, ids, schemas))
        return Decoded(parts, errors)

    def _decode_uniform(self, batch: RecordBatch) -> Decoded | None:
        """The common case in bulk: every value framed with the same schema id, written with
        the schema the file takes (no projection). The values are read back to back from one
        stream over the joined batch as a wrapper record ``{magic: fixed(1), id: fixed(4),
        body: <schema>}`` (no slicing, one stream, the schema parsed once); when nothing needs
        columns a reader schema without fields skips every field instead of building records.
        Before that, the native reader (when the schema compiles to it) validates the bodies, or
        decodes them into Arrow arrays; a batch it does not take goes to fastavro.
        Every record must end exactly where its value ends: a truncated, corrupt or over-long
        value makes the batch go the record-by-record way, which says which one is bad.
        ``None``: not that case."""
        if not len(batch) or None in batch.values:
            return None
        values = cast("list[bytes]", batch.values)
        n = len(values)
        header = min(values)[:HEADER]
        if len(header) != HEADER or header[0] != 0 or max(values)[:HEADER] != header:
            return None
        sid = int.from_bytes(header[1:], "big")
        try:
            schema = self._schema(sid)
            if self._target(batch, sid, batch.topic + self._suffix) != sid:
                return None
        except UnknownSchema:
            return None
        native = schema.native
        if native is not None:
            if not self._materialize:
                status = native.validate_values(values, HEADER)
                if status.count(0) != n:
                    return None  # a bad record: the record-by-record way says which and why
                part = self._part(batch, sid, list(range(n)), [None] * n, [sid] * n, {sid: schema})
                return Decoded((part,), {})
            arr = native.decode_values(values, HEADER)
            if arr is not None:
                part = self._part(
                    batch, sid, list(range(n)), [], [sid] * n, {sid: schema}, decoded=arr
                )
                return Decoded((part,), {})
            # a bad record, or a value fastavro reads differently: fastavro reads the batch
        wire = schema.wire
        if wire is None:
            return None
        stream = io.BytesIO(b"".join(values))
        read, tell = fastavro.schemaless_reader, stream.tell
        reader = None if self._materialize else wire.skip
        ends: list[int] = []
        records: list[Any] = []
        try:
            for _ in range(n):
                records.append(
                    read(
                        stream,
                        wire.schema,
                        reader,
                        return_record_name=True,
                        return_record_name_override=True,
                    )
                )
                ends.append(tell())
        except Exception:  # fastavro raises many kinds on corrupt input
            return None
        if ends != list(accumulate(map(len, values))):
            return None
        bodies = list(map(_BODY, records)) if self._materialize else [None] * n
        part = self._part(batch, sid, list(range(n)), bodies, [sid] * n, {sid: schema})
        return Decoded((part,), {})

    def _target(self, batch: RecordBatch, sid: int, subject: str) -> int:
        if self._tracker.mode == "NONE":
            return sid
        version = self._registry.version(sid, subject)
        return self._tracker.target(batch.topic, batch.partition, Version(sid, version))

    def _part(
        self,
        batch: RecordBatch,
        key: object,
        rows: list[int],
        records: list[Any],
        ids: list[int | None],
        schemas: dict[int, AvroSchema],
        decoded: pa.Array | None = None,
    ) -> DecodedPart:
        """``decoded``: the rows already as an Arrow array of the target's type (native
        path), else ``records`` holds fastavro's records."""
        all_rows = rows if len(rows) != len(batch) else None
        if key is None:  # tombstones only, before any schema
            return DecodedPart(all_rows, None, None)
        target = schemas[int(str(key))]
        present = {ids[r] for r in rows}
        writers = {
            str(w): schemas[w].text for w in present if w is not None and w != target.schema_id
        }
        md = {
            META_ENCODING: b"avro",
            META_RAW_OFFSET: str(HEADER).encode(),
            META_AVRO_SCHEMA: target.text.encode(),
            META_AVRO_SCHEMA_ID: str(target.schema_id).encode(),
        }
        if writers:
            md[META_AVRO_WRITERS] = json.dumps(writers).encode()
        if not self._materialize or target.arrow is None:
            md[META_LAZY] = b"1"
            table = lazy_table(len(rows))
            return DecodedPart(all_rows, table.replace_schema_metadata(md), str(target.schema_id))
        if decoded is not None:
            arr = decoded
        else:
            data = [records[r] for r in rows]
            if target.convert is not None:
                conv = target.convert
                data = [None if d is None else conv(d) for d in data]
            arr = pa.array(data, target.arrow)
        if target.is_record:
            table = pa.Table.from_struct_array(arr)
        else:
            md[META_WRAPPED] = b"1"
            table = pa.table({"value": arr})
        return DecodedPart(all_rows, table.replace_schema_metadata(md), str(target.schema_id))


def _read(body: bytes, writer: Any, reader: Any) -> tuple[Any, str | None]:
    bio = io.BytesIO(body)
    try:
        rec = fastavro.schemaless_reader(
            bio, writer, reader, return_record_name=True, return_record_name_override=True
        )
    except Exception as exc:  # fastavro raises many kinds on corrupt input
        return None, f"{type(exc).__name__}: {exc}"[:300]
    if bio.tell() != len(body):
        return None, f"{len(body) - bio.tell()} bytes after the record"
    return rec, None
