"""``field``: ``<field>=<value>`` directories from one or more (nested) record fields.

``partition.field.name=country,address.city`` gives ``country=FR/address.city=Paris``. Values
are rendered as text (``true``, ``12``, ``1.5``) and escaped Hive-style; a null or missing
field, an empty string and a tombstone go to ``__HIVE_DEFAULT_PARTITION__``. The work is done
per distinct value with Arrow kernels, not per record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import pyarrow as pa

from partitioners.base import Encoded, PartitionColumn
from partitioners.fields import get_field
from partitioners.hive import DEFAULT_PARTITION, escape_column, join_paths, uniform
from s3sink.errors import ConfigError

if TYPE_CHECKING:
    from s3sink.config import SinkConfig
    from s3sink.records import RecordBatch

NEEDS_VALUES = (
    "the record value is not decoded: set value.converter to json, avro, jsonschema or "
    "protobuf to partition by a field"
)


class FieldEncoder:
    """The ``a=x/b=y`` part of a path, per record, for a list of fields."""

    def __init__(self, fields: Sequence[str], partitioner: str) -> None:
        if not fields:
            raise ConfigError(
                f"partition.field.name: required with partitioner.class={partitioner}; "
                "e.g. partition.field.name=country,address.city",
                key="partition.field.name",
            )
        self.fields = tuple(fields)

    def encode(self, n: int, values: pa.Table | None) -> tuple[pa.Array, dict[int, str]]:
        if values is None:
            return pa.nulls(n, pa.string()), dict.fromkeys(range(n), NEEDS_VALUES)
        cols: list[pa.Array] = []
        errors: dict[int, str] = {}
        for name in self.fields:
            col = get_field(values, name)
            if col is None:
                cols.append(pa.array([f"{name}={DEFAULT_PARTITION}"] * n, pa.string()))
                continue
            encoded, errs = escape_column(col, f"{name}=")
            cols.append(encoded)
            for i, reason in errs.items():
                errors.setdefault(i, f"{name}: {reason}")
        return join_paths(cols), errors


def to_encoded(paths: pa.Array, errors: dict[int, str]) -> Encoded:
    if not errors:
        single = uniform(paths)
        if single is not None:
            return Encoded(str(single))
    out: list[str | None] = paths.to_pylist()
    for i in errors:
        out[i] = None
    return Encoded(out, errors)


class FieldPartitioner:
    name: ClassVar[str] = "field"

    def __init__(self, config: SinkConfig) -> None:
        self._fields = FieldEncoder(config.partition_field_name, self.name)

    def needs_values(self) -> bool:
        return True

    def encode(self, batch: RecordBatch, values: pa.Table | None, now_ms: int) -> Encoded:
        paths, errors = self._fields.encode(len(batch), values)
        return to_encoded(paths, errors)

    def record_times(
        self, batch: RecordBatch, values: pa.Table | None, now_ms: int
    ) -> Sequence[int] | None:
        return None

    def path(self, topic: str, encoded: str) -> str:
        return f"{topic}/{encoded}"

    def partition_columns(self) -> Sequence[PartitionColumn]:
        return tuple(PartitionColumn(f, "string") for f in self._fields.fields)
