"""Partitioners: the interface in :mod:`partitioners.base`, built-ins registered here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from partitioners.base import Partitioner
from s3sink.plugins import check, resolve

if TYPE_CHECKING:
    from s3sink.config import SinkConfig

#: Built-in partitioners: short name -> module:Class. One line per partitioner.
BUILTIN = {
    "default": "partitioners.default:DefaultPartitioner",
    "field": "partitioners.field:FieldPartitioner",
    "time": "partitioners.time:TimeBasedPartitioner",
    "hourly": "partitioners.time:HourlyPartitioner",
    "daily": "partitioners.time:DailyPartitioner",
    "field_time": "partitioners.time:FieldTimePartitioner",
}

#: Confluent class names -> short names.
ALIASES = {
    "io.confluent.connect.storage.partitioner.DefaultPartitioner": "default",
    "io.confluent.connect.storage.partitioner.FieldPartitioner": "field",
    "io.confluent.connect.storage.partitioner.TimeBasedPartitioner": "time",
    "io.confluent.connect.storage.partitioner.HourlyPartitioner": "hourly",
    "io.confluent.connect.storage.partitioner.DailyPartitioner": "daily",
}


def load_partitioner(config: SinkConfig) -> Partitioner:
    cls = resolve(
        "partitioner",
        "partitioner.class",
        config.partitioner_class,
        BUILTIN,
        ALIASES,
        "s3sink.partitioners",
    )
    partitioner: Partitioner = cls(config)
    check("partitioner", "partitioner.class", config.partitioner_class, partitioner, Partitioner)
    return partitioner
