"""``bytearray``: raw values joined by ``format.bytearray.separator``."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from formats.base import FileStats, OutputStream, RecordWriter
from formats.compression import EXTENSIONS, Compressor, sync_every

if TYPE_CHECKING:
    import pyarrow as pa

    from s3sink.config import SinkConfig
    from s3sink.records import RecordBatch


class ByteArrayFormat:
    name: ClassVar[str] = "bytearray"

    def __init__(self, config: SinkConfig) -> None:
        self._codec = config.s3_compression_type
        self._level = config.s3_compression_level
        self._sep = config.format_bytearray_separator
        self._ext = config.format_bytearray_extension
        self._sync = sync_every(config.file_max_bytes)

    def extension(self) -> str:
        return self._ext + EXTENSIONS[self._codec]

    def needs_values(self) -> bool:
        return False

    def open(self, out: OutputStream) -> RecordWriter:
        return ByteArrayWriter(Compressor(out, self._codec, self._level, self._sync), self._sep)


class ByteArrayWriter:
    def __init__(self, out: Compressor, sep: bytes) -> None:
        self._out = out
        self._sep = sep
        self._records = 0
        self._raw = 0

    def write(self, batch: RecordBatch, values: pa.Table | None) -> None:
        vals = [b"" if v is None else v for v in batch.values]
        body = self._sep.join(vals) + self._sep
        self._out.write(body)
        self._records += len(vals)
        self._raw += len(body)

    def bytes_written(self) -> int:
        return self._out.written if self._out.codec != "none" else self._raw

    def buffered_bytes(self) -> int:
        return 0

    def close(self) -> FileStats:
        self._out.close()
        return FileStats(records=self._records, bytes=self._out.written)
