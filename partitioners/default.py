"""``default``: one output partition per Kafka partition, ``partition=<n>``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from partitioners.base import Encoded, PartitionColumn

if TYPE_CHECKING:
    import pyarrow as pa

    from s3sink.config import SinkConfig
    from s3sink.records import RecordBatch


class DefaultPartitioner:
    name: ClassVar[str] = "default"

    def __init__(self, config: SinkConfig) -> None:
        pass

    def needs_values(self) -> bool:
        return False

    def encode(self, batch: RecordBatch, values: pa.Table | None, now_ms: int) -> Encoded:
        return Encoded(f"partition={batch.partition}")

    def record_times(
        self, batch: RecordBatch, values: pa.Table | None, now_ms: int
    ) -> Sequence[int] | None:
        return None

    def path(self, topic: str, encoded: str) -> str:
        return f"{topic}/{encoded}"

    def partition_columns(self) -> Sequence[PartitionColumn]:
        return (PartitionColumn("partition", "int"),)
