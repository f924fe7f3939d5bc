"""Avro object container files, written block by block from already-encoded record bodies.

The sink often holds records that are Avro already (Confluent wire format: a 5-byte header,
then the body); a block is just the bodies concatenated, so they are copied, never decoded and
re-encoded. Codecs (``avro.codec``): ``null``, ``deflate`` (zlib), ``snappy`` (with the CRC32
trailer the spec asks for), ``zstd`` (written as ``zstandard``), ``bzip2``, ``xz``. Compression
uses pyarrow and the standard library, so no extra package is needed to write; to *read*
snappy or zstandard files, fastavro needs ``cramjam`` and (before Python 3.14)
``backports.zstd``.
"""

from __future__ import annotations

import bz2
import hashlib
import json
import lzma
import struct
import threading
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pyarrow as pa

from formats.base import OutputStream

MAGIC = b"Obj\x01"
#: avro.codec -> the name written in the file header.
CODEC_NAMES = {
    "null": "null",
    "deflate": "deflate",
    "snappy": "snappy",
    "zstd": "zstandard",
    "bzip2": "bzip2",
    "xz": "xz",
}


def zigzag_long(n: int) -> bytes:
    """Avro ``long``: zig-zag, then base-128 varint."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z & ~0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def avro_bytes(b: bytes) -> bytes:
    return zigzag_long(len(b)) + b


def compress(codec: str, data: bytes, level: int = -1) -> bytes:
    if codec == "null":
        return data
    if codec == "deflate":
        c = zlib.compressobj(level if level >= 0 else 6, zlib.DEFLATED, -15)
        return c.compress(data) + c.flush()
    if codec == "snappy":
        body: bytes = pa.compress(data, codec="snappy", asbytes=True)
        return body + struct.pack(">I", zlib.crc32(data) & 0xFFFFFFFF)
    if codec == "zstd":
        out: bytes = pa.compress(
            data, codec="zstd", asbytes=True, **({"compression_level": level} if level > 0 else {})
        )
        return out
    if codec == "bzip2":
        return bz2.compress(data)
    if codec == "xz":
        return lzma.compress(data, format=lzma.FORMAT_XZ)
    raise ValueError(f"unknown avro codec {codec!r}")


#: Blocks of one file compressed ahead of the stream: beyond this, the writer waits for the
#: oldest (bounds the memory a file holds in compression to this many blocks).
MAX_PENDING_BLOCKS = 4
_pool_lock = threading.Lock()
_pool: list[ThreadPoolExecutor] = []


def compression_pool() -> ThreadPoolExecutor:
    """Threads shared by every container file: the codecs release the GIL, so blocks are
    compressed on another core while the consumer thread goes on."""
    with _pool_lock:
        if not _pool:
            _pool.append(ThreadPoolExecutor(2, thread_name_prefix="s3sink-avro-compress"))
        return _pool[0]


class ContainerWriter:
    """Writes the header once, then blocks of (count, bodies) to ``out``. Blocks of a
    compressing codec are compressed in :func:`compression_pool` and written in order, by the
    thread that writes records, as they are done; :meth:`flush` waits for all of them."""

    def __init__(
        self, out: OutputStream, schema: Any, codec: str, level: int, seed: bytes, block_bytes: int
    ) -> None:
        self._out = out
        self._codec = codec
        self._level = level
        self._block_bytes = block_bytes
        schema_json = json.dumps(schema, separators=(",", ":")).encode()
        # Deterministic sync marker: the same records give the same file, byte for byte.
        self.sync = hashlib.md5(seed + schema_json, usedforsecurity=False).digest()
        header = bytearray(MAGIC)
        meta = {b"avro.schema": schema_json, b"avro.codec": CODEC_NAMES[codec].encode()}
        header += zigzag_long(len(meta))
        for k, v in meta.items():
            header += avro_bytes(k) + avro_bytes(v)
        header += zigzag_long(0)
        header += self.sync
        self.written = 0
        self._emit(bytes(header))
        self._buf = bytearray()
        self._count = 0
        self.records = 0
        #: (count, uncompressed size, compressed block) in file order
        self._pending: deque[tuple[int, int, Future[bytes]]] = deque()
        self._pending_bytes = 0

    def _emit(self, data: bytes) -> None:
        self._out.write(data)
        self.written += len(data)

    def append(self, body: bytes) -> None:
        self._buf += body
        self._count += 1
        self.records += 1
        if len(self._buf) >= self._block_bytes:
            self._seal()
        elif self._pending:
            self._drain(wait=False)

    def extend(self, bodies: list[bytes]) -> None:
        self.extend_joined(len(bodies), b"".join(bodies))

    def extend_joined(self, count: int, joined: bytes) -> None:
        """``count`` record bodies, already concatenated."""
        self._buf += joined
        self._count += count
        self.records += count
        if len(self._buf) >= self._block_bytes:
            self._seal()
        elif self._pending:
            self._drain(wait=False)

    def buffered(self) -> int:
        """Bytes held: the open block and the blocks still being compressed (uncompressed)."""
        return len(self._buf) + self._pending_bytes

    def _seal(self) -> None:
        """Close the open block: compressed in the pool (written once done), or at once."""
        if not self._count:
            return
        raw = bytes(self._buf)
        count = self._count
        self._buf = bytearray()
        self._count = 0
        if self._codec == "null":
            self._drain(wait=True)
            self._block(count, raw)
            return
        fut = compression_pool().submit(compress, self._codec, raw, self._level)
        self._pending.append((count, len(raw), fut))
        self._pending_bytes += len(raw)
        self._drain(wait=len(self._pending) > MAX_PENDING_BLOCKS)

    def _block(self, count: int, data: bytes) -> None:
        self._emit(zigzag_long(count) + zigzag_long(len(data)) + data + self.sync)

    def _drain(self, *, wait: bool) -> None:
        """Write the finished blocks at the head (``wait``: also wait for the oldest)."""
        while self._pending and (wait or self._pending[0][2].done()):
            count, size, fut = self._pending.popleft()
            self._pending_bytes -= size
            self._block(count, fut.result())
            wait = False

    def flush(self) -> None:
        """Every record appended so far written to ``out``."""
        self._seal()
        while self._pending:
            self._drain(wait=True)
