"""Bad records end to end, on the real broker: one invalid JSON value at offset ``K`` among good
ones, archived by ``value.converter=json``.

* ``errors.tolerance=none``: ``s3sink catchup`` (a subprocess) exits non-zero naming the topic,
  partition, offset and reason; nothing at or past ``K`` is committed, neither in the commit log
  and its files nor in Kafka's group offsets.
* ``errors.tolerance=all`` with a dead-letter topic: the bad record is there with its original
  key, value and headers byte for byte plus the ``__connect.errors.*`` context headers; the good
  records are archived exactly once; the bad-record and dead-lettered counters say 1.
* ``errors.tolerance=all`` without one: the bad record is in an error file under
  ``_s3sink/errors/``, committed by the same marker as the good records around it.
"""

from __future__ import annotations

import base64
import itertools
import json
import uuid
from pathlib import Path

from confluent_kafka.admin import AdminClient

from s3sink.commitlog import Marker
from s3sink.config import parse
from s3sink.sink import Sink, storage_from_config
from s3sink.storage.base import Storage
from tests.rig.archive import archived_lines, markers, read_lines
from tests.rig.kafka import (
    ProducerRecord,
    committed_offsets,
    consume,
    create_topic,
    produce,
    unique_name,
)
from tests.rig.sinkproc import run_command

K = 17  # offset of the bad record
N = 40  # records in the topic
FLUSH = 5
BAD = b'{"id": 17, "name": "broken'  # cut off: not valid JSON
BAD_KEY = b"\x00key-\xff17"  # not UTF-8: must come back as the same bytes
BAD_HEADERS = [("trace", b"\x01\x02\xfe"), ("trace", b"second"), ("empty", b"")]


def _good(i: int) -> bytes:
    return json.dumps({"id": i, "name": f"user-{i}"}).encode()


def _records(offsets: range) -> list[ProducerRecord]:
    out = []
    for i in offsets:
        if i == K:
            out.append(
                ProducerRecord(BAD, key=BAD_KEY, headers=BAD_HEADERS, timestamp_ms=1_000 + i)
            )
        else:
            out.append(
                ProducerRecord(
                    _good(i), key=b"key-%d" % i, headers=[("h", b"%d" % i)], timestamp_ms=1_000 + i
                )
            )
    return out


def _topic(bootstrap: str, first: int = 0) -> str:
    """A one-partition topic whose record ``i`` sits at offset ``i`` (from ``first`` on)."""
    topic = create_topic(bootstrap, 1, prefix="errors")
    if first:
        produce(bootstrap, topic, _records(range(first)))
    return topic


def _fill(bootstrap: str, topic: str, first: int = 0) -> None:
    delivered = produce(bootstrap, topic, _records(range(first, N)))
    assert [d.offset for d in delivered] == list(range(first, N))


def _config(bootstrap: str, topic: str, store: Path, **extra: str) -> dict[str, str]:
    raw = {
        "name": unique_name("errors"),
        "topics": topic,
        "bootstrap.servers": bootstrap,
        "storage.url": store.as_uri(),
        "value.converter": "json",
        "format.class": "json",
        "store.kafka.metadata": "true",
        "flush.size": str(FLUSH),
        "http.listen": "none",
    }
    raw.update(extra)
    return raw


def _archived(storage: Storage, topic: str) -> list[tuple[int, int]]:
    """(offset, id) of every line in the data files, as a reader lists them."""
    out = []
    for line in archived_lines(storage, "topics", topic):
        doc = json.loads(line)
        out.append((doc["_kafka"]["offset"], doc["value"]["id"]))
    return sorted(out)


def _commits(storage: Storage, topic: str) -> list[Marker]:
    """The partition's commit log, checked to be gap-free."""
    ms = sorted(markers(storage, topic, 0), key=lambda m: m.seq)
    assert [m.seq for m in ms] == list(range(len(ms)))
    assert all(b.start == a.end for a, b in itertools.pairwise(ms))
    return ms


def test_tolerance_none_stops_at_the_bad_record(kafka_bootstrap: str, tmp_path: Path) -> None:
    first = 12  # archived by a first catch-up: commits exist before the bad record
    topic = _topic(kafka_bootstrap, first)
    raw = _config(kafka_bootstrap, topic, tmp_path / "store")
    cfg = parse(raw, environ={})
    assert Sink(cfg).run(catchup=True).records == first
    _fill(kafka_bootstrap, topic, first)

    code, output = run_command("catchup", raw, tmp_path, "catchup", timeout=90)
    assert code != 0, output
    error = next(line for line in output.splitlines() if line.startswith("s3sink: error:"))
    assert f"record {topic}-0 offset {K} cannot be written" in error, error
    assert "not valid JSON" in error, error

    storage = storage_from_config(cfg)
    ms = _commits(storage, topic)
    assert ms and first <= ms[-1].end <= K
    assert all(f.last_offset < K for m in ms for f in m.files)
    archived = _archived(storage, topic)
    assert archived == [(i, i) for i in range(ms[-1].end)]  # nothing at or past K
    assert [i.key for i in storage.list(f"_s3sink/errors/{topic}/")] == []
    # the group's offset is a progress hint: it may lag the log, but never pass the bad record
    committed = committed_offsets(kafka_bootstrap, cfg.effective_group_id, topic)
    assert committed.get(0, 0) <= K, committed


def test_tolerance_all_sends_the_bad_record_to_the_dead_letter_topic(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = _topic(kafka_bootstrap)
    # the sink creates the dead-letter topic, as Kafka Connect does: one partition, and the
    # configured replication factor (3 by default) lowered to the rig's single broker
    dlq = f"dlq-{uuid.uuid4().hex[:12]}"
    _fill(kafka_bootstrap, topic)
    raw = _config(
        kafka_bootstrap,
        topic,
        tmp_path / "store",
        **{"errors.tolerance": "all", "errors.deadletterqueue.topic.name": dlq},
    )
    cfg = parse(raw, environ={})
    sink = Sink(cfg)
    summary = sink.run(catchup=True)
    assert summary.records == N - 1 and summary.bad_records == 1
    assert sink.metrics.total("bad_records_total") == 1
    assert sink.metrics.total("dead_lettered_records_total") == 1
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    assert len(admin.list_topics(dlq, timeout=10).topics[dlq].partitions) == 1

    [dead] = consume(kafka_bootstrap, dlq)
    assert dead.key == BAD_KEY
    assert dead.value == BAD
    assert dead.timestamp_ms == 1_000 + K
    original, context = dead.headers[: len(BAD_HEADERS)], dict(dead.headers[len(BAD_HEADERS) :])
    assert list(original) == BAD_HEADERS
    message = context.pop("__connect.errors.exception.message")
    assert message is not None and message.startswith(b"not valid JSON"), message
    assert context == {
        "__connect.errors.topic": topic.encode(),
        "__connect.errors.partition": b"0",
        "__connect.errors.offset": str(K).encode(),
        "__connect.errors.connector.name": cfg.name.encode(),
        "__connect.errors.stage": b"VALUE_CONVERTER",
        "__connect.errors.exception.class.name": b"s3sink.errors.RecordError",
    }

    storage = storage_from_config(cfg)
    assert _archived(storage, topic) == [(i, i) for i in range(N) if i != K]
    assert [i.key for i in storage.list("_s3sink/errors/")] == []
    ms = _commits(storage, topic)
    assert ms[-1].end == N


def test_tolerance_all_without_a_topic_commits_the_bad_record_with_its_neighbours(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = _topic(kafka_bootstrap)
    _fill(kafka_bootstrap, topic)
    raw = _config(kafka_bootstrap, topic, tmp_path / "store", **{"errors.tolerance": "all"})
    cfg = parse(raw, environ={})
    sink = Sink(cfg)
    summary = sink.run(catchup=True)
    assert summary.records == N - 1 and summary.bad_records == 1
    assert sink.metrics.total("dead_lettered_records_total") == 1

    storage = storage_from_config(cfg)
    assert _archived(storage, topic) == [(i, i) for i in range(N) if i != K]
    [error_key] = [i.key for i in storage.list("_s3sink/errors/")]
    assert error_key.startswith(f"_s3sink/errors/{topic}/0/{topic}+0+")
    [line] = read_lines(storage, error_key)
    bad = json.loads(line)
    assert (bad["topic"], bad["partition"], bad["offset"]) == (topic, 0, K)
    assert bad["reason"].startswith("not valid JSON")
    assert base64.b64decode(bad["value"]) == BAD
    assert base64.b64decode(bad["key"]) == BAD_KEY
    assert [(k, base64.b64decode(v)) for k, v in bad["headers"]] == BAD_HEADERS

    ms = _commits(storage, topic)
    assert ms[-1].end == N
    [marker] = [m for m in ms if any(f.role == "errors" for f in m.files)]
    [err] = [f for f in marker.files if f.role == "errors"]
    assert (err.key, err.records, err.first_offset, err.last_offset) == (error_key, 1, K, K)
    assert marker.start <= K < marker.end
    data = [f for f in marker.files if f.role == "data"]
    # the good records on both sides of the bad one are in the same commit
    assert any(f.first_offset < K < f.last_offset for f in data), marker.files
