"""Keys and headers files (``store.kafka.keys`` / ``store.kafka.headers``): one per data file, in
the same format, named as Confluent names them (``<data file name>.keys<ext>``,
``orders+0+0000000000.keys.snappy.parquet``), one row per record in the data file's record
order. Unlike Confluent, the sink puts them in a sibling tree (``<topics.dir>/_keys/...`` and
``_headers/...``), so that tables over ``<topics.dir>/<topic>`` never read them as rows.

* keys: Parquet column ``key`` (BINARY, or STRING with ``key.converter=string``), Avro
  ``bytes``/``string`` records, JSON lines holding the key as a JSON string (base64 unless the
  key converter is ``string``), bytearray the raw keys with the separator.
* headers: Parquet column ``headers`` (list of ``{key, value}``), Avro arrays of such records,
  JSON lines ``[{"key": ..., "value": <base64>}]``. Not available for bytearray.

The sink opens them with :func:`load_sidecar_formats` and writes the same (sub-)batches it writes
to the data file: ``writer.write(batch, None)``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, ClassVar

import pyarrow as pa

from formats import kafka_meta
from formats.base import FileStats, Format, OutputStream, RecordWriter
from formats.decoders.base import META_ENCODING, META_WRAPPED
from s3sink.errors import ConfigError

if TYPE_CHECKING:
    from s3sink.config import SinkConfig
    from s3sink.records import RecordBatch

KINDS = ("keys", "headers")


def load_sidecar_formats(config: SinkConfig) -> dict[str, Format]:
    """``{"keys": ..., "headers": ...}`` as ``store.kafka.keys`` / ``.headers`` ask."""
    from formats import load_format

    wanted = [
        k
        for k, on in (("keys", config.store_kafka_keys), ("headers", config.store_kafka_headers))
        if on
    ]
    if not wanted:
        return {}
    base = load_format(dataclasses.replace(config, store_kafka_metadata=False))
    if base.name not in ("parquet", "avro", "json", "bytearray"):
        raise ConfigError(
            f"store.kafka.keys/headers: not supported with format.class={config.format_class}",
            key="store.kafka.keys",
        )
    if "headers" in wanted and base.name == "bytearray":
        raise ConfigError(
            "store.kafka.headers: the bytearray format cannot hold headers; use json, avro or "
            "parquet",
            key="store.kafka.headers",
        )
    text = kafka_meta.key_as_text(config)
    return {kind: SidecarFormat(base, kind, text) for kind in wanted}


class SidecarFormat:
    name: ClassVar[str] = "sidecar"

    def __init__(self, base: Format, kind: str, text_keys: bool) -> None:
        if kind not in KINDS:
            raise ValueError(kind)
        self.base = base
        self.kind = kind
        self.text_keys = text_keys

    def extension(self) -> str:
        return f".{self.kind}{self.base.extension()}"

    def needs_values(self) -> bool:
        return False

    def open(self, out: OutputStream) -> RecordWriter:
        return SidecarWriter(self, self.base.open(out))

    def table(self, batch: RecordBatch) -> pa.Table | None:
        if self.base.name == "bytearray":
            return None
        if self.kind == "keys":
            if self.text_keys:
                col = pa.array(
                    [None if k is None else k.decode("utf-8", "replace") for k in batch.keys],
                    pa.string(),
                )
            else:
                col = pa.array(batch.keys, pa.binary())
        else:
            col = pa.array(
                [[(k, v) for k, v in (h or ())] for h in batch.headers],
                pa.list_(kafka_meta.HEADER_TYPE),
            )
        if self.base.name == "parquet":
            return pa.table({"key" if self.kind == "keys" else "headers": col})
        md = {META_WRAPPED: b"1", META_ENCODING: b"sidecar"}
        return pa.table({"value": col}).replace_schema_metadata(md)


class SidecarWriter:
    def __init__(self, fmt: SidecarFormat, inner: RecordWriter) -> None:
        self._fmt = fmt
        self._inner = inner

    def write(self, batch: RecordBatch, values: pa.Table | None) -> None:
        if not len(batch):
            return
        # the rows are the keys (or headers); a null key is a null row, never a tombstone
        rows: list[bytes | None] = (
            list(batch.keys) if self._fmt.base.name == "bytearray" else [b""] * len(batch)
        )
        self._inner.write(dataclasses.replace(batch, values=rows), self._fmt.table(batch))

    def bytes_written(self) -> int:
        return self._inner.bytes_written()

    def buffered_bytes(self) -> int:
        return self._inner.buffered_bytes()

    def close(self) -> FileStats:
        return self._inner.close()
