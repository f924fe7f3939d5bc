"""Formats: the interfaces in :mod:`formats.base`, built-ins registered here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from formats.base import Format
from s3sink.plugins import check, resolve

if TYPE_CHECKING:
    from s3sink.config import SinkConfig

#: Built-in formats: short name -> module:Class. One line per format.
BUILTIN = {
    "json": "formats.json:JsonFormat",
    "bytearray": "formats.bytearray:ByteArrayFormat",
    "parquet": "formats.parquet:ParquetFormat",
    "avro": "formats.avro:AvroFormat",
    "backup": "formats.backup:BackupFormat",
}

#: Confluent class names -> short names.
ALIASES = {
    "io.confluent.connect.s3.format.json.JsonFormat": "json",
    "io.confluent.connect.s3.format.bytearray.ByteArrayFormat": "bytearray",
    "io.confluent.connect.s3.format.parquet.ParquetFormat": "parquet",
    "io.confluent.connect.s3.format.avro.AvroFormat": "avro",
}


def load_format(config: SinkConfig) -> Format:
    cls = resolve("format", "format.class", config.format_class, BUILTIN, ALIASES, "s3sink.formats")
    fmt: Format = cls(config)
    check("format", "format.class", config.format_class, fmt, Format)
    return fmt
