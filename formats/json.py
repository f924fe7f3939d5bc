"""``json``: JSON lines, one record per line, the original value bytes.

Values are written as they arrived (no decode and re-encode); a value that spans lines is
re-serialized compactly, and a null value (with ``behavior.on.null.values=write``) is written as
``null``. ``s3.compression.type`` gzip or zstd compresses the stream.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, ClassVar

from formats.base import FileStats, OutputStream, RecordWriter
from formats.compression import EXTENSIONS, Compressor

if TYPE_CHECKING:
    import pyarrow as pa

    from s3sink.config import SinkConfig
    from s3sink.records import RecordBatch


class JsonFormat:
    name: ClassVar[str] = "json"

    def __init__(self, config: SinkConfig) -> None:
        self._codec = config.s3_compression_type
        self._level = config.s3_compression_level

    def extension(self) -> str:
        return ".json" + EXTENSIONS[self._codec]

    def needs_values(self) -> bool:
        return False

    def open(self, out: OutputStream) -> RecordWriter:
        return JsonLinesWriter(Compressor(out, self._codec, self._level))


def _one_line(value: bytes | None) -> bytes:
    if value is None:
        return b"null"
    if b"\n" not in value and b"\r" not in value:
        return value
    try:
        return json.dumps(json.loads(value), separators=(",", ":")).encode()
    except ValueError:
        return json.dumps(value.decode("utf-8", "replace")).encode()


class JsonLinesWriter:
    def __init__(self, out: Compressor) -> None:
        self._out = out
        self._records = 0
        self._raw = 0

    def write(self, batch: RecordBatch, values: pa.Table | None) -> None:
        vals = batch.values
        if None in vals:
            vals = [_one_line(v) for v in vals]
        body = b"\n".join(vals)  # type: ignore[arg-type]
        if body.count(b"\n") != len(vals) - 1 or b"\r" in body:
            body = b"\n".join(_one_line(v) for v in vals)
        body += b"\n"
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
