"""Records as they move through the sink: column-wise batches of one Kafka partition.

A :class:`RecordBatch` holds the records the consumer returned for one topic-partition, in
offset order, as parallel lists. Partitioners and formats work on whole batches (and on the
Arrow table a decoder made of the values), never one Python call chain per field.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

Header = tuple[str, bytes | None]


class TimestampType(IntEnum):
    """Kafka's timestamp types, with confluent-kafka's numbering."""

    NOT_AVAILABLE = 0
    CREATE_TIME = 1
    LOG_APPEND_TIME = 2


@dataclass(slots=True)
class RecordBatch:
    """Records of one topic-partition in offset order, column-wise."""

    topic: str
    partition: int
    offsets: list[int] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    timestamp_types: list[int] = field(default_factory=list)
    keys: list[bytes | None] = field(default_factory=list)
    values: list[bytes | None] = field(default_factory=list)
    headers: list[list[Header] | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.offsets)

    @classmethod
    def from_messages(cls, topic: str, partition: int, messages: Sequence[Any]) -> RecordBatch:
        """Build a batch from confluent-kafka ``Message`` objects of one topic-partition."""
        n = len(messages)
        batch = cls(topic, partition)
        offsets: list[int] = [0] * n
        timestamps: list[int] = [0] * n
        ts_types: list[int] = [0] * n
        keys: list[bytes | None] = [None] * n
        values: list[bytes | None] = [None] * n
        headers: list[list[Header] | None] = [None] * n
        for i, m in enumerate(messages):
            offsets[i] = m.offset()
            ts_types[i], timestamps[i] = m.timestamp()
            keys[i] = m.key()
            values[i] = m.value()
            headers[i] = m.headers()
        batch.offsets = offsets
        batch.timestamps = timestamps
        batch.timestamp_types = ts_types
        batch.keys = keys
        batch.values = values
        batch.headers = headers
        return batch

    def take(self, indices: Sequence[int]) -> RecordBatch:
        """A new batch with the records at ``indices`` (in that order)."""
        o, t, tt, k, v, h = (
            self.offsets,
            self.timestamps,
            self.timestamp_types,
            self.keys,
            self.values,
            self.headers,
        )
        return RecordBatch(
            self.topic,
            self.partition,
            [o[i] for i in indices],
            [t[i] for i in indices],
            [tt[i] for i in indices],
            [k[i] for i in indices],
            [v[i] for i in indices],
            [h[i] for i in indices],
        )

    def slice(self, start: int, stop: int) -> RecordBatch:
        return RecordBatch(
            self.topic,
            self.partition,
            self.offsets[start:stop],
            self.timestamps[start:stop],
            self.timestamp_types[start:stop],
            self.keys[start:stop],
            self.values[start:stop],
            self.headers[start:stop],
        )

    def value_bytes(self) -> int:
        """Total size of keys and values, a cheap estimate of the batch's memory."""
        return sum(len(v) for v in self.values if v is not None) + sum(
            len(k) for k in self.keys if k is not None
        )

    @classmethod
    def concat(cls, topic: str, partition: int, batches: Iterable[RecordBatch]) -> RecordBatch:
        out = cls(topic, partition)
        for b in batches:
            out.offsets.extend(b.offsets)
            out.timestamps.extend(b.timestamps)
            out.timestamp_types.extend(b.timestamp_types)
            out.keys.extend(b.keys)
            out.values.extend(b.values)
            out.headers.extend(b.headers)
        return out
