"""Assignment protocols, idle-partition rolls, many partitions under a memory budget; where a
partition resumes (the S3 commit log, never Kafka's committed offset, which is only a progress
hint), ``auto.offset.reset`` and read_committed, against the real broker."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from s3sink.commitlog import Marker
from s3sink.config import SinkConfig, parse
from s3sink.metrics import Metrics
from s3sink.sink import HINT_PREFIX, Sink, storage_from_config
from s3sink.storage.base import Storage
from s3sink.verify import verify
from tests.rig.archive import archived_lines, check_exactly_once, ids_of, markers
from tests.rig.kafka import admin, create_topic, end_offsets, produce_n, unique_name
from tests.rig.s3 import S3Endpoint


def _value(i: int) -> bytes:
    return json.dumps({"id": i, "pad": "x" * 200}).encode()


def _cfg(bootstrap: str, topic: str, root: Path, **extra: str) -> dict[str, str]:
    raw = {
        "name": unique_name("modes"),
        "topics": topic,
        "bootstrap.servers": bootstrap,
        "storage.url": root.as_uri(),
        "format.class": "json",
        "http.listen": "none",
    }
    raw.update(extra)
    return raw


@pytest.mark.parametrize(
    "protocol",
    [
        {"consumer.partition.assignment.strategy": "range"},  # eager
        {"consumer.partition.assignment.strategy": "cooperative-sticky"},
        {"consumer.group.protocol": "consumer"},  # KIP-848
    ],
    ids=["eager", "cooperative", "kip848"],
)
def test_assignment_protocols(
    protocol: dict[str, str], kafka_bootstrap: str, tmp_path: Path
) -> None:
    """One instance archives the topic with each protocol (the rebalances of several instances
    with each protocol: tests/test_exactly_once_faults.py)."""
    topic = create_topic(kafka_bootstrap, 4)
    produce_n(kafka_bootstrap, topic, 2000, value=_value)
    cfg = parse(
        _cfg(kafka_bootstrap, topic, tmp_path, **protocol, **{"flush.size": "300"}), environ={}
    )
    assert Sink(cfg).run(catchup=True).records == 2000
    storage = storage_from_config(cfg)
    got = ids_of(archived_lines(storage, "topics", topic))
    assert check_exactly_once([str(i) for i in range(2000)], got).ok
    assert verify(storage, cfg).ok


def test_idle_partition_rolls_on_the_wall_clock_schedule(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = create_topic(kafka_bootstrap, 2)
    produce_n(kafka_bootstrap, topic, 50, value=_value, partition=lambda i: 0)
    cfg = parse(
        _cfg(
            kafka_bootstrap,
            topic,
            tmp_path,
            **{
                "flush.size": "100000",
                "rotate.schedule.interval.ms": "1000",
            },
        ),
        environ={},
    )
    sink = Sink(cfg)
    t = threading.Thread(target=sink.run, daemon=True)
    t.start()
    try:
        storage = storage_from_config(cfg)
        deadline = time.monotonic() + 30
        commits: list[object] = []
        while time.monotonic() < deadline:
            commits = [m for m in markers(storage, topic, 0) if m.kind == "commit"]
            if commits:
                break
            time.sleep(0.2)
        # no record arrived after the first 50: the schedule alone rolled the file
        assert commits, "the idle partition never rolled"
        assert sum(m.records for m in commits) == 50  # type: ignore[attr-defined]
        assert sink.metrics.total("rotations_total", reason="schedule") >= 1
    finally:
        sink.stop()
        t.join(60)
    assert not t.is_alive()


@pytest.mark.slow
def test_thousand_partitions_take_over_fast_and_stay_in_budget(
    kafka_bootstrap: str, tmp_path: Path, s3_endpoint: S3Endpoint, s3_bucket: str
) -> None:
    parts = 1000
    topic = create_topic(kafka_bootstrap, parts, timeout=120)
    n = 30_000
    produce_n(kafka_bootstrap, topic, n, value=_value, partition=lambda i: i % parts)
    budget = 4 * 1024 * 1024
    cfg = parse(
        _cfg(
            kafka_bootstrap,
            topic,
            tmp_path,
            **{
                "flush.size": "1000000",
                "buffer.memory.bytes": str(budget),
                "consumer.max.partition.fetch.bytes": "65536",
                "storage.url": f"s3://{s3_bucket}",
                "store.url": s3_endpoint.url,
                "s3.path.style.access.enabled": "true",
                "s3.region": s3_endpoint.region,
                "aws.access.key.id": s3_endpoint.access_key,
                "aws.secret.access.key": s3_endpoint.secret_key,
            },
        ),
        environ={},
    )
    metrics = Metrics()
    sink = Sink(cfg, metrics=metrics)
    peak = [0.0]
    orig = metrics.set

    def spy(name: str, value: float, tp: str | None = None, **labels: str) -> None:
        if name == "buffer_memory_bytes":
            peak[0] = max(peak[0], value)
        orig(name, value, tp, **labels)  # type: ignore[arg-type]

    metrics.set = spy  # type: ignore[method-assign]
    started = time.monotonic()
    ready_after: list[float] = []

    def watch() -> None:
        if sink.ready.wait(120):
            ready_after.append(time.monotonic() - started)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    summary = sink.run(catchup=True)
    elapsed = time.monotonic() - started
    watcher.join(1)
    assert summary.records == n
    assert summary.partitions == parts
    took = metrics._hist_sum["takeover_seconds"]  # total across partitions
    print(
        f"1000 partitions: ready after {ready_after[0]:.1f} s, "
        f"catch-up {elapsed:.1f} s, takeovers {took:.1f} s summed, "
        f"peak buffered {peak[0] / 1e6:.1f} MB of {budget / 1e6:.1f} MB"
    )
    # the budget was enforced: the largest buffers rolled early
    assert metrics.total("rotations_total", reason="memory") > 0
    # bounded: never far above the budget (one batch of fetched records over)
    assert peak[0] < budget * 3
    storage = storage_from_config(cfg)
    got = ids_of(archived_lines(storage, "topics", topic))
    assert check_exactly_once([str(i) for i in range(n)], got).ok
    assert elapsed < 120
    assert ready_after and ready_after[0] < 60


def test_takeover_failing_at_assignment_is_retried_not_fatal(kafka_bootstrap: str) -> None:
    """Storage unreachable for one partition when it is assigned: the sink keeps the other
    partitions going and takes that one over once storage answers again."""
    from s3sink.errors import TransientStorageError
    from s3sink.storage.memory import FaultCall, MemoryStorage

    topic = create_topic(kafka_bootstrap, 2)
    produce_n(kafka_bootstrap, topic, 400, value=_value)
    failing_until = time.monotonic() + 4.0
    failed = [0]

    def hook(call: FaultCall) -> None:
        if call.key.startswith(f"_s3sink/log/{topic}/1/") and time.monotonic() < failing_until:
            failed[0] += 1
            raise TransientStorageError("injected: storage unreachable")

    storage = MemoryStorage(fault_hook=hook)
    raw = _cfg(kafka_bootstrap, topic, Path("/unused"))
    raw["storage.url"] = "memory://"
    cfg = parse(raw, environ={})
    summary = Sink(cfg, storage=storage).run(catchup=True)
    assert failed[0] > 0
    assert summary.records == 400
    got = ids_of(archived_lines(storage, "topics", topic))
    assert check_exactly_once([str(i) for i in range(400)], got).ok


# -- where a partition resumes ---------------------------------------------------------------


def _group_offsets(
    bootstrap: str, group: str, topic: str, partitions: int
) -> dict[int, tuple[int, str]]:
    """partition -> (committed offset, its metadata), as the broker stores them for ``group``
    (partitions without a committed offset left out)."""
    request = ConsumerGroupTopicPartitions(
        group, [TopicPartition(topic, p) for p in range(partitions)]
    )
    client = admin(bootstrap)  # held until the result is in (its thread answers the future)
    result = client.list_consumer_group_offsets([request])[group].result(30)
    return {
        tp.partition: (tp.offset, tp.metadata or "")
        for tp in result.topic_partitions
        if tp.offset >= 0
    }


def _alter_group_offsets(bootstrap: str, group: str, offsets: list[TopicPartition]) -> None:
    """Set the group's committed offsets (the group must be empty: retried while the last
    member's leave is still being processed)."""
    client = admin(bootstrap)
    deadline = time.monotonic() + 30
    while True:
        request = ConsumerGroupTopicPartitions(group, offsets)
        try:
            client.alter_consumer_group_offsets([request])[group].result(30)
            return
        except KafkaException:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


def _last_markers(storage: Storage, topic: str, partitions: int) -> dict[int, Marker]:
    out = {}
    for p in range(partitions):
        log = markers(storage, topic, p)
        assert log, f"partition {p}: no commit log"
        assert [m.seq for m in log] == list(range(len(log))), f"partition {p}: seqs"
        out[p] = log[-1]
    return out


def _assert_hints_match_the_log(
    bootstrap: str, cfg: SinkConfig, storage: Storage, topic: str, partitions: int
) -> None:
    """The group's committed offset of each partition is the last commit marker's end, and
    its metadata names that marker's seq."""
    last = _last_markers(storage, topic, partitions)
    hints = _group_offsets(bootstrap, cfg.effective_group_id, topic, partitions)
    for p, marker in last.items():
        assert marker.kind == "commit", f"partition {p}: the log ends with a {marker.kind}"
        assert hints.get(p) == (marker.end, f"{HINT_PREFIX}{marker.seq}"), (p, hints, marker)


def _ids(storage: Storage, topic: str) -> list[str]:
    return ids_of(archived_lines(storage, "topics", topic))


def test_catchup_commits_the_log_end_and_seq_as_the_group_offset(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = create_topic(kafka_bootstrap, 3)
    produce_n(kafka_bootstrap, topic, 900, value=_value, partition=lambda i: i % 3)
    cfg = parse(_cfg(kafka_bootstrap, topic, tmp_path, **{"flush.size": "70"}), environ={})
    assert Sink(cfg).run(catchup=True).records == 900
    storage = storage_from_config(cfg)
    ends = end_offsets(kafka_bootstrap, topic)
    last = _last_markers(storage, topic, 3)
    assert {p: m.end for p, m in last.items()} == ends == {0: 300, 1: 300, 2: 300}
    # several commits per partition: the hint names the last one, not the first
    assert all(m.seq > 1 for m in last.values())
    _assert_hints_match_the_log(kafka_bootstrap, cfg, storage, topic, 3)


def test_a_wrong_group_offset_does_not_move_the_sink(kafka_bootstrap: str, tmp_path: Path) -> None:
    """The group's offsets set back to 0, beyond the end, and to a hint naming a seq the log
    does not have: the next run resumes from the S3 commit log (no duplicate, no gap)."""
    topic = create_topic(kafka_bootstrap, 3)
    produce_n(kafka_bootstrap, topic, 600, value=_value, partition=lambda i: i % 3)
    cfg = parse(_cfg(kafka_bootstrap, topic, tmp_path, **{"flush.size": "60"}), environ={})
    assert Sink(cfg).run(catchup=True).records == 600
    group = cfg.effective_group_id
    wrong = [
        TopicPartition(topic, 0, 0),
        TopicPartition(topic, 1, 1_000_000),
        TopicPartition(topic, 2, 3, metadata=f"{HINT_PREFIX}999999"),
    ]
    _alter_group_offsets(kafka_bootstrap, group, wrong)
    assert _group_offsets(kafka_bootstrap, group, topic, 3) == {
        0: (0, ""),
        1: (1_000_000, ""),
        2: (3, f"{HINT_PREFIX}999999"),
    }

    produce_n(
        kafka_bootstrap, topic, 600, value=lambda i: _value(600 + i), partition=lambda i: i % 3
    )
    assert Sink(cfg).run(catchup=True).records == 600  # only the new records
    storage = storage_from_config(cfg)
    result = check_exactly_once([str(i) for i in range(1200)], _ids(storage, topic))
    assert result.ok, result
    assert verify(storage, cfg).ok
    assert {p: m.end for p, m in _last_markers(storage, topic, 3).items()} == end_offsets(
        kafka_bootstrap, topic
    )
    _assert_hints_match_the_log(kafka_bootstrap, cfg, storage, topic, 3)


def test_auto_offset_reset_latest_applies_only_to_partitions_without_a_log(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    logged = create_topic(kafka_bootstrap, 1, prefix="logged")
    fresh = create_topic(kafka_bootstrap, 1, prefix="fresh")
    produce_n(kafka_bootstrap, logged, 100, value=_value)
    name = unique_name("reset")
    first = parse(
        _cfg(kafka_bootstrap, logged, tmp_path, name=name, **{"flush.size": "40"}), environ={}
    )
    assert Sink(first).run(catchup=True).records == 100

    # while the sink is down: more records on the logged topic, a first batch on the other
    produce_n(kafka_bootstrap, logged, 50, value=lambda i: _value(100 + i))
    produce_n(kafka_bootstrap, fresh, 80, value=lambda i: _value(1000 + i))
    latest = parse(
        _cfg(
            kafka_bootstrap,
            f"{logged},{fresh}",
            tmp_path,
            name=name,
            **{"flush.size": "40", "consumer.auto.offset.reset": "latest"},
        ),
        environ={},
    )
    assert Sink(latest).run(catchup=True).records == 50
    storage = storage_from_config(latest)
    # the partition with a log resumed from it: what arrived while the sink was down is there
    result = check_exactly_once([str(i) for i in range(150)], _ids(storage, logged))
    assert result.ok, result
    # the partition without a log started at its end: nothing archived, the fence says where
    assert _ids(storage, fresh) == []
    assert [(m.kind, m.start, m.end) for m in markers(storage, fresh, 0)] == [("fence", 80, 80)]

    # from now on it has a log: a later run resumes from it, not from the (new) end
    produce_n(kafka_bootstrap, fresh, 20, value=lambda i: _value(1080 + i))
    assert Sink(latest).run(catchup=True).records == 20
    result = check_exactly_once([str(1080 + i) for i in range(20)], _ids(storage, fresh))
    assert result.ok, result
    assert verify(storage, latest).ok


def test_aborted_transactions_never_reach_s3(kafka_bootstrap: str, tmp_path: Path) -> None:
    """read_committed (the default): records of an aborted transaction between committed
    ones are skipped; the log still ends at the partition's end (control records included)."""
    topic = create_topic(kafka_bootstrap, 2)
    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "transactional.id": unique_name("txn")}
    )
    producer.init_transactions(30)

    committed_offsets: dict[int, list[int]] = {0: [], 1: []}

    def transaction(ids: range, *, commit: bool) -> None:
        delivered: list[tuple[int, int]] = []

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            partition, offset = msg.partition(), msg.offset()
            assert err is None and partition is not None and offset is not None, err
            delivered.append((partition, offset))

        producer.begin_transaction()
        for i in ids:
            producer.produce(topic, _value(i), partition=i % 2, on_delivery=on_delivery)
        assert producer.flush(30) == 0
        assert len(delivered) == len(ids)
        if commit:
            for partition, offset in delivered:
                committed_offsets[partition].append(offset)
        if commit:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)

    transaction(range(0, 100), commit=True)
    transaction(range(1000, 1100), commit=False)
    transaction(range(100, 200), commit=True)
    transaction(range(2000, 2010), commit=False)  # the last one aborted, too

    cfg = parse(_cfg(kafka_bootstrap, topic, tmp_path, **{"flush.size": "30"}), environ={})
    assert Sink(cfg).run(catchup=True).records == 200
    storage = storage_from_config(cfg)
    result = check_exactly_once([str(i) for i in range(200)], _ids(storage, topic))
    assert result.ok, result
    ends = end_offsets(kafka_bootstrap, topic)
    # per partition: 100 committed and 55 aborted records, and one control record for each
    # of the 4 transactions
    assert ends == {0: 50 + 50 + 50 + 5 + 4, 1: 50 + 50 + 50 + 5 + 4}
    # the log covers every committed record; what follows the last one is only aborted and
    # control records (a consumer is not handed those, so the log may end before them)
    last = _last_markers(storage, topic, 2)
    for p, marker in last.items():
        assert max(committed_offsets[p]) < marker.end <= ends[p], (p, marker)
    assert verify(storage, cfg).ok

    # the next run starts from the log, skips the rest of the aborted transaction again, and
    # archives what is committed after it, once
    transaction(range(200, 220), commit=True)
    assert Sink(cfg).run(catchup=True).records == 20
    result = check_exactly_once([str(i) for i in range(220)], _ids(storage, topic))
    assert result.ok, result
