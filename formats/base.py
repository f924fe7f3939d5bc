"""The format interfaces: a :class:`Format` opens :class:`RecordWriter` s that encode batches.

A format is constructed once from the :class:`~s3sink.config.SinkConfig`. For every output file
the sink calls :meth:`Format.open` with the stream the bytes go to (a streaming upload), then
:meth:`RecordWriter.write` once per batch, then :meth:`RecordWriter.close`, which returns the
file's statistics. Writers work on whole batches: the raw values of a
:class:`~s3sink.records.RecordBatch` and, for formats that need structure, the Arrow table a
decoder made of them (rows aligned with the batch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pyarrow as pa

    from s3sink.config import SinkConfig
    from s3sink.records import RecordBatch


@runtime_checkable
class OutputStream(Protocol):
    """Where a writer's bytes go (a streaming upload). Writers may call ``write`` often."""

    def write(self, data: bytes | memoryview, /) -> object: ...


@dataclass(frozen=True, slots=True)
class FileStats:
    """What :meth:`RecordWriter.close` reports about the file it wrote."""

    records: int
    bytes: int


@runtime_checkable
class RecordWriter(Protocol):
    def write(self, batch: RecordBatch, values: pa.Table | None) -> None:
        """Encode ``batch`` (``values`` is its decoded table when the format needs one)."""
        ...

    def bytes_written(self) -> int:
        """Encoded bytes so far (handed to the stream or still buffered), for ``file.max.bytes``."""
        ...

    def buffered_bytes(self) -> int:
        """Bytes held in memory by this writer and not yet handed to the stream."""
        ...

    def close(self) -> FileStats:
        """Flush everything to the stream; the stream is completed by the caller."""
        ...


@runtime_checkable
class Format(Protocol):
    #: Short name in ``format.class`` and in the registry.
    name: ClassVar[str]

    def __init__(self, config: SinkConfig) -> None: ...

    def extension(self) -> str:
        """File name suffix including the dot and any codec, e.g. ``.json.gz``."""
        ...

    def needs_values(self) -> bool:
        """Whether :meth:`RecordWriter.write` needs the decoded values table."""
        ...

    def open(self, out: OutputStream) -> RecordWriter: ...
