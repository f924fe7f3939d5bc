"""``avro``: Avro object container files (``.avro``), ``avro.codec`` null/deflate/snappy/zstd.

The file's schema is, in this order of preference:

1. the writer schema from the Schema Registry (``value.converter=avro``): record bodies are
   copied from the Kafka values without decoding and re-encoding; records written with another
   version that ``schema.compatibility`` projected onto this one are re-encoded;
2. ``bytes`` for raw values (``value.converter=bytes``), ``string`` for ``string``;
3. a schema derived from the decoded Arrow table (JSON, JSON Schema, Protobuf input): every
   field is a union with ``null`` (default ``null``); nested records, arrays and maps map as
   expected, timestamps to ``timestamp-millis``/``-micros``, decimals to ``decimal``.

``store.kafka.metadata=true`` appends a ``_kafka`` field (record ``s3sink.KafkaMetadata``) to a
record schema, or wraps other schemas as ``{value, _kafka}``. With
``behavior.on.null.values=write`` the file schema is the union ``["null", <schema>]`` and a
tombstone is a ``null`` datum (without ``_kafka``).

Blocks of about 256 KiB (uncompressed) are compressed and handed to the stream as they fill.
The sync marker derives from the topic, partition, first offset and schema, so writing the same
records again gives the same bytes.
"""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any, ClassVar, cast

import fastavro

from formats import kafka_meta
from formats.arrow_types import AvroSchemaBuilder, Converter, avro_name
from formats.avro_container import ContainerWriter, avro_bytes, zigzag_long
from formats.base import FileStats, OutputStream, RecordWriter
from formats.decoders import avrofast
from formats.decoders.base import (
    META_AVRO_SCHEMA,
    META_AVRO_SCHEMA_ID,
    META_AVRO_WRITERS,
    META_ENCODING,
    META_LAZY,
    META_WRAPPED,
    meta,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from s3sink.config import SinkConfig
    from s3sink.records import RecordBatch

BLOCK_BYTES = 256 * 1024


class AvroFormat:
    name: ClassVar[str] = "avro"

    def __init__(self, config: SinkConfig) -> None:
        self.codec = config.avro_codec
        self.level = config.s3_compression_level
        self.nullable = config.behavior_on_null_values == "write"
        self.metadata = config.store_kafka_metadata
        self.text_key = kafka_meta.key_as_text(config)

    def extension(self) -> str:
        return ".avro"

    def needs_values(self) -> bool:
        return True

    def open(self, out: OutputStream) -> RecordWriter:
        return AvroRecordWriter(self, out)


def _varint(b: bytes, pos: int = 0) -> tuple[int, int]:
    """An Avro long at ``pos``: (value, position after it)."""
    shift = result = 0
    while True:
        byte = b[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
    return (result >> 1) ^ -(result & 1), pos


class AvroRecordWriter:
    def __init__(self, fmt: AvroFormat, out: OutputStream) -> None:
        self._fmt = fmt
        self._out = out
        self._c: ContainerWriter | None = None
        self._mode = ""
        self._file_schema_id: str | None = None
        self._value_parsed: Any = None
        self._conv: Converter | None = None
        self._wrapped = False
        self._kafka_parsed: Any = None
        #: Bytes before a record body: the union branch of the value in ["null", ...] files.
        self._prefix = b""
        self._null_body = b""
        self._union_shift = 0
        self._writers: dict[str, Any] = {}

    # -- set-up on the first batch -----------------------------------------------------------
    def _setup(self, batch: RecordBatch, values: pa.Table | None) -> None:
        fmt = self._fmt
        schema_json = meta(values, META_AVRO_SCHEMA)
        value_schema: Any
        if schema_json is not None:
            self._mode = "avro"
            value_schema = json.loads(schema_json)
            sid = meta(values, META_AVRO_SCHEMA_ID)
            self._file_schema_id = None if sid is None else sid.decode()
        elif values is None or meta(values, META_LAZY) is not None:
            self._mode = "bytes"
            value_schema = "bytes"
        else:
            self._mode = "table"
            self._wrapped = meta(values, META_WRAPPED) is not None
            builder = AvroSchemaBuilder("s3sink")
            if self._wrapped and values.schema.names == ["value"]:
                value_schema, self._conv = builder.type(values.schema.field("value").type, "Value")
                # StringConverter values are Avro strings (as Confluent writes them); other
                # wrapped values (keys, headers, primitive schemas) may be null
                if meta(values, META_ENCODING) == b"string":
                    value_schema = "string"
                else:
                    value_schema = ["null", value_schema]
            else:
                value_schema, self._conv = builder.record(
                    values.schema, avro_name(batch.topic) or "Record"
                )
        self._value_parsed = fastavro.parse_schema(value_schema)
        file_schema = value_schema
        if fmt.metadata:
            kafka = kafka_meta.avro_schema(fmt.text_key)
            self._kafka_parsed = fastavro.parse_schema(kafka)
            if isinstance(value_schema, dict) and value_schema.get("type") == "record":
                file_schema = dict(value_schema)
                file_schema["fields"] = [
                    *value_schema["fields"],
                    {"name": kafka_meta.COLUMN, "type": kafka},
                ]
            else:
                file_schema = {
                    "type": "record",
                    "name": "Record",
                    "namespace": "s3sink",
                    "fields": [
                        {"name": "value", "type": value_schema},
                        {"name": kafka_meta.COLUMN, "type": kafka},
                    ],
                }
        if fmt.nullable:
            if isinstance(file_schema, list):
                if "null" in file_schema:
                    self._null_body = zigzag_long(file_schema.index("null"))
                else:
                    file_schema = ["null", *file_schema]
                    self._union_shift = 1
                    self._null_body = zigzag_long(0)
            else:
                file_schema = ["null", file_schema]
                self._prefix = zigzag_long(1)
                self._null_body = zigzag_long(0)
        seed = f"{batch.topic}+{batch.partition}+{batch.offsets[0]}".encode()
        self._c = ContainerWriter(self._out, file_schema, fmt.codec, fmt.level, seed, BLOCK_BYTES)

    # -- writing -------------------------------------------------------------------------------
    def write(self, batch: RecordBatch, values: pa.Table | None) -> None:
        if not len(batch):
            return
        if self._c is None:
            self._setup(batch, values)
        assert self._c is not None
        if self._mode == "avro" and self._copy_all(batch):
            # every value is framed with the file's schema id: its body is the record as the
            # file stores it, copied in one join
            values = cast("list[bytes]", batch.values)
            self._c.extend_joined(len(values), avrofast.bodies(values, 5))
            return
        if self._mode == "avro":
            bodies = self._avro_bodies(batch, values)
        elif self._mode == "bytes":
            bodies = [None if v is None else avro_bytes(v) for v in batch.values]
        else:
            bodies = self._table_bodies(batch, values)
        kafka: list[bytes] | None = None
        if self._kafka_parsed is not None:
            kafka = []
            buf = io.BytesIO()
            for rec in kafka_meta.avro_records(batch, self._fmt.text_key):
                buf.seek(0)
                buf.truncate()
                fastavro.schemaless_writer(buf, self._kafka_parsed, rec)
                kafka.append(buf.getvalue())
        out: list[bytes] = []
        prefix, null_body = self._prefix, self._null_body
        for i, encoded in enumerate(bodies):
            if encoded is None:
                if not self._fmt.nullable:
                    raise ValueError(
                        "a null value reached the avro format without behavior.on.null.values=write"
                    )
                out.append(null_body)
                continue
            body = encoded
            if self._union_shift:
                idx, pos = _varint(encoded)
                body = zigzag_long(idx + self._union_shift) + encoded[pos:]
            out.append(prefix + body + (kafka[i] if kafka is not None else b""))
        self._c.extend(out)

    def _copy_all(self, batch: RecordBatch) -> bool:
        """Whether the batch's bodies go into the file as they are: no wrapping (tombstone
        union, ``_kafka``), and every value carries the file's schema id (the least and the
        greatest value share the header, so all do)."""
        if self._prefix or self._union_shift or self._kafka_parsed is not None:
            return False
        target = self._file_schema_id
        if target is None or None in batch.values:
            return False
        values = cast("list[bytes]", batch.values)
        header = min(values)[:5]
        return max(values)[:5] == header and header == b"\x00" + int(target).to_bytes(4, "big")

    def _avro_bodies(self, batch: RecordBatch, values: pa.Table | None) -> list[bytes | None]:
        sid = meta(values, META_AVRO_SCHEMA_ID)
        schemas: dict[str, str] = {}
        if sid is not None:
            own = meta(values, META_AVRO_SCHEMA)
            if own is not None:
                schemas[sid.decode()] = own.decode()
        writers = meta(values, META_AVRO_WRITERS)
        if writers is not None:
            schemas.update(json.loads(writers))
        target = self._file_schema_id
        out: list[bytes | None] = []
        buf = io.BytesIO()
        for v in batch.values:
            if v is None:
                out.append(None)
                continue
            wid = str(int.from_bytes(v[1:5], "big"))
            if wid == target:
                out.append(v[5:])
                continue
            writer = self._writers.get(wid)
            if writer is None:
                text = schemas.get(wid)
                if text is None:
                    raise ValueError(f"no writer schema for schema id {wid} in the decoded part")
                writer = self._writers[wid] = fastavro.parse_schema(json.loads(text))
            record = fastavro.schemaless_reader(io.BytesIO(v[5:]), writer, self._value_parsed)
            buf.seek(0)
            buf.truncate()
            fastavro.schemaless_writer(buf, self._value_parsed, record)
            out.append(buf.getvalue())
        return out

    def _table_bodies(self, batch: RecordBatch, values: pa.Table | None) -> list[bytes | None]:
        assert values is not None
        rows = values.to_pylist()
        conv = self._conv
        wrapped = self._wrapped and values.schema.names == ["value"]
        out: list[bytes | None] = []
        buf = io.BytesIO()
        parsed = self._value_parsed
        for i, row in enumerate(rows):
            if batch.values[i] is None:
                out.append(None)
                continue
            datum = row["value"] if wrapped else row
            if conv is not None and datum is not None:
                datum = conv(datum)
            buf.seek(0)
            buf.truncate()
            fastavro.schemaless_writer(buf, parsed, datum)
            out.append(buf.getvalue())
        return out

    def bytes_written(self) -> int:
        return 0 if self._c is None else self._c.written + self._c.buffered()

    def buffered_bytes(self) -> int:
        return 0 if self._c is None else self._c.buffered()

    def close(self) -> FileStats:
        if self._c is None:
            # No record was written: an empty file with the bytes schema.
            self._c = ContainerWriter(self._out, "bytes", self._fmt.codec, self._fmt.level, b"", 1)
        self._c.flush()
        return FileStats(records=self._c.records, bytes=self._c.written)
