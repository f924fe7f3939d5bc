"""``backup``: the Kafka records themselves, losslessly, in Avro object container files.

Every record is one ``s3sink.BackupRecord``::

    topic           string
    partition       int
    offset          long
    timestamp       long                  epoch milliseconds, as Kafka gave it (-1: none)
    timestamp_type  enum TimestampType    NoTimestampType | CreateTime | LogAppendTime
    key             ["null", "bytes"]     null is a null key, "" an empty one
    value           ["null", "bytes"]     null is a tombstone
    headers         array of s3sink.Header {name: string, value: ["null", "bytes"]}
                                          in order, duplicates kept

Nothing is decoded, so any value (Avro, Protobuf, JSON, compressed bytes) round-trips byte for
byte through ``s3sink restore``; the files are still plain Avro that Athena, Spark, Trino and
DuckDB read (key and value as binary columns). The header metadata carries
``s3sink.format=backup`` and ``s3sink.backup.version=1``.

Tombstones: a backup keeps them. The format accepts null values (``accepts_nulls``), so the
writer passes them through unless ``behavior.on.null.values=ignore`` was asked for explicitly;
the default ``fail`` means "write" here, since a tombstone is a record like any other in a backup.

``avro.codec``: ``null``, ``deflate``, ``bzip2`` and ``xz`` always work; ``snappy`` needs the
``cramjam`` package and ``zstd`` needs ``backports.zstd`` (Python < 3.14), both to write and to
read (fastavro does the encoding); a missing package fails at start-up with the name to install.
The sync marker derives from the topic, partition and first offset, so the same records give the
same file, byte for byte.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import TYPE_CHECKING, Any, ClassVar, cast

import fastavro
from fastavro.write import Writer

from formats.base import FileStats, OutputStream, RecordWriter
from s3sink.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow as pa

    from s3sink.config import SinkConfig
    from s3sink.records import RecordBatch

VERSION = "1"
BLOCK_BYTES = 256 * 1024
TIMESTAMP_TYPES = ("NoTimestampType", "CreateTime", "LogAppendTime")

SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "BackupRecord",
    "namespace": "s3sink",
    "doc": "A Kafka record as it was consumed, for a byte-exact restore.",
    "fields": [
        {"name": "topic", "type": "string"},
        {"name": "partition", "type": "int"},
        {"name": "offset", "type": "long"},
        {"name": "timestamp", "type": "long", "doc": "epoch milliseconds; -1 when none"},
        {
            "name": "timestamp_type",
            "type": {"type": "enum", "name": "TimestampType", "symbols": list(TIMESTAMP_TYPES)},
        },
        {"name": "key", "type": ["null", "bytes"], "default": None},
        {"name": "value", "type": ["null", "bytes"], "default": None},
        {
            "name": "headers",
            "type": {
                "type": "array",
                "items": {
                    "type": "record",
                    "name": "Header",
                    "fields": [
                        {"name": "name", "type": "string"},
                        {"name": "value", "type": ["null", "bytes"], "default": None},
                    ],
                },
            },
            "default": [],
        },
    ],
}
PARSED = fastavro.parse_schema(SCHEMA)
SCHEMA_JSON = json.dumps(SCHEMA, separators=(",", ":"), sort_keys=True).encode()
METADATA = {"s3sink.format": "backup", "s3sink.backup.version": VERSION}
_PROBE = {"topic": "", "partition": 0, "offset": 0, "timestamp": -1, "timestamp_type": "CreateTime"}

#: avro.codec -> fastavro's codec name, and the package it needs (None: always there).
CODECS: dict[str, tuple[str, str | None]] = {
    "null": ("null", None),
    "deflate": ("deflate", None),
    "bzip2": ("bzip2", None),
    "xz": ("xz", None),
    "snappy": ("snappy", "cramjam"),
    "zstd": ("zstandard", "backports.zstd"),
}


def is_backup_schema(schema: Any) -> bool:
    """Whether a parsed Avro writer schema is the backup record's."""
    return isinstance(schema, dict) and schema.get("name") == "s3sink.BackupRecord"


class BackupFormat:
    name: ClassVar[str] = "backup"

    def __init__(self, config: SinkConfig) -> None:
        codec, package = CODECS[config.avro_codec]
        self.codec = codec
        level = config.s3_compression_level
        self.level: int | None = level if level >= 0 else None
        self._nulls = config.behavior_on_null_values != "ignore"
        try:  # fastavro resolves codecs lazily: find a missing package now, not mid-upload
            fastavro.writer(io.BytesIO(), PARSED, [_PROBE], codec=codec)
        except (ValueError, ImportError) as exc:
            raise ConfigError(
                f"avro.codec: {config.avro_codec} needs the {package} package for the backup "
                f"format (pip install {package}), or use null or deflate ({exc})",
                key="avro.codec",
            ) from None

    def extension(self) -> str:
        return ".avro"

    def needs_values(self) -> bool:
        return False

    def accepts_nulls(self) -> bool:
        """Tombstones are written (the writer keeps them) unless ``ignore`` was asked for."""
        return self._nulls

    def open(self, out: OutputStream) -> RecordWriter:
        return BackupWriter(self, out)


class _Counting:
    """The stream fastavro writes to; counts what it hands on."""

    def __init__(self, out: OutputStream) -> None:
        self._out = out
        self.written = 0

    def write(self, data: bytes) -> int:
        self._out.write(data)
        self.written += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def seekable(self) -> bool:
        return False


class BackupWriter:
    def __init__(self, fmt: BackupFormat, out: OutputStream) -> None:
        self._fmt = fmt
        self._out = _Counting(out)
        self._w: Any = None
        self._records = 0

    def _start(self, seed: bytes) -> Any:
        sync = hashlib.md5(seed + SCHEMA_JSON, usedforsecurity=False).digest()
        self._w = Writer(
            cast(Any, self._out),
            PARSED,
            codec=self._fmt.codec,
            sync_interval=BLOCK_BYTES,
            metadata=dict(METADATA),
            sync_marker=sync,
            compression_level=self._fmt.level,
        )
        return self._w

    def write(self, batch: RecordBatch, values: pa.Table | None) -> None:
        n = len(batch)
        if not n:
            return
        w = self._w
        if w is None:
            w = self._start(f"{batch.topic}+{batch.partition}+{batch.offsets[0]}".encode())
        put = w.write
        topic, partition, types = batch.topic, batch.partition, TIMESTAMP_TYPES
        for offset, ts, ts_type, key, value, headers in zip(
            batch.offsets,
            batch.timestamps,
            batch.timestamp_types,
            batch.keys,
            batch.values,
            batch.headers,
            strict=True,
        ):
            put(
                {
                    "topic": topic,
                    "partition": partition,
                    "offset": offset,
                    "timestamp": ts,
                    "timestamp_type": types[ts_type] if 0 <= ts_type < 3 else types[0],
                    "key": key,
                    "value": value,
                    "headers": [{"name": k, "value": v} for k, v in headers] if headers else [],
                }
            )
        self._records += n

    def bytes_written(self) -> int:
        return self._out.written + self.buffered_bytes()

    def buffered_bytes(self) -> int:
        return 0 if self._w is None else int(self._w.io.tell())

    def close(self) -> FileStats:
        w = self._w if self._w is not None else self._start(b"")
        w.flush()
        return FileStats(records=self._records, bytes=self._out.written)
