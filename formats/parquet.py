"""``parquet``: Apache Parquet through pyarrow, streamed one row group at a time.

* Codec: ``parquet.codec`` none/snappy/gzip/zstd/lz4. File names follow Confluent:
  ``.snappy.parquet``, ``.gz.parquet``, ``.zstd.parquet``, ``.lz4.parquet``, ``.parquet``.
* Row groups: batches are buffered as Arrow until ``parquet.row.group.bytes`` (in-memory Arrow
  size; at most ``buffer.memory.bytes`` / 32), then encoded as one row group in a background
  thread (one at a time per file, in order) and handed to the output stream; memory per open
  file is about two row groups. ``parquet.enable.dictionary`` turns dictionary encoding on
  (default) or off.
* Columns: the decoder's table (Avro/JSON Schema/Protobuf schema, an explicit
  ``value.schema``, or the inferred JSON schema); nested records are groups, arrays are lists,
  maps are maps. Timestamps keep millisecond or microsecond precision (nanoseconds become
  microseconds: Athena and Hive cannot read them). Raw values (``value.converter=bytes`` or
  ``string``) are one column, ``value``.
* Tombstones (``behavior.on.null.values=write``): a row whose value columns are all null.
* ``store.kafka.metadata=true`` adds the ``_kafka`` struct column (see :mod:`formats.kafka_meta`).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa
import pyarrow.parquet as pq

from formats import kafka_meta
from formats.arrow_types import normalize_table
from formats.base import FileStats, OutputStream, RecordWriter
from formats.decoders.base import META_LAZY, META_WRAPPED, meta

if TYPE_CHECKING:
    from s3sink.config import SinkConfig
    from s3sink.records import RecordBatch

#: parquet.codec -> (pyarrow compression, file name suffix before .parquet)
CODECS = {
    "none": ("none", ""),
    "uncompressed": ("none", ""),
    "snappy": ("snappy", ".snappy"),
    "gzip": ("gzip", ".gz"),
    "zstd": ("zstd", ".zstd"),
    "lz4": ("lz4", ".lz4"),
}


class ParquetFormat:
    name: ClassVar[str] = "parquet"

    def __init__(self, config: SinkConfig) -> None:
        self._compression, suffix = CODECS[config.parquet_codec]
        self._ext = suffix + ".parquet"
        # an open file holds about two row groups: 1/32 of the memory budget at most each, so
        # that several open files fill row groups (encoded as they fill) before the budget
        # makes them roll early
        self._row_group_bytes = max(
            1, min(config.parquet_row_group_bytes, max(1 << 20, config.buffer_memory_bytes // 32))
        )
        self._dictionary = config.parquet_enable_dictionary
        self._metadata = config.store_kafka_metadata
        self._text_key = kafka_meta.key_as_text(config)
        #: Encoded / in-memory size of the row groups written so far (for bytes_written).
        self.ratio = 0.5

    def extension(self) -> str:
        return self._ext

    def needs_values(self) -> bool:
        return True

    def open(self, out: OutputStream) -> RecordWriter:
        return ParquetRecordWriter(self, out)

    def to_table(self, batch: RecordBatch, values: pa.Table | None) -> pa.Table:
        """The rows of one batch as written: values (or ``value``) plus ``_kafka``."""
        if values is None or meta(values, META_LAZY) is not None:
            table = pa.table({"value": pa.array(batch.values, pa.binary())})
        else:
            table = values
            if meta(values, META_WRAPPED) is None and table.num_columns == 0:
                table = pa.table({"value": pa.nulls(len(batch), pa.string())})
        table = normalize_table(table)
        if self._metadata:
            col = kafka_meta.arrow_column(batch, self._text_key)
            if kafka_meta.COLUMN in table.schema.names:
                table = table.drop_columns([kafka_meta.COLUMN])
            table = table.append_column(kafka_meta.COLUMN, col)
        return table


class _Sink:
    """The file object pyarrow writes to: an OutputStream, with a byte count."""

    closed = False

    def __init__(self, out: OutputStream) -> None:
        self._out = out
        self.pos = 0

    def write(self, data: Any) -> int:
        b = bytes(data)
        self._out.write(b)
        self.pos += len(b)
        return len(b)

    def tell(self) -> int:
        return self.pos

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


#: Row groups are encoded off the consumer's thread (pyarrow releases the GIL while it
#: encodes and compresses): a file has at most one row group being encoded at a time.
_ENCODERS = 2
_encoder_pool: list[ThreadPoolExecutor] = []
_encoder_lock = threading.Lock()


def _encoder() -> ThreadPoolExecutor:
    with _encoder_lock:
        if not _encoder_pool:
            _encoder_pool.append(
                ThreadPoolExecutor(max_workers=_ENCODERS, thread_name_prefix="s3sink-parquet")
            )
        return _encoder_pool[0]


class ParquetRecordWriter:
    def __init__(self, fmt: ParquetFormat, out: OutputStream) -> None:
        self._fmt = fmt
        self._sink = _Sink(out)
        self._writer: pq.ParquetWriter | None = None
        self._schema: pa.Schema | None = None
        self._pending: list[pa.Table] = []
        self._pending_bytes = 0
        self._records = 0
        self._flushed_arrow = 0
        #: The row group being encoded in the background, and its in-memory size.
        self._inflight: Future[None] | None = None
        self._inflight_bytes = 0

    def write(self, batch: RecordBatch, values: pa.Table | None) -> None:
        if not len(batch):
            return
        table = self._fmt.to_table(batch, values)
        if self._schema is None:
            self._schema = table.schema
        elif not table.schema.equals(self._schema):
            table = _conform(table, self._schema)
        self._pending.append(table)
        self._pending_bytes += table.nbytes
        self._records += table.num_rows
        if self._pending_bytes >= self._fmt._row_group_bytes:
            self._flush()

    def _open_writer(self, schema: pa.Schema) -> pq.ParquetWriter:
        fmt = self._fmt
        return pq.ParquetWriter(
            self._sink,
            schema,
            compression=fmt._compression,
            use_dictionary=fmt._dictionary,
            version="2.6",
            write_statistics=True,
        )

    def _flush(self, *, wait: bool = False) -> None:
        """Hand the buffered batches to the background encoder as one row group (after the
        file's previous one is done: row groups stay in order); ``wait``: until encoded."""
        if self._pending:
            table = pa.concat_tables(self._pending) if len(self._pending) > 1 else self._pending[0]
            size = self._pending_bytes
            self._pending = []
            self._pending_bytes = 0
            self._wait()
            self._inflight_bytes = size
            self._inflight = _encoder().submit(self._encode, table)
        if wait:
            self._wait()

    def _wait(self) -> None:
        """Wait for the row group being encoded; raise what encoding it raised."""
        inflight = self._inflight
        if inflight is None:
            return
        self._inflight = None
        try:
            inflight.result()
        finally:
            self._inflight_bytes = 0

    def _encode(self, table: pa.Table) -> None:
        if self._writer is None:
            self._writer = self._open_writer(table.schema)
        target = self._fmt._row_group_bytes
        size = max(1, table.nbytes)
        rows = table.num_rows
        per_group = rows if size <= target * 2 else max(1, rows * target // size)
        before = self._sink.pos
        for start in range(0, rows, per_group):
            part = table.slice(start, per_group)
            self._writer.write_table(part, row_group_size=max(1, part.num_rows))
        written = self._sink.pos - before
        self._flushed_arrow += size
        if written > 0:
            self._fmt.ratio = max(0.01, min(2.0, written / size))

    def bytes_written(self) -> int:
        unencoded = self._pending_bytes + self._inflight_bytes
        return self._sink.pos + int(unencoded * self._fmt.ratio)

    def buffered_bytes(self) -> int:
        return self._pending_bytes + self._inflight_bytes

    def close(self) -> FileStats:
        self._flush(wait=True)
        if self._writer is None:
            schema = self._schema or pa.schema([pa.field("value", pa.binary())])
            self._writer = self._open_writer(schema)
        self._writer.close()
        return FileStats(records=self._records, bytes=self._sink.pos)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Make a table written into an open file match the file's schema (same names and types,
    differing only in what a cast fixes, e.g. nullability or a null-only column)."""
    if table.schema.names != schema.names:
        cols = [
            table.column(f.name)
            if f.name in table.schema.names
            else pa.nulls(table.num_rows, f.type)
            for f in schema
        ]
        table = pa.Table.from_arrays(cols, names=schema.names)
    out: pa.Table = table.cast(schema)
    return out
