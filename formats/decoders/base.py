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
