"""Kafka helpers for tests: unique topics, producing with delivery reports, consuming to the end.

Everything talks to a real broker (the rig's, or ``KAFKA_BOOTSTRAP_SERVERS``); nothing is mocked.
Delivery reports are kept compact (``Delivered`` tuples) because exactly-once checks compare
tens of thousands of them against what landed in S3.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

Headers = Sequence[tuple[str, bytes | None]]


def unique_name(prefix: str = "t") -> str:
    """A topic/group name no other test (or earlier run against the same broker) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def create_topic(
    bootstrap: str,
    partitions: int = 1,
    *,
    name: str | None = None,
    prefix: str = "t",
    config: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> str:
    """Create a topic (unique name unless given) and wait until every partition has a leader."""
    topic = name or unique_name(prefix)
    client = admin(bootstrap)
    futures = client.create_topics(
        [
            NewTopic(
                topic, num_partitions=partitions, replication_factor=1, config=dict(config or {})
            )
        ],
        request_timeout=timeout,
    )
    futures[topic].result(timeout=timeout)
    deadline = time.monotonic() + timeout
    while True:
        metadata = client.list_topics(topic=topic, timeout=timeout).topics.get(topic)
        if (
            metadata is not None
            and metadata.error is None
            and len(metadata.partitions) == partitions
            and all(p.leader >= 0 for p in metadata.partitions.values())
        ):
            return topic
        if time.monotonic() >= deadline:
            raise TimeoutError(f"topic {topic} has no leader for all {partitions} partitions")
        time.sleep(0.05)


def partition_count(bootstrap: str, topic: str, timeout: float = 10.0) -> int:
    metadata = admin(bootstrap).list_topics(topic=topic, timeout=timeout).topics.get(topic)
    if metadata is None or metadata.error is not None:
        raise LookupError(f"topic {topic} does not exist")
    return len(metadata.partitions)


# -- producing -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProducerRecord:
    value: bytes | None
    key: bytes | None = None
    headers: Headers | None = None
    timestamp_ms: int | None = None
    partition: int | None = None


class Delivered(NamedTuple):
    """Where one produced record landed; ``seq`` is its position in the produce call."""

    topic: str
    partition: int
    offset: int
    seq: int


@dataclass(frozen=True, slots=True)
class Deliveries:
    """The delivery reports of one produce call, in the order the records were produced."""

    topic: str
    records: tuple[Delivered, ...]
    _by_index: dict[int, Delivered] = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Delivered]:
        return iter(self.records)

    def by_partition(self) -> dict[int, list[int]]:
        """partition → sorted offsets of the records produced there."""
        out: dict[int, list[int]] = {}
        for record in self.records:
            out.setdefault(record.partition, []).append(record.offset)
        for offsets in out.values():
            offsets.sort()
        return out

    def end_offsets(self) -> dict[int, int]:
        """partition → the offset after the last produced record (what a consumer commits)."""
        return {p: offsets[-1] + 1 for p, offsets in self.by_partition().items()}

    def positions(self) -> dict[tuple[int, int], int]:
        """(partition, offset) → ``seq`` of the produced record."""
        return {(r.partition, r.offset): r.seq for r in self.records}


def _producer(bootstrap: str, config: Mapping[str, Any] | None) -> Producer:
    settings: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "batch.num.messages": 10000,
    }
    settings.update(config or {})
    return Producer(settings)


def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[ProducerRecord],
    *,
    config: Mapping[str, Any] | None = None,
    timeout: float = 60.0,
) -> Deliveries:
    """Produce ``records`` (idempotent, acks=all) and return their delivery reports.

    Raises if any record fails or is not acknowledged within ``timeout``.
    """
    producer = _producer(bootstrap, config)
    delivered: list[Delivered | None] = []
    errors: list[str] = []

    def report(index: int) -> Callable[[KafkaError | None, Message], None]:
        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                errors.append(f"record {index}: {err}")
            else:
                delivered[index] = Delivered(*_where(msg), index)

        return on_delivery

    for index, record in enumerate(records):
        delivered.append(None)
        kwargs: dict[str, Any] = {"value": record.value, "on_delivery": report(index)}
        if record.key is not None:
            kwargs["key"] = record.key
        if record.headers is not None:
            kwargs["headers"] = list(record.headers)
        if record.timestamp_ms is not None:
            kwargs["timestamp"] = record.timestamp_ms
        if record.partition is not None:
            kwargs["partition"] = record.partition
        while True:
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:  # local queue full: let deliveries drain
                producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(timeout)
    if errors:
        raise KafkaException(f"{len(errors)} records failed, first: {errors[0]}")
    if remaining:
        raise TimeoutError(f"{remaining} records not acknowledged within {timeout}s")
    missing = [i for i, d in enumerate(delivered) if d is None]
    if missing:
        raise RuntimeError(f"no delivery report for records {missing[:10]}")
    return Deliveries(topic, tuple(d for d in delivered if d is not None))


def produce_n(
    bootstrap: str,
    topic: str,
    n: int,
    *,
    value: Callable[[int], bytes | None] = lambda i: b"value-%d" % i,
    key: Callable[[int], bytes | None] | None = lambda i: b"key-%d" % i,
    headers: Callable[[int], Headers | None] | None = None,
    timestamp_ms: Callable[[int], int | None] | None = None,
    partition: Callable[[int], int | None] | None = None,
    config: Mapping[str, Any] | None = None,
    timeout: float = 60.0,
) -> Deliveries:
    """Produce ``n`` generated records; each callable gets the record's index."""
    records = (
        ProducerRecord(
            value=value(i),
            key=key(i) if key else None,
            headers=headers(i) if headers else None,
            timestamp_ms=timestamp_ms(i) if timestamp_ms else None,
            partition=partition(i) if partition else None,
        )
        for i in range(n)
    )
    return produce(bootstrap, topic, records, config=config, timeout=timeout)


# -- consuming -------------------------------------------------------------------------------


class Consumed(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp_ms: int


T = TypeVar("T")


def _with_consumer(
    bootstrap: str, group_id: str, timeout: float, call: Callable[[Consumer], T]
) -> T:
    """``call`` with a fresh consumer, retried for ``timeout`` on the errors a broker gives
    while it settles after a restart (leadership or the group coordinator not back yet)."""
    deadline = time.monotonic() + timeout
    while True:
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group_id})
        try:
            return call(consumer)
        except KafkaException as exc:
            if not _settling(exc) or time.monotonic() >= deadline:
                raise
        finally:
            consumer.close()
        time.sleep(0.2)


def watermarks(bootstrap: str, topic: str, timeout: float = 10.0) -> dict[int, tuple[int, int]]:
    """partition → (low, high) watermark offsets (retried while a restarted broker settles)."""

    def read(consumer: Consumer) -> dict[int, tuple[int, int]]:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            for p in range(partition_count(bootstrap, topic))
        }

    return _with_consumer(bootstrap, unique_name("wm"), timeout, read)


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    return {p: high for p, (_, high) in watermarks(bootstrap, topic).items()}


def committed_offsets(bootstrap: str, group_id: str, topic: str) -> dict[int, int]:
    """partition → the group's committed offset (partitions without a commit are left out)."""
    partitions = [TopicPartition(topic, p) for p in range(partition_count(bootstrap, topic))]
    committed = _with_consumer(
        bootstrap, group_id, 30, lambda c: c.committed(partitions, timeout=30)
    )
    return {tp.partition: tp.offset for tp in committed if tp.offset >= 0}


def _settling(exc: KafkaException) -> bool:
    """An error a broker gives while it settles after a restart."""
    err = exc.args[0] if exc.args else None
    return isinstance(err, KafkaError) and (
        err.retriable()
        or err.code()
        in (
            KafkaError.NOT_LEADER_FOR_PARTITION,
            KafkaError.NOT_COORDINATOR,
            KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
            KafkaError.COORDINATOR_NOT_AVAILABLE,
        )
    )


def consume(
    bootstrap: str,
    topic: str,
    *,
    group_id: str | None = None,
    commit: bool = False,
    config: Mapping[str, Any] | None = None,
    timeout: float = 60.0,
) -> list[Consumed]:
    """Consume up to the end offsets seen at the call and return the records.

    Without ``group_id`` it reads every partition from the beginning. With one it subscribes
    as that consumer group, starts from the group's committed offsets (``earliest`` if none)
    and, with ``commit``, commits its final positions synchronously before returning.
    """
    if commit and group_id is None:
        raise ValueError("commit needs a group_id")
    marks = watermarks(bootstrap, topic)
    settings: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": group_id or unique_name("read"),
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "enable.partition.eof": False,
    }
    settings.update(config or {})
    consumer = Consumer(settings)
    records: list[Consumed] = []
    position: dict[int, int] = {}

    def take(msg: Message | None) -> None:
        if msg is None:
            return
        if msg.error() is not None:
            raise KafkaException(msg.error())
        topic_, partition, offset = _where(msg)
        records.append(
            Consumed(
                topic_, partition, offset, msg.key(), msg.value(), _headers(msg),
                msg.timestamp()[1],
            )
        )  # fmt: skip
        position[partition] = offset + 1

    deadline = time.monotonic() + timeout
    try:
        if group_id is None:
            consumer.assign([TopicPartition(topic, p, low) for p, (low, _) in marks.items()])
            start = {p: low for p, (low, _) in marks.items()}
        else:
            assigned: set[int] = set()

            def on_assign(_: Consumer, partitions: list[TopicPartition]) -> None:
                assigned.update(tp.partition for tp in partitions)

            consumer.subscribe([topic], on_assign=on_assign)
            while len(assigned) < len(marks):
                take(consumer.poll(0.1))
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"group {group_id} got no full assignment of {topic}")
            committed = consumer.committed([TopicPartition(topic, p) for p in marks], timeout)
            start = {
                tp.partition: tp.offset if tp.offset >= 0 else marks[tp.partition][0]
                for tp in committed
            }
        for p, offset in start.items():
            position.setdefault(p, offset)
        while any(position[p] < high for p, (_, high) in marks.items()):
            for msg in consumer.consume(1000, 0.2):
                take(msg)
            if time.monotonic() >= deadline:
                behind = {p: (position[p], h) for p, (_, h) in marks.items() if position[p] < h}
                raise TimeoutError(f"consuming {topic} stalled at (position, end): {behind}")
        if commit:
            consumer.commit(
                offsets=[TopicPartition(topic, p, off) for p, off in position.items()],
                asynchronous=False,
            )
        return records
    finally:
        consumer.close()


def _where(msg: Message) -> tuple[str, int, int]:
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    if topic is None or partition is None or offset is None:
        raise RuntimeError(f"message without a position: {topic}/{partition}/{offset}")
    return topic, partition, offset


def _headers(msg: Message) -> tuple[tuple[str, bytes | None], ...]:
    raw = msg.headers() or ()
    pairs = raw.items() if isinstance(raw, dict) else raw
    return tuple((k, v.encode() if isinstance(v, str) else v) for k, v in pairs)
