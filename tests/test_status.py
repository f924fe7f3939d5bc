"""``s3sink status``: the log side (cost independent of history), the broker side, the output.

Unit tests run on the in-memory storage with logs written through :class:`PartitionLog`; the
integration test runs the sink against the real broker and moto, then checks the status after a
catch-up, after more records are produced (lag > 0), after partitions are added (no log yet)
and after a second catch-up (a new owner epoch).
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from s3sink import cli
from s3sink.clock import ManualClock
from s3sink.commitlog import CHECKPOINT_EVERY, FileEntry, Marker, PartitionLog, marker_key
from s3sink.status import (
    LogTail,
    PartitionStatus,
    StatusReport,
    log_partitions,
    logged_topics,
    read_tail,
)
from s3sink.storage.base import ObjectInfo, Storage
from s3sink.storage.memory import MemoryStorage

TOPIC = "orders"


class Counting:
    """A storage wrapper that counts GET and LIST requests (and pages of LIST)."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def get(self, key: str) -> tuple[bytes, str]:
        self.calls["get"] += 1
        return self.inner.get(key)

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[ObjectInfo]:
        self.calls["list"] += 1
        for n, info in enumerate(self.inner.list(prefix, start_after)):
            if n and n % 1000 == 0:
                self.calls["list"] += 1  # S3 pages of 1000 keys
            yield info

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _log(storage: Storage, partition: int = 0, clock: ManualClock | None = None) -> PartitionLog:
    return PartitionLog(
        storage, TOPIC, partition, "host-1", uuid.uuid4().hex, clock or ManualClock()
    )


def _commit(plog: PartitionLog, records: int, clock: ManualClock) -> Marker:
    assert plog.latest is not None
    start = plog.latest.end
    clock.advance(1000)
    staging = f"_s3sink/staging/{TOPIC}/{plog.partition}/e{plog.latest.epoch}/{uuid.uuid4().hex}"
    info = plog.storage.put(staging, b"x" * records)
    key = f"topics/{TOPIC}/partition={plog.partition}/{TOPIC}+{plog.partition}+{start}.json"
    entry = FileEntry(staging, key, info.etag, info.size, records, start, start + records - 1)
    marker = plog.commit([entry], start + records)
    plog.publish(marker)
    return marker


def test_a_partition_without_a_log() -> None:
    tail = read_tail(MemoryStorage(), TOPIC, 0)
    assert tail == LogTail(TOPIC, 0)
    st = PartitionStatus(TOPIC, 0, tail, 0, 25)
    assert st.state == "no log yet"
    assert st.lag is None
    assert st.as_dict()["last_commit"] is None


def test_last_commit_owner_and_log_end() -> None:
    storage = MemoryStorage()
    clock = ManualClock(1_714_719_600_000)
    plog = _log(storage, clock=clock)
    plog.takeover(None, lambda: 100)
    _commit(plog, 10, clock)
    last = _commit(plog, 5, clock)
    # a later owner took over and has not committed yet
    PartitionLog(storage, TOPIC, 0, "host-2", "a2", clock).takeover(None, lambda: 0)
    tail = read_tail(storage, TOPIC, 0)
    assert tail.last_commit == last
    assert tail.latest is not None and tail.latest.kind == "fence"
    st = PartitionStatus(TOPIC, 0, tail, 100, 130)
    d = st.as_dict()
    assert d["last_commit"]["seq"] == 2
    assert (d["last_commit"]["start_offset"], d["last_commit"]["end_offset"]) == (110, 115)
    assert d["last_commit"]["records"] == 5
    assert d["last_commit"]["created"] == "2024-05-03T07:00:02.000Z"
    assert (d["owner_epoch"], d["writer"]) == (2, "host-2")
    assert d["log_end_offset"] == 115
    assert d["lag"] == 15
    assert st.state == "ok"
    assert PartitionStatus(TOPIC, 0, tail, 120, 130).state == "behind retention"


def test_reading_the_tail_does_not_grow_with_history() -> None:
    storage = MemoryStorage()
    clock = ManualClock()
    plog = _log(storage, clock=clock)
    plog.takeover(None, lambda: 0)
    for _ in range(3 * CHECKPOINT_EVERY + 7):
        last = _commit(plog, 1, clock)
    counting = Counting(storage)
    tail = read_tail(counting, TOPIC, 0)
    assert tail.last_commit == last
    assert counting.calls["list"] == 1
    # the checkpoint, then the markers since it (at most CHECKPOINT_EVERY of them)
    assert counting.calls["get"] <= CHECKPOINT_EVERY + 2
    # with the Kafka commit metadata's seq as the hint: a couple of requests
    counting.calls.clear()
    assert read_tail(counting, TOPIC, 0, hint=last.seq).last_commit == last
    assert counting.calls["list"] == 1 and counting.calls["get"] <= 3


def test_fences_after_the_last_commit_are_stepped_over() -> None:
    storage = MemoryStorage()
    clock = ManualClock()
    plog = _log(storage, clock=clock)
    plog.takeover(None, lambda: 0)
    last = _commit(plog, 3, clock)
    for _ in range(4):  # restarts that found nothing to archive
        _log(storage, clock=clock).takeover(None, lambda: 0)
    tail = read_tail(storage, TOPIC, 0)
    assert tail.last_commit == last
    assert tail.latest is not None and tail.latest.epoch == 5 and tail.latest.end == 3


def test_partitions_and_topics_with_a_log_are_found_without_listing_every_marker() -> None:
    storage = MemoryStorage()
    clock = ManualClock()
    for p in (0, 2, 10):
        plog = _log(storage, p, clock)
        plog.takeover(None, lambda: 0)
        for _ in range(30):
            _commit(plog, 1, clock)
    # a partition whose first takeover died after its fence, before its checkpoint
    fence = Marker(seq=0, epoch=1, kind="fence", writer="w", attempt="a", start=0, end=0)
    storage.put(marker_key(TOPIC, 7, 0), fence.encode())
    storage.put(marker_key("other.topic", 0, 0), fence.encode())
    counting = Counting(storage)
    assert log_partitions(counting, TOPIC) == [0, 2, 7, 10]
    # one LIST of the checkpoints, one LIST per partition (and one more to find the end)
    assert counting.calls["list"] <= 1 + 4 + 1
    assert logged_topics(storage) == ["orders", "other.topic"]


def test_report_text_and_json() -> None:
    storage = MemoryStorage()
    clock = ManualClock(1_714_719_600_000)
    plog = _log(storage, clock=clock)
    plog.takeover(None, lambda: 0)
    _commit(plog, 7, clock)
    report = StatusReport(
        [
            PartitionStatus(TOPIC, 0, read_tail(storage, TOPIC, 0), 0, 9),
            PartitionStatus(TOPIC, 1, read_tail(storage, TOPIC, 1), 0, 4),
        ],
        None,
        clock.now_ms(),
    )
    text = report.text()
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["TOPIC", "PART", "SEQ"]
    assert "[0, 7)" in lines[1] and "2024-05-03 07:00:01" in lines[1] and "host-1" in lines[1]
    assert lines[1].split()[-2:] == ["2", "ok"]
    assert "no log yet" in lines[2]
    assert lines[-1] == "status: 2 partitions, 1 with a commit log, lag 2 records"
    doc = json.loads(report.json())
    assert doc["totals"] == {"partitions": 2, "without_log": 1, "records_lag": 2}
    assert [p["state"] for p in doc["partitions"]] == ["ok", "no log yet"]


# ---------------------------------------------------------------------------------------------
# Against the real broker and S3


def _status(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = cli.main(["status", "-c", str(config), "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


def _by_partition(doc: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {p["partition"]: p for p in doc["partitions"]}


def test_status_after_catchup_and_with_lag(
    kafka_bootstrap: str,
    s3_endpoint: Any,
    s3_bucket: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from confluent_kafka.cimpl import NewPartitions

    from s3sink.config import parse
    from s3sink.sink import Sink
    from tests.rig.kafka import admin, create_topic, produce_n, unique_name

    topic = create_topic(kafka_bootstrap, 3)
    # partitions 0 and 1 get 150 records each, partition 2 none
    produce_n(
        kafka_bootstrap, topic, 300, value=lambda i: b'{"i":%d}' % i, partition=lambda i: i % 2
    )
    raw = {
        "name": unique_name("status"),
        "topics": topic,
        "bootstrap.servers": kafka_bootstrap,
        "format.class": "json",
        "flush.size": "40",
        "http.listen": "none",
        "s3.bucket.name": s3_bucket,
        "store.url": s3_endpoint.url,
        "s3.region": s3_endpoint.region,
        "s3.path.style.access.enabled": "true",
        "aws.access.key.id": s3_endpoint.access_key,
        "aws.secret.access.key": s3_endpoint.secret_key,
    }
    config = tmp_path / "sink.json"
    config.write_text(json.dumps(raw))
    sink = Sink(parse(raw, environ={}))
    assert sink.run(catchup=True).records == 300

    code, doc = _status(config, capsys)
    assert code == 0, doc
    parts = _by_partition(doc)
    assert sorted(parts) == [0, 1, 2]
    for p in (0, 1):
        st = parts[p]
        assert st["state"] == "ok"
        assert st["last_commit"]["end_offset"] == 150 == st["log_end_offset"]
        assert st["last_commit"]["start_offset"] == 120  # flush.size 40: 0..40..80..120..150
        assert st["last_commit"]["records"] == 30
        assert st["owner_epoch"] == 1 and st["writer"] == sink.writer_id
        assert st["high_watermark"] == 150 and st["low_watermark"] == 0
        assert st["lag"] == 0
    # taken over (a fence), nothing to commit
    assert parts[2]["last_commit"] is None and parts[2]["latest_marker"]["kind"] == "fence"
    assert parts[2]["lag"] == 0 and parts[2]["state"] == "ok"
    assert doc["totals"]["records_lag"] == 0

    # more records: lag; a new partition: no log yet
    produce_n(kafka_bootstrap, topic, 40, value=lambda i: b'{"i":%d}' % i, partition=lambda i: 0)
    produce_n(kafka_bootstrap, topic, 5, value=lambda i: b'{"i":%d}' % i, partition=lambda i: 2)
    client = admin(kafka_bootstrap)
    client.create_partitions([NewPartitions(topic, 4)])[topic].result(30)
    deadline = time.monotonic() + 30
    while True:
        md = client.list_topics(topic=topic, timeout=10).topics[topic]
        if len(md.partitions) == 4 and all(p.leader >= 0 for p in md.partitions.values()):
            break
        assert time.monotonic() < deadline, "the new partition has no leader"
        time.sleep(0.1)
    produce_n(kafka_bootstrap, topic, 3, value=lambda i: b'{"i":%d}' % i, partition=lambda i: 3)
    code, doc = _status(config, capsys)
    assert code == 0
    parts = _by_partition(doc)
    assert (parts[0]["high_watermark"], parts[0]["lag"]) == (190, 40)
    assert parts[1]["lag"] == 0
    assert parts[2]["lag"] == 5
    assert parts[3]["state"] == "no log yet" and parts[3]["lag"] is None
    assert parts[3]["high_watermark"] == 3 and parts[3]["owner_epoch"] is None
    assert doc["totals"] == {"partitions": 4, "without_log": 1, "records_lag": 45}

    assert cli.main(["status", "-c", str(config)]) == 0
    table = capsys.readouterr().out.splitlines()
    row0 = next(line for line in table if line.split()[:2] == [topic, "0"])
    assert "[120, 150)" in row0 and row0.split()[-2:] == ["40", "ok"]
    assert "no log yet" in next(line for line in table if line.split()[:2] == [topic, "3"])
    assert table[-1] == "status: 4 partitions, 3 with a commit log, lag 45 records"

    # a second catch-up: everything archived, a new owner epoch
    again = Sink(parse(raw, environ={}))
    assert again.run(catchup=True).records == 48
    code, doc = _status(config, capsys)
    parts = _by_partition(doc)
    assert all(p["lag"] == 0 for p in parts.values()), parts
    assert parts[0]["owner_epoch"] == 2 and parts[0]["log_end_offset"] == 190
    assert parts[3]["owner_epoch"] == 1 and parts[3]["last_commit"]["records"] == 3


def test_status_says_when_the_broker_cannot_be_reached(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage_dir = tmp_path / "store"
    config = tmp_path / "sink.properties"
    config.write_text(
        f"topics={TOPIC}\nbootstrap.servers=127.0.0.1:9\nstorage.url={storage_dir.as_uri()}\n"
    )
    from s3sink.storage.url import open_storage

    storage = open_storage(storage_dir.as_uri())
    clock = ManualClock()
    plog = _log(storage, clock=clock)
    plog.takeover(None, lambda: 0)
    _commit(plog, 4, clock)
    code = cli.main(["status", "-c", str(config), "--timeout", "2"])
    out = capsys.readouterr().out
    assert code == 1
    assert "[0, 4)" in out
    assert "watermarks and lag unknown" in out
