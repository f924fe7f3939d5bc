"""The partitioner interface: maps records to encoded output partitions and paths.

As in the Confluent S3 sink, a partitioner has two jobs: encode the partition of each record
(``partition=3``, ``year=2024/month=05``, ``country=FR``) and build the directory of an encoded
partition under ``topics.dir``. It works on a whole batch at a time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pyarrow as pa

    from s3sink.config import SinkConfig
    from s3sink.records import RecordBatch


@dataclass(frozen=True, slots=True)
class Encoded:
    """The encoded partitions of a batch.

    ``partitions`` is one string for all records, or one entry per record; an entry is ``None``
    for a record that cannot be partitioned, with the reason in ``errors[index]``.
    """

    partitions: str | Sequence[str | None]
    errors: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PartitionColumn:
    """A column a reader derives from the path (for DDL and Hive partition discovery)."""

    name: str
    #: ``int`` or ``string``.
    type: str


@runtime_checkable
class Partitioner(Protocol):
    #: Short name in ``partitioner.class`` and in the registry.
    name: ClassVar[str]

    def __init__(self, config: SinkConfig) -> None: ...

    def needs_values(self) -> bool:
        """Whether :meth:`encode` needs the decoded values table."""
        ...

    def encode(self, batch: RecordBatch, values: pa.Table | None, now_ms: int) -> Encoded:
        """Encoded partition of each record. ``now_ms`` is the injected wall clock."""
        ...

    def record_times(
        self, batch: RecordBatch, values: pa.Table | None, now_ms: int
    ) -> Sequence[int] | None:
        """The time each record counts as for ``rotate.interval.ms`` (None: Kafka timestamps)."""
        ...

    def path(self, topic: str, encoded: str) -> str:
        """Directory of an encoded partition, relative to ``topics.dir`` (no leading ``/``)."""
        ...

    def partition_columns(self) -> Sequence[PartitionColumn]: ...
