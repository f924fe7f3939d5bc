"""Records as they move through the sink: column-wise batches of one Kafka partition.

A :class:`RecordBatch` holds the records the consumer returned for one topic-partition, in
offset order, as parallel lists. Partitioners and formats work on whole batches (and on the
Arrow table a decoder made of the values), never one Python call chain per field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from itertools import groupby, repeat
from operator import is_not, itemgetter, methodcaller
from typing import Any, NamedTuple

from confluent_kafka import Message

Header = tuple[str, bytes | None]


_FIRST = itemgetter(0)
_SECOND = itemgetter(1)


class _Getters(NamedTuple):
    offset: Callable[[Any], Any]
    timestamp: Callable[[Any], Any]
    key: Callable[[Any], Any]
    value: Callable[[Any], Any]
    headers: Callable[[Any], Any]


def _getters(messages: Sequence[Any]) -> _Getters:
    """confluent-kafka's unbound ``Message`` methods (the fastest to ``map``), or method
    callers for other message-like objects."""
    names = _Getters._fields
    if messages and type(messages[0]) is Message:
        return _Getters(*(getattr(Message, n) for n in names))
    return _Getters(*(methodcaller(n) for n in names))


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
        """Build a batch from confluent-kafka ``Message`` objects of one topic-partition.

        One C-level ``map`` per column (no Python bytecode per message): this runs for every
        record the sink consumes.
        """
        get = _getters(messages)
        stamps = list(map(get.timestamp, messages))
        return cls(
            topic,
            partition,
            list(map(get.offset, messages)),
            list(map(_SECOND, stamps)),
            list(map(_FIRST, stamps)),
            list(map(get.key, messages)),
            list(map(get.value, messages)),
            list(map(get.headers, messages)),
        )

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
        return sum(map(len, filter(None, self.values))) + sum(map(len, filter(None, self.keys)))

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


def split_messages(
    messages: Sequence[Any],
) -> tuple[dict[tuple[str, int], list[Any]], list[tuple[Any, Any]]]:
    """A consumed batch grouped by topic-partition (consume order kept in each group), and the
    error events (``(message, error)``, e.g. partition EOF) in consume order.

    C-level ``map``/``groupby`` over runs of one partition (consume returns long runs), no
    Python bytecode per message.
    """
    if not messages:
        return {}, []
    plain = type(messages[0]) is Message
    error = Message.error if plain else methodcaller("error")
    errors = list(map(error, messages))
    failed: list[tuple[Any, Any]] = []
    if any(map(is_not, errors, repeat(None))):
        failed = [(m, e) for m, e in zip(messages, errors, strict=True) if e is not None]
        messages = [m for m, e in zip(messages, errors, strict=True) if e is None]
        if not messages:
            return {}, failed
    partitions = list(map(Message.partition if plain else methodcaller("partition"), messages))
    topics = list(map(Message.topic if plain else methodcaller("topic"), messages))
    first = (topics[0], partitions[0])
    n = len(messages)
    if topics.count(first[0]) == n and partitions.count(first[1]) == n:
        return {first: list(messages)}, failed
    one_topic = topics.count(first[0]) == n
    keys: list[Any] = partitions if one_topic else list(zip(topics, partitions, strict=True))
    groups: dict[tuple[str, int], list[Any]] = {}
    start = 0
    for key, run in groupby(keys):
        stop = start + len(list(run))
        tp = (first[0], key) if isinstance(key, int) else key
        group = groups.get(tp)
        if group is None:
            groups[tp] = list(messages[start:stop])
        else:
            group.extend(messages[start:stop])
        start = stop
    return groups, failed
