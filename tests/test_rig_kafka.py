"""The Kafka rig is a real broker: records and committed offsets survive a broker restart."""

from __future__ import annotations

from collections import Counter

import pytest

from s3sink.local import KafkaBroker
from tests.rig.kafka import (
    ProducerRecord,
    committed_offsets,
    consume,
    create_topic,
    end_offsets,
    partition_count,
    produce,
    produce_n,
    unique_name,
)

N = 10_000


def test_produce_consume_commit_then_restart_keeps_records_and_offsets(
    kafka_broker: KafkaBroker,
) -> None:
    bootstrap = kafka_broker.bootstrap
    topic = create_topic(bootstrap, partitions=3)
    deliveries = produce_n(bootstrap, topic, N)

    assert len(deliveries) == N
    by_partition = deliveries.by_partition()
    assert set(by_partition) == {0, 1, 2}, "keyed records spread over all 3 partitions"
    for offsets in by_partition.values():
        assert offsets == list(range(len(offsets))), "offsets are dense from 0"
    assert sorted(d.seq for d in deliveries) == list(range(N))

    group = unique_name("group")
    first = consume(bootstrap, topic, group_id=group, commit=True)
    assert len(first) == N
    assert Counter((r.partition, r.offset) for r in first) == Counter(
        (d.partition, d.offset) for d in deliveries
    )
    positions = deliveries.positions()
    for record in first:
        seq = positions[(record.partition, record.offset)]
        assert record.value == b"value-%d" % seq
        assert record.key == b"key-%d" % seq
    assert committed_offsets(bootstrap, group, topic) == deliveries.end_offsets()

    pid_before = kafka_broker.pid()
    kafka_broker.restart()
    assert kafka_broker.pid() not in (None, pid_before), "a new broker process runs"
    assert kafka_broker.bootstrap == bootstrap, "the restart keeps the address"

    assert partition_count(bootstrap, topic) == 3
    assert end_offsets(bootstrap, topic) == deliveries.end_offsets()
    assert committed_offsets(bootstrap, group, topic) == deliveries.end_offsets()
    again = consume(bootstrap, topic)
    assert sorted((r.partition, r.offset, r.value) for r in again) == sorted(
        (r.partition, r.offset, r.value) for r in first
    )
    # The group resumes at its committed offsets: nothing is redelivered.
    assert consume(bootstrap, topic, group_id=group, commit=True) == []

    more = produce_n(bootstrap, topic, 30, value=lambda i: b"after-%d" % i)
    resumed = consume(bootstrap, topic, group_id=group, commit=True)
    assert sorted(r.value or b"" for r in resumed) == sorted(b"after-%d" % i for i in range(30))
    assert len(more) == 30


def test_restart_after_a_crash_keeps_acknowledged_records(kafka_broker: KafkaBroker) -> None:
    bootstrap = kafka_broker.bootstrap
    topic = create_topic(bootstrap, partitions=2)
    deliveries = produce_n(bootstrap, topic, 500)

    kafka_broker.restart(kill=True)  # SIGKILL: no clean shutdown

    assert end_offsets(bootstrap, topic) == deliveries.end_offsets()
    assert len(consume(bootstrap, topic)) == 500


def test_produce_keeps_keys_headers_timestamps_and_partitions(kafka_bootstrap: str) -> None:
    topic = create_topic(kafka_bootstrap, partitions=2)
    records = [
        ProducerRecord(b"a", key=b"k1", headers=[("h", b"1"), ("h", b"2")], timestamp_ms=1_000),
        ProducerRecord(value=None, key=b"k2", timestamp_ms=2_000, partition=1),  # a tombstone
        ProducerRecord(value=b"c", partition=0, timestamp_ms=3_000),
    ]
    deliveries = produce(kafka_bootstrap, topic, records)
    assert [d.partition for d in deliveries][1:] == [1, 0]

    got = {(r.partition, r.offset): r for r in consume(kafka_bootstrap, topic)}
    for delivered, sent in zip(deliveries, records, strict=True):
        record = got[(delivered.partition, delivered.offset)]
        assert record.value == sent.value
        assert record.key == sent.key
        assert record.timestamp_ms == sent.timestamp_ms
        assert record.headers == tuple(sent.headers or ())


def test_consume_without_group_needs_no_commit() -> None:
    with pytest.raises(ValueError, match="group_id"):
        consume("127.0.0.1:1", "t", commit=True)
