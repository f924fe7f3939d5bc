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


class Compressor:
    """Writes compressed bytes to ``out``; counts the compressed bytes handed on."""

    def __init__(self, out: OutputStream, codec: str, level: int = -1) -> None:
        self.codec = codec
        self._out = out
        self.written = 0
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
