"""The value (and key) decoder interface: raw bytes of a batch -> Arrow tables.

A decoder turns the values of a :class:`~s3sink.records.RecordBatch` into Arrow in bulk. The
result is a list of *parts*: contiguous, ascending runs of rows that share one schema, covering
every row that is not in ``errors``. The sink writes the parts in order and may roll files
between two parts whose ``schema_id`` differ, so a part must never reorder rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pyarrow as pa

    from s3sink.records import RecordBatch


#: Arrow schema metadata a decoder may attach to its tables, read by the formats.
#: How the raw value bytes encode the record: ``json``, ``avro``, ``protobuf`` or ``string``.
META_ENCODING = b"s3sink.encoding"
#: ``value[n:]`` of every non-null value is the record in ``META_ENCODING`` (e.g. ``5`` after a
#: Confluent wire-format header), so a format of the same encoding can copy the bytes.
META_RAW_OFFSET = b"s3sink.raw.offset"
#: ``1``: the records are not structs; the table has one column, ``value``.
META_WRAPPED = b"s3sink.wrapped"
#: The Avro schema (JSON) of the part: every row is (or was projected to) this schema.
META_AVRO_SCHEMA = b"avro.schema"
#: The registry id of ``META_AVRO_SCHEMA``: values carrying this id are copied as they are.
META_AVRO_SCHEMA_ID = b"s3sink.avro.schema.id"
#: JSON ``{id: schema}`` of the other writer schemas in the part (their rows are projected).
META_AVRO_WRITERS = b"s3sink.avro.writers"
#: ``1``: the table has no real columns (one of Arrow's null type, ``__row``, that costs no
#: memory and keeps ``take``/``slice`` row counts right); formats use the raw bytes.
META_LAZY = b"s3sink.lazy"


@dataclass(frozen=True, slots=True)
class DecodedPart:
    #: Row indices into the batch, ascending; ``None`` means every row of the batch.
    rows: Sequence[int] | None
    #: The decoded values, one row per entry of ``rows``; ``None`` for raw-bytes decoders.
    table: pa.Table | None
    #: Identifies the schema (registry id, or a fingerprint of an inferred schema).
    schema_id: str | None = None


@dataclass(frozen=True, slots=True)
class Decoded:
    parts: Sequence[DecodedPart]
    #: Row index -> why that record could not be decoded.
    errors: Mapping[int, str] = field(default_factory=dict)


@runtime_checkable
class Decoder(Protocol):
    def decode(self, batch: RecordBatch) -> Decoded: ...


class BytesDecoder:
    """Keeps values as bytes: one part, no table."""

    def decode(self, batch: RecordBatch) -> Decoded:
        return Decoded((DecodedPart(None, None, None),))


def lazy_table(n: int) -> pa.Table:
    """A table of ``n`` rows without data (see :data:`META_LAZY`)."""
    import pyarrow as pa

    t: pa.Table = pa.table({"__row": pa.nulls(n)})
    return t


def meta(table: pa.Table | None, key: bytes) -> bytes | None:
    """A metadata value of a decoded table, or ``None``."""
    if table is None:
        return None
    md = table.schema.metadata
    return None if md is None else md.get(key)
