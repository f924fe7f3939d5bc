"""``s3sink restore`` against real brokers and real storage.

Records with keys (null, empty, binary), headers (null values, duplicates), tombstones and
explicit timestamps are archived by the sink in process (``format.class=backup``), then
restored into a new topic on the same broker and into a second broker; the targets must hold
the same records byte for byte, in the same per-partition order, read with
``isolation.level=read_committed``. The restore is also killed with SIGKILL mid-way (inside a
transaction, and from outside) and run again: nothing lost, nothing repeated -- for a backup
archive and for a json one, whose progress moves a whole commit at a time. Timestamps are
written as CreateTime (LogAppendTime sources included), a LogAppendTime target stamps its own,
and records archived with timestamp 0 or none get the produce time. Bad records
(error files, a dead-letter topic) are skipped without a false gap; files no marker names are
never read, and a committed file missing from its final key is read from its staging copy.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import fastavro
import pyarrow.parquet as pq
import pytest
from confluent_kafka import Consumer, TopicPartition

from formats import load_format
from formats.decoders import load_value_decoder
from s3sink.clock import ManualClock
from s3sink.commitlog import ROOT, PartitionLog
from s3sink.committer import Committer
from s3sink.config import SinkConfig, parse
from s3sink.context import build_context
from s3sink.metrics import Metrics
from s3sink.records import RecordBatch
from s3sink.restore import (
    DEFAULT_PROGRESS_TOPIC,
    KILL_ENV,
    RestoreError,
    RestoreOptions,
    Restorer,
    decode_file,
    job_name,
    parse_partitions,
    parse_time,
    read_plan,
    sidecar_of,
)
from s3sink.rotation import RotationReason
from s3sink.sink import Sink, storage_from_config
from s3sink.storage.base import Storage
from s3sink.storage.memory import MemoryStorage
from s3sink.writer import PartitionWriter
from tests.rig.archive import markers
from tests.rig.kafka import (
    Consumed,
    Deliveries,
    _headers,
    _where,
    create_topic,
    produce_n,
    unique_name,
)
from tests.rig.s3 import S3Endpoint

T0 = 1_600_000_000_000

# -- helpers ---------------------------------------------------------------------------------


def _value(i: int) -> bytes | None:
    if i % 17 == 0:
        return None  # tombstone
    if i % 19 == 0:
        return b""
    return b"v-%d\n\x00\xff" % i + bytes(range(i % 7))


def _key(i: int) -> bytes | None:
    if i % 5 == 0:
        return None
    if i % 23 == 0:
        return b""
    return b"k-%d" % (i % 40)


def _headers_of(i: int) -> list[tuple[str, bytes | None]] | None:
    if i % 3 == 0:
        return [("trace", b"t%d" % i), ("trace", None), ("empty", b"")]
    return None


def produce_varied(bootstrap: str, topic: str, n: int) -> Deliveries:
    return produce_n(
        bootstrap,
        topic,
        n,
        value=_value,
        key=_key,
        headers=_headers_of,
        timestamp_ms=lambda i: T0 + i * 1000,
    )


def read_committed(
    bootstrap: str, topic: str, *, stable: bool = False, timeout: float = 60.0
) -> list[Consumed]:
    """Every committed record of ``topic`` (``read_committed``), up to the end of each partition
    (``stable``: up to the last stable offset, before a transaction still open).

    The position, not the last record, tells the end: transaction markers take offsets too.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique_name("rc"),
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    try:
        parts = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        tps = [TopicPartition(topic, p) for p in parts]
        # the log end: transaction markers are written after commit returns, so the last
        # stable offset a read_committed client is told may still lag behind it
        highs = log_ends(bootstrap, topic, stable=stable)
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        out: list[Consumed] = []
        deadline = time.monotonic() + timeout
        while True:
            for m in consumer.consume(1000, 0.2):
                assert m.error() is None, m.error()
                _, partition, offset = _where(m)
                out.append(
                    Consumed(
                        topic, partition, offset, m.key(), m.value(), _headers(m), m.timestamp()[1]
                    )
                )
            pos = {tp.partition: tp.offset for tp in consumer.position(tps)}
            if all(highs[p] == 0 or pos[p] >= highs[p] for p in parts):
                return out
            assert time.monotonic() < deadline, f"{topic} stalled at {pos}, end {highs}"
    finally:
        consumer.close()


Rec = tuple[bytes | None, bytes | None, tuple[tuple[str, bytes | None], ...], int]


def by_partition(records: list[Consumed]) -> dict[int, list[Rec]]:
    out: dict[int, list[Rec]] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        out.setdefault(r.partition, []).append((r.key, r.value, r.headers, r.timestamp_ms))
    return out


def values_by_partition(records: list[Consumed]) -> dict[int, list[bytes | None]]:
    return {p: [r[1] for r in rs] for p, rs in by_partition(records).items()}


def log_ends(bootstrap: str, topic: str, *, stable: bool = False) -> dict[int, int]:
    """partition -> log end offset, open and aborted transactions included (``stable``: the
    last stable offset, which stops before the first open transaction)."""
    isolation = "read_committed" if stable else "read_uncommitted"
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique_name("wm"),
            "isolation.level": isolation,
        }
    )
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in parts
        }
    finally:
        consumer.close()


def high_watermarks(bootstrap: str, topic: str) -> int:
    return sum(log_ends(bootstrap, topic).values())


def sink_config(bootstrap: str, topic: str, storage: dict[str, str], **extra: str) -> SinkConfig:
    raw = {
        "name": unique_name("sink"),
        "topics": topic,
        "bootstrap.servers": bootstrap,
        "format.class": "backup",
        "flush.size": "700",
        "http.listen": "none",
        "shutdown.timeout.ms": "20000",
        **storage,
        **extra,
    }
    return parse(raw, environ={})


def s3_storage(endpoint: S3Endpoint, bucket: str) -> dict[str, str]:
    return {
        "s3.bucket.name": bucket,
        "store.url": endpoint.url,
        "s3.region": endpoint.region,
        "s3.path.style.access.enabled": "true",
        "aws.access.key.id": endpoint.access_key,
        "aws.secret.access.key": endpoint.secret_key,
    }


def archive(cfg: SinkConfig, n: int) -> None:
    summary = Sink(cfg).run(catchup=True)
    # (the catch-up summary counts the rows of keys/headers files too)
    sidecars = int(cfg.store_kafka_keys) + int(cfg.store_kafka_headers)
    assert summary.records in (n, n * (1 + sidecars)), summary.text()


def murmur2(data: bytes) -> int:
    """The Java client's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``), unsigned."""
    m, length = 0x5BD1E995, len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(length // 4):
        k = int.from_bytes(data[i * 4 : i * 4 + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail, rest = length & ~3, length % 4
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


# -- unit ------------------------------------------------------------------------------------


def test_parse_time_and_partitions() -> None:
    assert parse_time("1600000000000") == 1_600_000_000_000
    assert parse_time("2020-09-13T12:26:40Z") == 1_600_000_000_000
    assert parse_time("2020-09-13T14:26:40+02:00") == 1_600_000_000_000
    assert parse_time("2020-09-13") == 1_599_955_200_000  # midnight UTC
    with pytest.raises(Exception, match="ISO 8601"):
        parse_time("yesterday")
    assert parse_partitions("0, 2,5-7") == (0, 2, 5, 6, 7)
    with pytest.raises(Exception, match="partitions like"):
        parse_partitions("a")


def test_job_name_depends_on_target_and_window() -> None:
    cfg = SinkConfig(bootstrap_servers="x:1", name="arch")
    a = job_name(cfg, "orders", RestoreOptions(to_topic="orders-r"))
    assert a == "arch.orders.to.orders-r"
    windowed = job_name(cfg, "orders", RestoreOptions(to_topic="orders-r", from_ms=5))
    assert windowed.startswith(a + ".") and windowed != a
    assert job_name(cfg, "orders", RestoreOptions(to_topic="x", job="my job/1")) == "my_job_1"


def test_murmur2_matches_the_java_client() -> None:
    # vectors from Kafka's UtilsTest.testMurmur2 (signed ints there)
    assert murmur2(b"21") == -973932308 & 0xFFFFFFFF
    assert murmur2(b"foobar") == -790332482 & 0xFFFFFFFF
    assert murmur2(b"a-little-bit-long-string") == -985981536 & 0xFFFFFFFF
    assert murmur2(b"a-little-bit-longer-string") == -1486304829 & 0xFFFFFFFF
    assert murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") == -58897971 & 0xFFFFFFFF
    assert murmur2(b"abc") == 479470107


def _batch(values: list[bytes | None]) -> RecordBatch:
    n = len(values)
    return RecordBatch(
        "orders",
        1,
        list(range(10, 10 + n)),
        [T0 + i for i in range(n)],
        [1] * n,
        [b"k%d" % i for i in range(n)],
        values,
        [[("h", b"x%d" % i), ("h", None)] for i in range(n)],
    )


def _written(config: SinkConfig, batch: RecordBatch) -> bytes:
    fmt = load_format(config)
    out = io.BytesIO()
    w = fmt.open(out)
    if fmt.needs_values():
        for part in load_value_decoder(config).decode(batch).parts:
            w.write(batch if part.rows is None else batch.take(part.rows), part.table)
    else:
        w.write(batch, None)
    w.close()
    return out.getvalue()


VALUES: list[bytes | None] = [b'{"id":1,"name":"a"}', None, b'{"id":3,"name":"c"}']


@pytest.mark.parametrize(
    ("fmt", "key", "extra", "offsets", "exact"),
    [
        ("backup", "f.avro", {}, True, True),
        ("json", "f.json", {"store_kafka_metadata": True}, True, True),
        ("json", "f.json.gz", {"s3_compression_type": "gzip"}, False, True),
        ("bytearray", "f.bin.zst", {"s3_compression_type": "zstd"}, False, True),
        ("parquet", "f.parquet", {"store_kafka_metadata": True}, True, False),
        ("parquet", "f.parquet", {"value_converter": "bytes"}, False, True),
        ("avro", "f.avro", {"store_kafka_metadata": True}, False, False),
        ("avro", "f.avro", {"value_converter": "bytes"}, False, True),
    ],
)
def test_decode_every_format(
    fmt: str, key: str, extra: dict[str, Any], offsets: bool, exact: bool
) -> None:
    """What each archive format gives back: values, and keys/headers/offsets where stored."""
    conf: dict[str, Any] = {
        "format_class": fmt,
        "value_converter": "json",
        "behavior_on_null_values": "write",
        **extra,
    }
    config = SinkConfig(bootstrap_servers="x:1", **conf)
    batch = _batch(list(VALUES))
    decoded = decode_file(config, key, _written(config, batch))
    records = list(decoded.records)
    assert (decoded.kind, decoded.offsets, decoded.exact) == (fmt, offsets, exact)
    values = [r[3] for r in records]
    if fmt == "bytearray":
        assert values == [VALUES[0], b"", VALUES[2]]  # a tombstone is an empty value there
    elif exact or (fmt == "parquet" and not offsets):
        assert values == VALUES
    else:  # re-encoded as JSON: same documents, not the same bytes
        assert values[1] is None
        assert [json.loads(v) for v in values if v is not None] == [
            json.loads(v) for v in VALUES if v is not None
        ]
    with_meta = bool(extra.get("store_kafka_metadata")) or fmt == "backup"
    if with_meta:
        kept = [r for r in records if r[3] is not None or fmt != "avro"]
        assert [r[2] for r in kept][:1] == [b"k0"]
        assert kept[0][4] == [("h", b"x0"), ("h", None)]
        assert kept[0][1] == T0
    if offsets:
        assert [r[0] for r in records] == [10, 11, 12]


def test_bytearray_values_with_the_separator_are_refused() -> None:
    config = SinkConfig(bootstrap_servers="x:1", format_class="bytearray")
    data = _written(config, _batch([b"a\nb", b"c"]))
    assert [r[3] for r in decode_file(config, "f.bin", data).records] == [b"a", b"b", b"c"]
    with pytest.raises(RestoreError, match="contain the separator"):
        decode_file(config, "f.bin", data, expected=2)


def test_backup_file_is_plain_avro() -> None:
    config = SinkConfig(bootstrap_servers="x:1", format_class="backup")
    data = _written(config, _batch(list(VALUES)))
    rows: list[Any] = list(fastavro.reader(io.BytesIO(data)))
    assert [r["value"] for r in rows] == VALUES
    assert rows[0]["headers"] == [{"name": "h", "value": b"x0"}, {"name": "h", "value": None}]
    # and a parquet archive is what DuckDB/pyarrow users read: sanity of the test writer
    pconf = SinkConfig(bootstrap_servers="x:1", format_class="parquet", value_converter="json")
    assert pq.read_table(io.BytesIO(_written(pconf, _batch([VALUES[0]])))).num_rows == 1


class FakeProducer:
    """Records what a restore produces and commits (no broker: for the reading side)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int, bytes | None, bytes | None, Any]] = []
        self.commits = 0

    def produce(self, topic: str, **kw: Any) -> None:
        self.sent.append(
            (topic, kw.get("partition", -1), kw.get("key"), kw.get("value"), kw.get("headers"))
        )

    def begin_transaction(self) -> None:
        pass

    def commit_transaction(self, timeout: float = 0) -> None:
        self.commits += 1

    def poll(self, timeout: float = 0) -> int:
        return 0


def archive_in_memory(
    keys: dict[str, str], batches: list[RecordBatch]
) -> tuple[SinkConfig, MemoryStorage]:
    """Run batches of partition 0 of ``orders`` through a PartitionWriter, a commit each."""
    raw = {
        "name": "mem",
        "topics": "orders",
        "bootstrap.servers": "127.0.0.1:1",
        "storage.url": "memory://",
        "http.listen": "none",
        **keys,
    }
    config = parse(raw, environ={})
    storage = MemoryStorage()
    clock = ManualClock(T0)
    committer = Committer(2, clock, Metrics(), lambda w, m: None)
    ctx = build_context(config, storage, clock, Metrics(), committer)
    plog = PartitionLog(storage, "orders", 0, "test", "attempt-1", clock)
    writer = PartitionWriter(ctx, "orders", 0, plog, plog.takeover(None, lambda: 0).fence.end)
    for b in batches:
        writer.append(b)
        writer.seal(RotationReason.FLUSH_SIZE)
    assert committer.wait_idle(None, 30) and writer.failure is None, writer.failure
    return config, storage


def replay_fake(
    config: SinkConfig,
    storage: MemoryStorage,
    resume: int | None = None,
    opts: RestoreOptions | None = None,
) -> list[tuple[str, int, bytes | None, bytes | None, Any]]:
    """What a restore of partition 0 produces (progress records left out)."""
    r = Restorer(config, opts or RestoreOptions(to_topic="out"), storage=storage)
    r.plan()
    fake = FakeProducer()
    r._producer = fake
    if resume is not None:
        r.plans[0].next_offset = resume
        r.committed = {0: resume}
        r.pending = {0: resume}
    r._replay()
    assert fake.sent[-1][0] == DEFAULT_PROGRESS_TOPIC
    return [x for x in fake.sent if x[0] == "out"]


def test_files_of_one_commit_are_merged_by_offset_and_resumed_inside() -> None:
    """A field partitioner splits each commit into several files; the replay merges them back
    into offset order, and a resume point inside a commit skips exactly what came before."""
    n = 60
    values: list[bytes | None] = [b'{"id":%d,"region":"r%d"}' % (i, i % 3) for i in range(n)]
    batches = [
        RecordBatch(
            "orders", 0, list(range(start, start + 30)), [T0] * 30, [1] * 30, [b"k"] * 30,
            values[start : start + 30], [None] * 30,
        )
        for start in (0, 30)
    ]  # fmt: skip
    keys = {
        "format.class": "backup",
        "value.converter": "json",
        "partitioner.class": "field",
        "partition.field.name": "region",
    }
    config, storage = archive_in_memory(keys, batches)
    plans, count = read_plan(storage, "orders", None)
    assert count == 1
    assert [len(m.files) for m in plans[0].markers] == [3, 3]
    assert [x[3] for x in replay_fake(config, storage)] == values
    assert [x[3] for x in replay_fake(config, storage, resume=41)] == values[41:]


def test_sidecar_of() -> None:
    assert sidecar_of(
        "topics", "topics/_keys/orders/partition=0/orders+0+0000000007.keys.json.gz"
    ) == (
        "keys",
        "topics/orders/partition=0/orders+0+0000000007.json.gz",
    )
    assert sidecar_of("t", "t/_headers/a/b/x.y+1+00.headers.snappy.parquet") == (
        "headers",
        "t/a/b/x.y+1+00.snappy.parquet",
    )
    assert sidecar_of("topics", "topics/orders/partition=0/orders+0+0000000007.json") is None


@pytest.mark.parametrize("fmt", ["json", "avro", "parquet", "bytearray"])
def test_keys_and_headers_files_are_joined_back(fmt: str) -> None:
    """store.kafka.keys/headers: the values, keys and headers files meet again per record."""
    n = 12
    keys_: list[bytes | None] = [None if i % 4 == 0 else b"k\x00%d" % i for i in range(n)]
    headers: list[list[tuple[str, bytes | None]] | None] = [
        None if i % 3 == 0 else [("h", b"%d" % i), ("h", None)] for i in range(n)
    ]
    values: list[bytes | None] = [b'{"id":%d}' % i for i in range(n)]
    batch = RecordBatch("orders", 0, list(range(n)), [T0] * n, [1] * n, keys_, values, headers)
    conf = {
        "format.class": fmt,
        "value.converter": "bytes",
        "store.kafka.keys": "true",
        "store.kafka.headers": "false" if fmt == "bytearray" else "true",
    }
    config, storage = archive_in_memory(conf, [batch.slice(0, 5), batch.slice(5, n)])
    got = replay_fake(config, storage)
    assert [x[3] for x in got] == values
    assert [x[2] for x in got] == keys_
    if fmt != "bytearray":
        assert [x[4] for x in got] == headers


# -- on the real brokers ---------------------------------------------------------------------

N = 3000


def test_backup_round_trip_same_and_other_cluster(
    kafka_bootstrap: str,
    second_bootstrap: str,
    s3_endpoint: S3Endpoint,
    s3_bucket: str,
) -> None:
    source = create_topic(kafka_bootstrap, 3)
    produce_varied(kafka_bootstrap, source, N)
    # the default behavior.on.null.values (fail): the backup format keeps tombstones anyway
    cfg = sink_config(kafka_bootstrap, source, s3_storage(s3_endpoint, s3_bucket))
    archive(cfg, N)
    want = by_partition(read_committed(kafka_bootstrap, source))
    assert sum(1 for rs in want.values() for r in rs if r[1] is None) == len(
        [i for i in range(N) if i % 17 == 0]
    )

    # same cluster, a new topic: partitions kept 1:1
    same = create_topic(kafka_bootstrap, 3)
    summary = Restorer(cfg, RestoreOptions(to_topic=same, transaction_records=400)).run()
    assert summary.records == N
    assert "kept 1:1" in summary.mapping
    assert summary.transactions >= N // 400
    assert by_partition(read_committed(kafka_bootstrap, same)) == want

    # again: the job is complete, nothing is produced twice
    again = Restorer(cfg, RestoreOptions(to_topic=same)).run()
    assert again.records == 0
    assert sorted(again.resumed) == [0, 1, 2]
    assert len(read_committed(kafka_bootstrap, same)) == N

    # another cluster
    other = second_bootstrap
    remote = create_topic(other, 3)
    summary = Restorer(cfg, RestoreOptions(to_topic=remote, bootstrap=other)).run()
    assert summary.records == N
    assert by_partition(read_committed(other, remote)) == want

    # fewer partitions on the target: by key, murmur2 like the Java client
    narrow = create_topic(other, 2)
    summary = Restorer(cfg, RestoreOptions(to_topic=narrow, bootstrap=other)).run()
    assert "by key hash" in summary.mapping
    got = read_committed(other, narrow)
    assert len(got) == N
    for r in got:
        if r.key is not None:
            assert r.partition == (murmur2(r.key) & 0x7FFFFFFF) % 2, r.key
    # per-key order kept (source partitions are replayed one after the other)
    src = sorted(read_committed(kafka_bootstrap, source), key=lambda r: (r.partition, r.offset))
    for k in {r.key for r in src if r.key is not None}:
        assert [r.value for r in src if r.key == k] == [r.value for r in got if r.key == k]

    # a time window and a partition subset
    window = create_topic(kafka_bootstrap, 3)
    lo, hi = T0 + 500_000, T0 + 1_500_000
    opts = RestoreOptions(to_topic=window, from_ms=lo, to_ms=hi, partitions=(0, 2))
    Restorer(cfg, opts).run()
    expected = {p: [r for r in rs if lo <= r[3] < hi] for p, rs in want.items() if p in (0, 2)}
    assert by_partition(read_committed(kafka_bootstrap, window)) == {
        p: rs for p, rs in expected.items() if rs
    }

    with pytest.raises(RestoreError, match="does not exist"):
        Restorer(cfg, RestoreOptions(to_topic=unique_name("missing"))).run()
    with pytest.raises(RestoreError, match="keep-partitions"):
        Restorer(cfg, RestoreOptions(to_topic=narrow, bootstrap=other, mapping="keep")).run()


@pytest.mark.parametrize("fmt", ["json", "bytearray"])
def test_json_and_bytearray_archives_restore_values(
    fmt: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    source = create_topic(kafka_bootstrap, 2)
    n = 1000
    produce_n(
        kafka_bootstrap,
        source,
        n,
        value=lambda i: b'{"id":%d,"s":"\\u00e9 x"}' % i,
        key=lambda i: b"k%d" % (i % 9),
        headers=lambda i: [("h", b"%d" % i)],
        timestamp_ms=lambda i: T0 + i,
    )
    # json: a _kafka field in each line; bytearray: keys in keys files beside the data files
    extra = {"store.kafka.metadata": "true"} if fmt == "json" else {"store.kafka.keys": "true"}
    cfg = sink_config(
        kafka_bootstrap,
        source,
        {"storage.url": tmp_path.as_uri()},
        **{"format.class": fmt, "flush.size": "300", **extra},
    )
    archive(cfg, n)
    target = create_topic(kafka_bootstrap, 2)
    summary = Restorer(cfg, RestoreOptions(to_topic=target)).run()
    assert summary.records == n
    want = by_partition(read_committed(kafka_bootstrap, source))
    got = by_partition(read_committed(kafka_bootstrap, target))
    if fmt == "json":  # with _kafka metadata: everything, byte for byte
        assert got == want
    else:  # keys and values
        assert {p: [r[:2] for r in rs] for p, rs in got.items()} == {
            p: [r[:2] for r in rs] for p, rs in want.items()
        }


def restore_cmd(cfg_path: Path, target: str, *args: str) -> list[str]:
    """``python -m s3sink restore -c CFG --to-topic TARGET ARGS...``."""
    base = [sys.executable, "-m", "s3sink", "restore", "-c", str(cfg_path), "--to-topic", target]
    return [*base, *args]


def sigkill_after_writes(
    cmd: list[str], env: dict[str, str], bootstrap: str, target: str, more: int
) -> None:
    """Run ``cmd`` and SIGKILL it from outside once ``more`` records (committed or not) were
    written to ``target`` since its start."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    watch = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique_name("wm"),
            "isolation.level": "read_uncommitted",
        }
    )
    parts = watch.list_topics(target, timeout=10).topics[target].partitions
    tps = [TopicPartition(target, p) for p in parts]

    def written() -> int:
        return sum(watch.get_watermark_offsets(tp, timeout=10)[1] for tp in tps)

    try:
        start = written()
        deadline = time.monotonic() + 60
        while written() < start + more:
            assert proc.poll() is None, "the restore finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        watch.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL


def test_kill9_during_restore_neither_loses_nor_repeats(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    source = create_topic(kafka_bootstrap, 2)
    n = 20_000
    produce_varied(kafka_bootstrap, source, n)
    storage = {"storage.url": (tmp_path / "archive").as_uri()}
    cfg = sink_config(kafka_bootstrap, source, storage, **{"flush.size": "3000"})
    archive(cfg, n)
    want = by_partition(read_committed(kafka_bootstrap, source))
    props = tmp_path / "sink.properties"
    props.write_text("".join(f"{k}={v}\n" for k, v in {
        "name": cfg.name, "topics": source, "bootstrap.servers": kafka_bootstrap,
        "format.class": "backup", **storage,
    }.items()))  # fmt: skip
    target = create_topic(kafka_bootstrap, 2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("S3SINK_")}
    cmd = restore_cmd(props, target, "--transaction-records", "250", "--no-progress")

    # 1. killed inside a transaction: its records are in the log, uncommitted
    run = subprocess.run(
        cmd, env={**env, KILL_ENV: "7100"}, capture_output=True, timeout=120, check=False
    )
    assert run.returncode == -signal.SIGKILL, run.stderr.decode()[-2000:]
    committed = len(read_committed(kafka_bootstrap, target, stable=True))
    assert committed == 7000  # 28 transactions of 250; the 29th was open
    assert high_watermarks(kafka_bootstrap, target) > committed + 100  # aborted records there

    # 2. killed from outside, at whatever point it is
    sigkill_after_writes(cmd, env, kafka_bootstrap, target, 3000)
    # what read_committed consumers see now (a transaction may still be open, until the rerun)
    assert 7000 < len(read_committed(kafka_bootstrap, target, stable=True)) < n

    # 3. the rerun finishes the job: every record exactly once, in order
    done = subprocess.run(cmd, env=env, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    line = done.stdout.decode().strip().splitlines()[-1]
    assert line.startswith("restore done:") and "resumed partition 0 at offset" in line, line
    assert by_partition(read_committed(kafka_bootstrap, target)) == want


def test_kill9_during_json_restore_resumes_at_a_commit(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A json archive without ``store.kafka.metadata`` has no offsets in its files: progress is
    recorded a whole commit at a time. Killed inside a transaction (in the middle of a commit's
    records) and from outside, the target holds whole commits only, and the rerun resumes at
    the end of the last commit replayed: every value once, in order."""
    source = create_topic(kafka_bootstrap, 2)
    n = 16_000
    produce_n(
        kafka_bootstrap,
        source,
        n,
        value=lambda i: b'{"id":%d,"s":"\\u00e9 %d"}' % (i, i % 97),
        key=None,
        partition=lambda i: i % 2,
    )
    storage = {"storage.url": (tmp_path / "archive").as_uri()}
    extra = {"format.class": "json", "value.converter": "json", "flush.size": "800"}
    cfg = sink_config(kafka_bootstrap, source, storage, **extra)
    archive(cfg, n)
    values = values_by_partition(read_committed(kafka_bootstrap, source))
    archived = storage_from_config(cfg)
    # each partition's commits, by their ends: where a restore may stop and resume
    ends = {p: [m.end for m in markers(archived, source, p) if m.files] for p in (0, 1)}
    assert all(len(e) >= 8 and e[-1] == n // 2 for e in ends.values()), ends
    props = tmp_path / "sink.properties"
    props.write_text("".join(f"{k}={v}\n" for k, v in {
        "name": cfg.name, "topics": source, "bootstrap.servers": kafka_bootstrap, **extra,
        **storage,
    }.items()))  # fmt: skip
    target = create_topic(kafka_bootstrap, 2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("S3SINK_")}
    # --transaction-records 250: one commit a transaction
    cmd = restore_cmd(props, target, "--transaction-records", "250", "--no-progress")

    def whole_commits() -> dict[int, int]:
        """Records per target partition; each a prefix of its source partition's values ending
        at a commit's end, and partition 1 begun only once partition 0 is done."""
        got = values_by_partition(read_committed(kafka_bootstrap, target, stable=True))
        counts = {p: len(got.get(p, [])) for p in (0, 1)}
        for p, count in counts.items():
            assert got.get(p, []) == values[p][:count], f"partition {p} is not a prefix"
            assert count == 0 or count in ends[p], f"partition {p}: {count} not a commit end"
        assert counts[1] == 0 or counts[0] == n // 2, counts
        return counts

    # 1. killed inside a transaction, 300 records into partition 0's sixth commit
    first = ends[0][4] + 300
    run = subprocess.run(
        cmd, env={**env, KILL_ENV: str(first)}, capture_output=True, timeout=120, check=False
    )
    assert run.returncode == -signal.SIGKILL, run.stderr.decode()[-2000:]
    assert whole_commits() == {0: ends[0][4], 1: 0}
    assert high_watermarks(kafka_bootstrap, target) >= first  # the open commit's records too

    # 2. killed from outside, at whatever point it is (partition 0 about half done)
    sigkill_after_writes(cmd, env, kafka_bootstrap, target, 2000)
    counts = whole_commits()
    assert ends[0][4] < sum(counts.values()) < n, counts

    # 3. the rerun resumes at the last commit replayed and finishes the job
    done = subprocess.run(cmd, env=env, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    line = done.stdout.decode().strip().splitlines()[-1]
    resumed = ", ".join(f"partition {p} at offset {c}" for p, c in counts.items() if c)
    assert line.startswith(f"restore done: {n - sum(counts.values()):,} records"), line
    assert f"; resumed {resumed};" in line, line
    assert values_by_partition(read_committed(kafka_bootstrap, target)) == values


def test_time_window_needs_record_timestamps() -> None:
    batch = RecordBatch(
        "orders", 0, [0, 1], [T0, T0 + 1], [1, 1], [None] * 2, [b"1", b"2"], [None] * 2
    )
    config, storage = archive_in_memory({"format.class": "json"}, [batch])
    window = RestoreOptions(to_topic="out", from_ms=T0 + 1)
    with pytest.raises(RestoreError, match="need record timestamps"):
        replay_fake(config, storage, opts=window)
    config, storage = archive_in_memory(
        {"format.class": "json", "store.kafka.metadata": "true"}, [batch]
    )
    assert [x[3] for x in replay_fake(config, storage, opts=window)] == [b"2"]


# -- parquet/avro archives back as Confluent wire-format Avro --------------------------------


def _wire_values(values: list[bytes | None], server: Any) -> list[Any]:
    """Wire-format values decoded with the schema the registry holds for their id."""
    out: list[Any] = []
    for v in values:
        if v is None:
            out.append(None)
            continue
        assert v[:1] == b"\x00", v[:8]
        sid = int.from_bytes(v[1:5], "big")
        schema = fastavro.parse_schema(json.loads(server.state.schemas[sid].schema))
        out.append(fastavro.schemaless_reader(io.BytesIO(v[5:]), schema, None))
    return out


@pytest.mark.parametrize(
    ("fmt", "extra"),
    [
        ("parquet", {"store_kafka_metadata": True}),
        ("parquet", {}),
        ("avro", {"store_kafka_metadata": True}),
        ("avro", {}),
    ],
)
def test_parquet_and_avro_values_reencode_as_wire_format_avro(
    fmt: str, extra: dict[str, Any]
) -> None:
    from s3sink.restore import AvroReencoder
    from tests.rig.schema_registry import SchemaRegistryServer

    config = SinkConfig(
        bootstrap_servers="x:1",
        format_class=fmt,
        value_converter="json",
        behavior_on_null_values="write",
        **extra,
    )
    data = _written(config, _batch(list(VALUES)))
    with SchemaRegistryServer(first_id=7) as server:
        enc = AvroReencoder(server.url, {}, "orders-copy-value")
        decoded = decode_file(config, f"f.{fmt}", data, reencode=enc)
        values = [r[3] for r in decoded.records]
        second = [r[3] for r in decode_file(config, f"g.{fmt}", data, reencode=enc).records]
        assert enc.ids == [7], "one schema, registered once"
        assert server.requests["POST /subjects/{s}/versions"] == 1
        assert "orders-copy-value" in server.state.subjects
        assert values == second
        got = [
            v if v is None else {k: x for k, x in v.items() if x is not None}
            for v in _wire_values(values, server)
        ]
    assert got == [None if v is None else json.loads(v) for v in VALUES]


def test_avro_reencoding_needs_a_registry(kafka_bootstrap: str, tmp_path: Path) -> None:
    cfg = sink_config(kafka_bootstrap, "t", {"storage.url": tmp_path.as_uri()})
    with pytest.raises(RestoreError, match="--schema-registry"):
        Restorer(cfg, RestoreOptions(to_topic="x", value_format="avro"))


@pytest.mark.parametrize("fmt", ["parquet", "avro"])
def test_restore_as_wire_format_avro_end_to_end(
    fmt: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """JSON records archived as parquet/avro with metadata, restored with --value-format avro:
    Confluent's own AvroDeserializer reads the target topic back into the same documents, with
    keys, headers and timestamps kept."""
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    from tests.rig.schema_registry import SchemaRegistryServer

    source = create_topic(kafka_bootstrap, 2)
    n = 600
    produce_n(
        kafka_bootstrap,
        source,
        n,
        value=lambda i: json.dumps({"id": i, "name": f"n{i}", "tags": ["a"] * (i % 3)}).encode(),
        key=lambda i: b"k%d" % (i % 9),
        headers=lambda i: [("h", b"%d" % i)],
        timestamp_ms=lambda i: T0 + i,
    )
    cfg = sink_config(
        kafka_bootstrap,
        source,
        {"storage.url": tmp_path.as_uri()},
        **{
            "format.class": fmt,
            "value.converter": "json",
            "flush.size": "200",
            "store.kafka.metadata": "true",
        },
    )
    archive(cfg, n)
    target = create_topic(kafka_bootstrap, 2)
    with SchemaRegistryServer() as server:
        summary = Restorer(
            cfg,
            RestoreOptions(to_topic=target, value_format="avro", schema_registry_url=server.url),
        ).run()
        assert summary.records == n
        assert f"Confluent wire-format Avro (subject {target}-value" in summary.text()
        deserialize = AvroDeserializer(SchemaRegistryClient({"url": server.url}))
        want = by_partition(read_committed(kafka_bootstrap, source))
        got_raw = by_partition(read_committed(kafka_bootstrap, target))
        ctx = SerializationContext(target, MessageField.VALUE)
        got = {
            p: [
                (k, {x: y for x, y in deserialize(v, ctx).items() if y is not None}, h, ts)
                for k, v, h, ts in rs
            ]
            for p, rs in got_raw.items()
        }
    assert got == {
        p: [(k, json.loads(v or b"null"), h, ts) for k, v, h, ts in rs] for p, rs in want.items()
    }


# -- bad records: dead-lettered to files or a topic ------------------------------------------


def _maybe_bad(i: int) -> bytes | None:
    if i % 11 == 5:
        return None  # a tombstone: a bad record with behavior.on.null.values=fail
    if i % 7 == 3:
        return b"{not json %d" % i
    return b'{"id":%d,"s":"x"}' % i


@pytest.fixture(scope="module")
def with_bad_records(kafka_bootstrap: str) -> tuple[str, list[Consumed]]:
    """A 2-partition topic whose bad records sit between good ones."""
    source = create_topic(kafka_bootstrap, 2)
    produce_n(
        kafka_bootstrap,
        source,
        400,
        value=_maybe_bad,
        key=lambda i: b"k%d" % (i % 13),
        headers=lambda i: [("h", b"%d" % i)],
        timestamp_ms=lambda i: T0 + i,
    )
    return source, read_committed(kafka_bootstrap, source)


@pytest.mark.parametrize("dead_letter_topic", [False, True], ids=["error-files", "dlq-topic"])
def test_dead_lettered_records_are_skipped_without_a_gap(
    dead_letter_topic: bool,
    kafka_bootstrap: str,
    with_bad_records: tuple[str, list[Consumed]],
    tmp_path: Path,
) -> None:
    """errors.tolerance=all: bad records go to error files under ``_s3sink/errors/`` (in the
    commit of the records around them) or to a dead-letter topic (their offsets then lie inside
    a commit's range with no file row). The restore replays the good records only, counts the
    others in its summary, and takes neither for a gap: a rerun resumes at the log's end."""
    source, records = with_bad_records
    good = [r for r in records if r.value is not None and r.value.startswith(b'{"id"')]
    bad = len(records) - len(good)
    assert 0 < bad < len(records) // 2
    extra = {
        "format.class": "json",
        "value.converter": "json",
        "store.kafka.metadata": "true",
        "errors.tolerance": "all",
        "flush.size": "40",
    }
    dlq = None
    if dead_letter_topic:
        dlq = create_topic(kafka_bootstrap, 1, prefix="dlq")
        extra["errors.deadletterqueue.topic.name"] = dlq
        extra["errors.deadletterqueue.topic.replication.factor"] = "1"
    cfg = sink_config(kafka_bootstrap, source, {"storage.url": tmp_path.as_uri()}, **extra)
    Sink(cfg).run(catchup=True)
    storage = storage_from_config(cfg)
    error_rows = [
        line
        for info in storage.list(f"{ROOT}/errors/{source}/")
        for line in storage.get(info.key)[0].splitlines()
        if line
    ]
    if dlq is None:
        assert len(error_rows) == bad
    else:
        assert error_rows == []
        assert len(read_committed(kafka_bootstrap, dlq)) == bad

    target = create_topic(kafka_bootstrap, 2)
    summary = Restorer(cfg, RestoreOptions(to_topic=target, transaction_records=50)).run()
    assert summary.records == len(good)
    assert by_partition(read_committed(kafka_bootstrap, target)) == by_partition(good)
    text = summary.text()
    if dlq is None:
        assert summary.error_records == bad and summary.no_record == 0
        assert f"; {bad:,} bad records in error files not replayed;" in text, text
        assert "without a record" not in text, text
    else:
        assert summary.error_records == 0 and summary.no_record == bad
        assert (
            f"; {bad:,} offsets without a record in the archive (records sent to the "
            f"dead-letter topic {dlq}, removed by retention or compaction, or transaction "
            "markers) not replayed;"
        ) in text, text
        assert "error files" not in text, text
    # the progress ends where each partition's log ends, past trailing bad records too
    ends = {r.partition: r.offset + 1 for r in records}
    again = Restorer(cfg, RestoreOptions(to_topic=target)).run()
    assert again.records == 0 and again.resumed == ends, again.text()
    assert len(read_committed(kafka_bootstrap, target)) == len(good)


# -- what is not committed, and committed files gone from their final key ----------------------


def test_only_committed_files_are_read_from_their_final_or_staging_key(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A data file under topics.dir that no marker names and a staging file without a marker
    are never replayed; a committed file missing from its final key (committed, not yet
    published) is read from its staging copy; with both gone, the error says what is missing
    and points at ``s3sink verify``."""
    source = create_topic(kafka_bootstrap, 2)
    n = 300
    produce_varied(kafka_bootstrap, source, n)
    cfg = sink_config(
        kafka_bootstrap, source, {"storage.url": tmp_path.as_uri()}, **{"flush.size": "50"}
    )
    archive(cfg, n)
    want = by_partition(read_committed(kafka_bootstrap, source))
    storage = storage_from_config(cfg)
    logs = {p: [m for m in markers(storage, source, p) if m.files] for p in (0, 1)}
    assert all(len(ms) >= 2 for ms in logs.values()), logs
    first = logs[0][0].files[0]
    data, _ = storage.get(first.key)
    # an orphan beside the committed files, and an upload that never got a marker
    orphan = first.key.rsplit("+", 1)[0] + "+0000099999.avro"
    storage.put(orphan, data)
    unmarked = f"{ROOT}/staging/{source}/0/e0000000099/attempt-x/000001-{orphan.rsplit('/')[-1]}"
    storage.put(unmarked, data)
    # a committed file back in the state "marker written, not yet published"
    moved = logs[1][1].files[0]
    storage.put(moved.staging, storage.get(moved.key)[0])
    storage.delete(moved.key)
    assert storage.head(moved.key) is None

    target = create_topic(kafka_bootstrap, 2)
    summary = Restorer(cfg, RestoreOptions(to_topic=target)).run()
    assert summary.records == n
    assert summary.files == sum(len(m.files) for ms in logs.values() for m in ms)
    assert by_partition(read_committed(kafka_bootstrap, target)) == want

    storage.delete(moved.staging)
    lost = create_topic(kafka_bootstrap, 2)
    with pytest.raises(RestoreError) as exc:
        Restorer(cfg, RestoreOptions(to_topic=lost, partitions=(1,))).run()
    assert str(exc.value) == (
        f"committed file {moved.key} is missing (and so is its staging copy); run "
        "`s3sink verify` to inspect the archive"
    )
    assert read_committed(kafka_bootstrap, lost) == []


# -- timestamps: LogAppendTime sources and targets, timestamp 0, no timestamp --------------------

#: A Java producer (the Kafka clients jar of the rig's broker): librdkafka takes timestamp 0 for
#: "now", the Java client writes it as it is. Produces ``args[2:]`` (``<timestamp>=<value>``)
#: to partition 0 of ``args[1]`` and prints each acknowledged timestamp.
JAVA_PRODUCER = """
import java.nio.charset.StandardCharsets;
import java.util.Properties;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class ProduceAt {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        props.put("acks", "all");
        props.put("key.serializer", ByteArraySerializer.class.getName());
        props.put("value.serializer", ByteArraySerializer.class.getName());
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
            for (int i = 2; i < args.length; i++) {
                String[] tv = args[i].split("=", 2);
                byte[] value = tv[1].getBytes(StandardCharsets.UTF_8);
                byte[] key = ("k" + i).getBytes(StandardCharsets.UTF_8);
                ProducerRecord<byte[], byte[]> record =
                    new ProducerRecord<>(args[1], 0, Long.parseLong(tv[0]), key, value);
                RecordMetadata m = producer.send(record).get();
                System.out.println(m.timestamp());
            }
        }
    }
}
"""


def produce_with_java(
    bootstrap: str, topic: str, records: list[tuple[int, bytes]], workdir: Path
) -> None:
    """Produce (timestamp, value) records to partition 0 with the Java client, as they are."""
    from s3sink.local.kafka import ensure_kafka_jars
    from s3sink.local.tools import find_java

    source = workdir / "ProduceAt.java"
    source.write_text(JAVA_PRODUCER)
    args = [f"{ts}={v.decode()}" for ts, v in records]
    cp = f"{ensure_kafka_jars()}/*"
    run = subprocess.run(
        [find_java(), "-cp", cp, str(source), bootstrap, topic, *args],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr.decode()[-3000:]
    assert [int(x) for x in run.stdout.split()] == [ts for ts, _ in records], run.stdout


def stamps(bootstrap: str, topic: str) -> list[tuple[bytes | None, int, int]]:
    """(value, timestamp type, timestamp) of every committed record of a 1-partition topic."""
    end = log_ends(bootstrap, topic)[0]
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique_name("ts"),
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    out: list[tuple[bytes | None, int, int]] = []
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + 60
        while consumer.position([TopicPartition(topic, 0)])[0].offset < end:
            for m in consumer.consume(500, 0.2):
                assert m.error() is None, m.error()
                kind, ts = m.timestamp()
                out.append((m.value(), kind, ts))
            assert time.monotonic() < deadline, f"{topic} stalled"
    finally:
        consumer.close()
    return out


def backup_rows(storage: Storage, topic: str) -> list[dict[str, Any]]:
    """The rows of partition 0's committed backup files, in offset order."""
    rows: list[dict[str, Any]] = []
    for m in sorted(markers(storage, topic, 0), key=lambda m: m.seq):
        for f in m.files:
            reader: Any = fastavro.reader(io.BytesIO(storage.get(f.key)[0]))
            rows.extend(reader)
    return sorted(rows, key=lambda r: r["offset"])


CREATE_TIME, LOG_APPEND_TIME = 1, 2  # confluent_kafka.TIMESTAMP_CREATE_TIME / _LOG_APPEND_TIME


def restore_timed(cfg: SinkConfig, opts: RestoreOptions) -> tuple[int, int]:
    """Run a restore; the wall-clock window (ms) it produced in."""
    before = int(time.time() * 1000)
    summary = Restorer(cfg, opts).run()
    after = int(time.time() * 1000) + 1
    assert summary.records > 0, summary.text()
    return before, after


def test_restored_timestamps_log_append_time_and_zero(kafka_bootstrap: str, tmp_path: Path) -> None:
    """README, Restore, "What is written": the timestamp is written as CreateTime; a target
    topic with ``message.timestamp.type=LogAppendTime`` stamps its own; a record archived with
    timestamp 0 gets the produce time.

    Sources: a LogAppendTime topic (the backup keeps the broker's append times, typed
    LogAppendTime) and a CreateTime topic whose records have timestamp 0 or an explicit time,
    written by the Java client."""
    n = 40
    log_append = {"message.timestamp.type": "LogAppendTime"}
    appended = create_topic(kafka_bootstrap, 1, prefix="lat", config=log_append)
    produce_n(kafka_bootstrap, appended, n, value=lambda i: b"a%d" % i, timestamp_ms=lambda i: T0)
    zero = create_topic(kafka_bootstrap, 1, prefix="ts0")
    timed = [(0 if i % 2 == 0 else T0 + i, b"z%d" % i) for i in range(10)]
    produce_with_java(kafka_bootstrap, zero, timed, tmp_path)

    source = stamps(kafka_bootstrap, appended)
    assert [v for v, _, _ in source] == [b"a%d" % i for i in range(n)]
    assert {k for _, k, _ in source} == {LOG_APPEND_TIME}
    assert all(ts > T0 for _, _, ts in source)  # the broker's times, not the producer's
    assert stamps(kafka_bootstrap, zero) == [(v, CREATE_TIME, ts) for ts, v in timed]

    storage = {"storage.url": (tmp_path / "archive").as_uri()}
    cfg = sink_config(kafka_bootstrap, f"{appended},{zero}", storage)
    archive(cfg, n + len(timed))
    assert [
        (r["value"], r["timestamp_type"], r["timestamp"])
        for r in backup_rows(storage_from_config(cfg), appended)
    ] == [(v, "LogAppendTime", ts) for v, _, ts in source]
    assert [
        (r["value"], r["timestamp_type"], r["timestamp"])
        for r in backup_rows(storage_from_config(cfg), zero)
    ] == [(v, "CreateTime", ts) for ts, v in timed]

    # the archived append times, as CreateTime
    target = create_topic(kafka_bootstrap, 1)
    restore_timed(cfg, RestoreOptions(to_topic=target, source_topic=appended))
    assert stamps(kafka_bootstrap, target) == [(v, CREATE_TIME, ts) for v, _, ts in source]

    # a LogAppendTime target stamps its own (the broker's clock read before and after)
    target = create_topic(kafka_bootstrap, 1, config=log_append)
    clock = create_topic(kafka_bootstrap, 1, prefix="clock", config=log_append)
    produce_n(kafka_bootstrap, clock, 1)
    restore_timed(cfg, RestoreOptions(to_topic=target, source_topic=appended))
    produce_n(kafka_bootstrap, clock, 1)
    before, after = (ts for _, _, ts in stamps(kafka_bootstrap, clock))
    got = stamps(kafka_bootstrap, target)
    assert [(v, k) for v, k, _ in got] == [(v, LOG_APPEND_TIME) for v, _, _ in source]
    assert all(before <= ts <= after for _, _, ts in got), (before, after, got[:3])
    assert max(ts for _, _, ts in source) < before

    # timestamp 0: the produce time; the others as archived
    target = create_topic(kafka_bootstrap, 1)
    before, after = restore_timed(cfg, RestoreOptions(to_topic=target, source_topic=zero))
    got = stamps(kafka_bootstrap, target)
    assert [(v, k) for v, k, _ in got] == [(v, CREATE_TIME) for _, v in timed]
    for (v, _, ts), (archived_ts, _) in zip(got, timed, strict=True):
        if archived_ts == 0:
            assert before <= ts <= after, (v, ts, before, after)
        else:
            assert ts == archived_ts, (v, ts)


def test_records_archived_without_a_timestamp_get_the_produce_time(
    kafka_bootstrap: str,
) -> None:
    """A backup row typed NoTimestampType (timestamp -1: a record of the pre-0.10 message
    format) is restored with the produce time, as CreateTime; timestamp 0 too."""
    batch = RecordBatch(
        "orders", 0, [0, 1, 2, 3], [-1, T0, 0, T0 + 3], [0, 1, 1, 2],
        [b"k0", b"k1", None, b"k3"], [b"none", b"create", b"zero", b"appended"],
        [None, None, [("h", None)], None],
    )  # fmt: skip
    config, storage = archive_in_memory({"format.class": "backup"}, [batch])
    assert [(r["timestamp_type"], r["timestamp"]) for r in backup_rows(storage, "orders")] == [
        ("NoTimestampType", -1),
        ("CreateTime", T0),
        ("CreateTime", 0),
        ("LogAppendTime", T0 + 3),
    ]
    target = create_topic(kafka_bootstrap, 1)
    opts = RestoreOptions(to_topic=target, bootstrap=kafka_bootstrap)
    before = int(time.time() * 1000)
    summary = Restorer(config, opts, storage=storage).run()
    after = int(time.time() * 1000) + 1
    assert summary.records == 4, summary.text()
    got = stamps(kafka_bootstrap, target)
    assert [(v, k) for v, k, _ in got] == [(v, CREATE_TIME) for v in batch.values]
    (_, _, t_none), (_, _, t_create), (_, _, t_zero), (_, _, t_appended) = got
    assert before <= t_none <= after and before <= t_zero <= after, (before, after, got)
    assert (t_create, t_appended) == (T0, T0 + 3)
