"""``json``: JSON lines, one record per line.

What a line holds depends on the value converter:

* ``bytes`` or ``string`` (nothing decoded) and ``json`` / ``jsonschema`` (validated, the
  Confluent header stripped): the original value bytes, unchanged. A value spread over several
  lines is re-serialised compactly.
* ``avro``, ``protobuf`` and JsonConverter envelopes (``value.converter.schemas.enable=true``):
  the decoded record rendered as JSON (bytes as base64, timestamps as ISO-8601 UTC text,
  decimals as exact strings, maps as objects; for envelopes, the payload alone).
* A tombstone (``behavior.on.null.values=write``) is the line ``null``.

With ``store.kafka.metadata=true`` every line becomes
``{"value":<the line above>,"_kafka":{"topic":"t","partition":0,"offset":42,
"timestamp":1714719600000,"timestamp_type":"CreateTime","key":"a2V5","headers":[{"key":"h",
"value":"dg=="}]}}``: ``timestamp`` in epoch milliseconds (null if the record has none), the
key and header values base64 (the key as text with ``key.converter=string``).

``s3.compression.type`` gzip or zstd compresses the stream (``.json.gz``, ``.json.zst``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, ClassVar, cast

from formats import kafka_meta
from formats.arrow_types import rows_as_json
from formats.base import FileStats, OutputStream, RecordWriter
from formats.compression import EXTENSIONS, Compressor, sync_every
from formats.decoders.base import META_ENCODING, META_LAZY, META_RAW_OFFSET, META_WRAPPED, meta

if TYPE_CHECKING:
    import pyarrow as pa

    from s3sink.config import SinkConfig
    from s3sink.records import RecordBatch

#: Converters whose values are written as they are, without decoding.
RAW_CONVERTERS = frozenset(
    {
        "bytes",
        "string",
        "org.apache.kafka.connect.converters.ByteArrayConverter",
        "org.apache.kafka.connect.storage.StringConverter",
    }
)


class JsonFormat:
    name: ClassVar[str] = "json"

    def __init__(self, config: SinkConfig) -> None:
        self._codec = config.s3_compression_type
        self._level = config.s3_compression_level
        self._decode = config.value_converter not in RAW_CONVERTERS
        self.metadata = config.store_kafka_metadata
        self.text_key = kafka_meta.key_as_text(config)
        self._sync = sync_every(config.file_max_bytes)

    def extension(self) -> str:
        return ".json" + EXTENSIONS[self._codec]

    def needs_values(self) -> bool:
        # Decoding validates JSON values (bad ones are dead-lettered) and renders Avro and
        # Protobuf as JSON; raw converters are copied as they are.
        return self._decode

    def rolls_on_schema_change(self) -> bool:
        """JSON lines hold any mix of schemas: a schema change does not roll the file."""
        return False

    def open(self, out: OutputStream) -> RecordWriter:
        return JsonLinesWriter(self, Compressor(out, self._codec, self._level, self._sync))


def _one_line(value: bytes | None) -> bytes:
    if value is None:
        return b"null"
    if b"\n" not in value and b"\r" not in value:
        return value
    try:
        return json.dumps(json.loads(value), separators=(",", ":")).encode()
    except (ValueError, RecursionError):
        return json.dumps(value.decode("utf-8", "replace")).encode()


def raw_lines(values: list[bytes | None], offset: int = 0) -> list[bytes]:
    """The values (from ``offset``) as single lines; ``null`` for tombstones."""
    if offset:
        values = [None if v is None else v[offset:] for v in values]
    lines = [_one_line(v) for v in values] if None in values else [v or b"" for v in values]
    body = b"\n".join(lines)
    if body.count(b"\n") != len(lines) - 1 or b"\r" in body:
        lines = [_one_line(v) for v in lines]
    return lines


class JsonLinesWriter:
    def __init__(self, fmt: JsonFormat, out: Compressor) -> None:
        self._fmt = fmt
        self._out = out
        self._records = 0
        self._raw = 0

    def _lines(self, batch: RecordBatch, values: pa.Table | None) -> list[bytes]:
        if values is None or meta(values, META_LAZY) is not None:
            return raw_lines(batch.values)
        offset = meta(values, META_RAW_OFFSET)
        if offset is not None and meta(values, META_ENCODING) == b"json":
            return raw_lines(batch.values, int(offset))
        lines = rows_as_json(values, meta(values, META_WRAPPED) is not None)
        for i, v in enumerate(batch.values):
            if v is None:
                lines[i] = b"null"
        return lines

    def _raw_body(self, batch: RecordBatch, values: pa.Table | None) -> bytes | None:
        """The common case in one join: values written as they are, none a tombstone or
        spanning lines. ``None``: build the lines one by one."""
        if self._fmt.metadata or None in batch.values:
            return None
        raw = values is None or meta(values, META_LAZY) is not None
        if not raw and not (
            meta(values, META_RAW_OFFSET) == b"0" and meta(values, META_ENCODING) == b"json"
        ):
            return None
        lines = cast("list[bytes]", batch.values)
        flat = b"".join(lines)
        if b"\n" in flat or b"\r" in flat:
            return None
        return b"\n".join([*lines, b""])

    def write(self, batch: RecordBatch, values: pa.Table | None) -> None:
        if not len(batch):
            return
        body = self._raw_body(batch, values)
        if body is None:
            lines = self._lines(batch, values)
            if self._fmt.metadata:
                frags = kafka_meta.json_fragments(batch, self._fmt.text_key)
                lines = [
                    b'{"value":' + line + b',"_kafka":' + frag + b"}"
                    for line, frag in zip(lines, frags, strict=True)
                ]
            body = b"\n".join(lines) + b"\n"
        self._out.write(body)
        self._records += len(batch)
        self._raw += len(body)

    def bytes_written(self) -> int:
        return self._out.written if self._out.codec != "none" else self._raw

    def buffered_bytes(self) -> int:
        return 0

    def close(self) -> FileStats:
        self._out.close()
        return FileStats(records=self._records, bytes=self._out.written)
