"""Streaming compression for the line formats (``s3.compression.type``)."""

from __future__ import annotations

import zlib
from typing import Any

import pyarrow as pa

from formats.base import OutputStream

EXTENSIONS = {"none": "", "gzip": ".gz", "zstd": ".zst"}


class _PyFile:
    """The file-like face pyarrow's CompressedOutputStream wants, over an OutputStream."""

    closed = False

    def __init__(self, out: OutputStream) -> None:
        self._out = out

    def write(self, data: Any) -> int:
        self._out.write(bytes(data))
        return len(data)

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


#: ``sync_every`` bounds: a codec holds input back (zstd emits nothing for hundreds of KiB), so
#: ``written`` (what ``file.max.bytes`` compares) lags; the writer flushes the codec once this
#: much input is unflushed: an eighth of ``file.max.bytes``, within these bounds.
SYNC_MIN_BYTES = 16 * 1024
SYNC_MAX_BYTES = 1024 * 1024


def sync_every(file_max_bytes: int) -> int:
    """Input bytes between codec flushes for files that roll at ``file_max_bytes``."""
    return max(SYNC_MIN_BYTES, min(SYNC_MAX_BYTES, file_max_bytes // 8))


class Compressor:
    """Writes compressed bytes to ``out``; counts the compressed bytes handed on.

    With ``sync_every`` > 0 the codec is flushed (a gzip sync point, a zstd block end: the
    stream stays one valid stream) after a write that leaves that much input unflushed, so
    that ``written`` trails the input by at most that much."""

    def __init__(self, out: OutputStream, codec: str, level: int = -1, sync_every: int = 0) -> None:
        self.codec = codec
        self._out = out
        self.written = 0
        self._sync_every = sync_every
        self._unsynced = 0
        self._gzip: Any = None
        self._zstd: Any = None
        if codec == "gzip":
            self._gzip = zlib.compressobj(level if level >= 0 else 6, zlib.DEFLATED, 31)
        elif codec == "zstd":
            counter = _Counting(out, self)
            self._zstd = pa.CompressedOutputStream(
                _PyFile(counter),
                "zstd",  # level: pyarrow's default (3)
            )
        elif codec != "none":
            raise ValueError(f"unknown compression {codec!r}")

    def write(self, data: bytes) -> None:
        if self._gzip is not None:
            chunk = self._gzip.compress(data)
            if chunk:
                self._out.write(chunk)
                self.written += len(chunk)
        elif self._zstd is not None:
            self._zstd.write(data)
        else:
            self._out.write(data)
            self.written += len(data)
            return
        self._unsynced += len(data)
        if self._sync_every and self._unsynced >= self._sync_every:
            self._sync()

    def _sync(self) -> None:
        if self._gzip is not None:
            chunk = self._gzip.flush(zlib.Z_SYNC_FLUSH)
            self._out.write(chunk)
            self.written += len(chunk)
        elif self._zstd is not None:
            self._zstd.flush()
        self._unsynced = 0

    def close(self) -> None:
        if self._gzip is not None:
            chunk = self._gzip.flush()
            self._out.write(chunk)
            self.written += len(chunk)
        elif self._zstd is not None:
            self._zstd.close()


class _Counting:
    def __init__(self, out: OutputStream, owner: Compressor) -> None:
        self._out = out
        self._owner = owner

    def write(self, data: bytes | memoryview) -> None:
        self._out.write(data)
        self._owner.written += len(data)
