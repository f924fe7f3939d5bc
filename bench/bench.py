#!/usr/bin/env python3
"""s3sink benchmark: ``s3sink catchup`` against the consume-only ceiling, measured in one run.

One command (``make bench``; ``make bench-quick`` for CI)::

    python bench/bench.py [--quick] [--records N] [--partitions P] [--backends local,minio]

It starts its own Kafka broker and MinIO (or uses ``KAFKA_BOOTSTRAP_SERVERS`` /
``S3_ENDPOINT_URL`` with the usual ``AWS_*`` variables) and a Schema Registry test server,
loads N realistic JSON events (~300 bytes, nested, timestamps, strings of varied length) and
the same events as Confluent wire-format Avro into topics of P partitions (kept between runs in
the state directory: a second run reuses them), then measures:

* the consume-only ceiling of each topic: confluent-kafka batch ``consume``, touching every
  value and nothing else (best of a few runs, in a subprocess like the sink);
* ``s3sink catchup`` (a subprocess: peak RSS and CPU from ``os.wait4``) for JSON -> JSON lines,
  JSON -> Parquet (zstd), Avro -> Parquet (zstd), Avro -> Avro (zstd), time partitioner, on the
  local filesystem backend and on MinIO (through a counting proxy: S3 requests per GB);
* the memory case: 256 partitions with ``buffer.memory.bytes=256MiB`` (peak RSS <= budget +
  150 MiB);
* the file-size case: ``file.max.bytes=64MiB`` (files within 10% of the target, none under
  1 MiB except on time or schedule rolls);
* a naive reference: a consumer loop with ``json.loads`` and ``pyarrow.Table.from_pylist`` per
  batch, written to Parquet (zstd).

It prints a table and writes it as JSON under ``bench/results/``. See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MiB = 1024 * 1024
DATASET_VERSION = 2
#: Record timestamps (and ``received_at``) of the dataset: one hour from here, in order.
BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SPAN_MS = 3_600_000
PATH_FORMAT = "'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH"
FILE_MAX_BYTES = 64 * MiB
MEMORY_BUDGET = 256 * MiB
MEMORY_PARTITIONS = 256
#: Peak RSS allowed above the budget in the memory case.
RSS_ALLOWANCE = 150 * MiB
#: Target ratios to the ceiling (issue 6).
TARGETS = {
    "json-jsonl": 0.8,
    "json-parquet": 0.5,
    "avro-parquet": 0.4,
    "avro-avro": 0.7,
}

# -- the dataset -----------------------------------------------------------------------------

AVRO_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "PageEvent",
    "namespace": "bench",
    "fields": [
        {"name": "event_id", "type": "string"},
        {"name": "type", "type": "string"},
        {"name": "ts", "type": "string"},
        {"name": "received_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {
            "name": "user",
            "type": {
                "type": "record",
                "name": "User",
                "fields": [
                    {"name": "id", "type": "long"},
                    {"name": "name", "type": "string"},
                    {"name": "country", "type": "string"},
                    {"name": "segment", "type": ["null", "string"], "default": None},
                ],
            },
        },
        {
            "name": "session",
            "type": {
                "type": "record",
                "name": "Session",
                "fields": [
                    {"name": "id", "type": "string"},
                    {"name": "device", "type": "string"},
                ],
            },
        },
        {"name": "url", "type": "string"},
        {"name": "referrer", "type": ["null", "string"], "default": None},
        {"name": "amount", "type": "double"},
        {"name": "items", "type": "int"},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
    ],
}

_TYPES = ["page_view", "page_view", "page_view", "click", "add_to_cart", "checkout", "search"]
_COUNTRIES = ["FR", "DE", "US", "GB", "ES", "IT", "NL", "BR", "JP", "IN", "CA", "PL"]
_SEGMENTS = ["premium", "standard", "trial", None]
_DEVICES = ["mobile", "desktop", "tablet"]
_WORDS = [
    "alpine",
    "amber",
    "arctic",
    "autumn",
    "basil",
    "birch",
    "bronze",
    "canyon",
    "cedar",
    "cinder",
    "clover",
    "cobalt",
    "coral",
    "cotton",
    "crimson",
    "dune",
    "ember",
    "fern",
    "fjord",
    "flint",
    "frost",
    "garnet",
    "ginger",
    "granite",
    "harbor",
    "hazel",
    "indigo",
    "iris",
    "jade",
    "juniper",
    "lagoon",
    "lava",
    "linen",
    "lotus",
    "maple",
    "marble",
    "meadow",
    "mist",
    "moss",
    "nectar",
    "oasis",
    "olive",
    "onyx",
    "orchid",
    "pearl",
    "pepper",
    "pine",
    "plum",
    "prairie",
    "quartz",
    "raven",
    "reef",
    "river",
    "saffron",
    "sage",
    "sand",
    "sierra",
    "slate",
    "spruce",
    "storm",
    "summit",
    "tide",
    "timber",
    "topaz",
    "tundra",
    "velvet",
    "violet",
    "walnut",
    "willow",
]
_FIRST = [
    "Ana",
    "Ben",
    "Chloe",
    "Dario",
    "Emma",
    "Farid",
    "Greta",
    "Hugo",
    "Ines",
    "Jonas",
    "Kenji",
    "Lena",
    "Marco",
    "Nadia",
    "Omar",
]
_LAST = [
    "Martin",
    "Schmidt",
    "Rossi",
    "Garcia",
    "Novak",
    "Silva",
    "Tanaka",
    "Kowalski",
    "Dubois",
    "Jensen",
    "Müller",
]


def _event(i: int, n: int, rng: random.Random) -> dict[str, Any]:
    received = BASE_MS + (i * SPAN_MS) // max(1, n)
    ts = datetime.fromtimestamp((received - rng.randint(0, 5000)) / 1000, UTC)
    words = rng.sample(_WORDS, rng.randint(1, 3))
    path = "/".join(words)
    event_type = rng.choice(_TYPES)
    return {
        "event_id": f"{rng.getrandbits(64):016x}",
        "type": event_type,
        "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "received_at": received,
        "user": {
            "id": rng.randint(1, 5_000_000),
            "name": f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
            "country": rng.choice(_COUNTRIES),
            "segment": rng.choice(_SEGMENTS),
        },
        "session": {
            "id": f"{rng.getrandbits(32):08x}",
            "device": rng.choice(_DEVICES),
        },
        "url": f"/{path}?ref={rng.randint(0, 999)}",
        "referrer": None if rng.random() < 0.5 else f"https://{rng.choice(_WORDS)}.example/",
        "amount": round(rng.random() * 250, 2) if event_type != "page_view" else 0.0,
        "items": rng.randint(0, 12),
        "tags": rng.sample(_WORDS, rng.randint(0, 2)),
    }


@dataclass
class Topic:
    name: str
    partitions: int
    records: int
    encoding: str  # json | avro
    schema_id: int | None = None
    value_bytes: int = 0


class Encoders:
    """JSON bytes and Confluent wire-format Avro (checked against confluent-kafka's
    ``AvroSerializer`` on the first records) of the same events."""

    def __init__(self, registry_url: str | None, avro_topic: str | None) -> None:
        import fastavro

        self._parsed = fastavro.parse_schema(AVRO_SCHEMA)
        self.schema_id: int | None = None
        self._serializer: Any = None
        self._ctx: Any = None
        if registry_url is not None and avro_topic is not None:
            from confluent_kafka.schema_registry import SchemaRegistryClient
            from confluent_kafka.schema_registry.avro import AvroSerializer
            from confluent_kafka.serialization import MessageField, SerializationContext

            self._serializer = AvroSerializer(
                SchemaRegistryClient({"url": registry_url}), json.dumps(AVRO_SCHEMA)
            )
            self._ctx = SerializationContext(avro_topic, MessageField.VALUE)
        self._checked = 0

    @staticmethod
    def json(event: dict[str, Any]) -> bytes:
        return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()

    def avro(self, event: dict[str, Any]) -> bytes:
        import io

        import fastavro

        if self._checked < 3:
            reference: bytes = self._serializer(event, self._ctx)
            self.schema_id = int.from_bytes(reference[1:5], "big")
        buf = io.BytesIO()
        buf.write(b"\x00" + (self.schema_id or 0).to_bytes(4, "big"))
        fastavro.schemaless_writer(buf, self._parsed, event)
        out = buf.getvalue()
        if self._checked < 3:
            if out != reference:
                raise RuntimeError("fastavro bytes differ from AvroSerializer's")
            self._checked += 1
        return out


# -- small helpers ---------------------------------------------------------------------------


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load_average() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return round(one, 2), round(five, 2), round(fifteen, 2)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = 0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem / 1024**3, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def clean_env() -> dict[str, str]:
    """The environment for subprocesses, without S3SINK_* overrides from the caller."""
    return {k: v for k, v in os.environ.items() if not k.startswith("S3SINK_")}


@dataclass
class ProcResult:
    returncode: int
    wall_s: float
    cpu_s: float
    user_s: float
    sys_s: float
    maxrss_bytes: int
    stdout: str
    stderr_path: Path
    timed_out: bool = False


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            out += [int(c) for c in task.read_text().split()]
    return out


def _hwm_kib(pid: int) -> int:
    """The process's own peak resident set (``VmHWM``), 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def sample_peaks(root: int, peaks: dict[int, int]) -> None:
    """Each process of the tree under ``root``: the highest ``VmHWM`` seen so far."""
    todo = [root]
    while todo:
        pid = todo.pop()
        peaks[pid] = max(peaks.get(pid, 0), _hwm_kib(pid))
        todo += _children(pid)


def run_measured(
    argv: Sequence[str], *, timeout: float, env: dict[str, str], stderr_path: Path
) -> ProcResult:
    """Run ``argv``; its CPU time comes from ``os.wait4`` (the process and the children it
    reaped), its peak RSS from sampling ``VmHWM`` of the process and its children every 50 ms
    (summed over the processes: with ``tasks.max`` > 1 the workers count too). Not
    ``ru_maxrss``: Linux carries the forking parent's resident set through fork + exec, so a
    big parent would inflate it."""
    peaks: dict[int, int] = {}
    with tempfile.TemporaryFile() as out, stderr_path.open("wb") as err:
        started = time.monotonic()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=ROOT)
        deadline = started + timeout
        timed_out = False
        while True:
            sample_peaks(proc.pid, peaks)
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                timed_out = True
                proc.send_signal(signal.SIGKILL)
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        wall = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4 already
        out.seek(0)
        stdout = out.read().decode(errors="replace")
    return ProcResult(
        returncode=proc.returncode,
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        user_s=usage.ru_utime,
        sys_s=usage.ru_stime,
        maxrss_bytes=sum(peaks.values()) * 1024 or usage.ru_maxrss * 1024,
        stdout=stdout,
        stderr_path=stderr_path,
        timed_out=timed_out,
    )


# -- the environment -------------------------------------------------------------------------


@dataclass
class Env:
    bootstrap: str
    state: Path
    registry_url: str
    s3: Any = None  # S3Endpoint of the real server
    proxy: Any = None  # FaultProxy counting requests in front of it
    bucket: str = "s3sink-bench"
    stoppers: list[Any] = field(default_factory=list)

    def close(self) -> None:
        for stop in reversed(self.stoppers):
            with contextlib.suppress(Exception):
                stop()


@contextlib.contextmanager
def environment(state: Path, want_s3: bool) -> Iterator[Env]:
    from s3sink.local import KafkaBroker, s3_server
    from tests.rig.schema_registry import SchemaRegistryServer

    stoppers: list[Any] = []
    try:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not bootstrap:
            log("starting the Kafka broker")
            broker = KafkaBroker(
                state,
                die_with_parent=True,
                extra_config={"message.max.bytes": str(8 * MiB)},
            ).start()
            stoppers.append(broker.stop)
            bootstrap = broker.bootstrap
        registry = SchemaRegistryServer().start()
        stoppers.append(registry.stop)
        env = Env(bootstrap, state, registry.url, stoppers=stoppers)
        if want_s3:
            from tests.rig.faultproxy import FaultProxy
            from tests.rig.s3 import endpoint_from_env

            endpoint = endpoint_from_env()
            if endpoint is None:
                log("starting MinIO")
                server = s3_server("minio", state, die_with_parent=True).start()
                stoppers.append(server.stop)
                endpoint = server.endpoint
            env.s3 = endpoint
            proxy = FaultProxy(endpoint.url, rate=0.0).start()
            stoppers.append(proxy.stop)
            env.proxy = proxy
            client = s3_client(endpoint)
            with contextlib.suppress(Exception):
                client.create_bucket(Bucket=env.bucket)
        yield env
    finally:
        for stop in reversed(stoppers):
            with contextlib.suppress(Exception):
                stop()


def s3_client(endpoint: Any) -> Any:
    from tests.rig.s3 import s3_client as client_for

    return client_for(endpoint)


# -- loading ---------------------------------------------------------------------------------


def _admin(bootstrap: str) -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap})


def topic_count(bootstrap: str, topic: str, partitions: int) -> int | None:
    """Records in ``topic`` (sum of high watermarks), or ``None`` if it does not exist with
    ``partitions`` partitions."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    deadline = time.monotonic() + 60  # a restarted broker takes a while to lead again
    while True:
        listed = _admin(bootstrap).list_topics(timeout=10).topics
        if topic not in listed:
            return None
        md = _admin(bootstrap).list_topics(topic=topic, timeout=10).topics.get(topic)
        if md is not None and md.error is None and md.partitions:
            if len(md.partitions) != partitions:
                return None  # another shape: reloaded
        elif time.monotonic() < deadline:
            time.sleep(1)  # metadata still loading after a (re)start
            continue
        else:
            return None
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-probe"})
        try:
            total = 0
            for p in range(partitions):
                lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                total += hi - lo
            return total
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
        finally:
            c.close()


def first_value(bootstrap: str, topic: str) -> bytes | None:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex[:8]}"})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is not None and m.error() is None:
                v: bytes | None = m.value()
                return v
        return None
    finally:
        c.close()


def ensure_topics(env: Env, topics: Sequence[Topic], n: int, *, timeout: float) -> None:
    """Create and fill the topics unless they already hold the dataset (reused across runs)."""
    from confluent_kafka import Producer
    from confluent_kafka.cimpl import NewTopic

    todo: list[Topic] = []
    for t in topics:
        have = topic_count(env.bootstrap, t.name, t.partitions)
        if have == t.records:
            if t.encoding == "avro":
                v = first_value(env.bootstrap, t.name) or b""
                # the registry is new in every run: the first schema registered gets id 1
                enc = Encoders(env.registry_url, t.name)
                enc.avro(_event(0, n, random.Random(0)))
                t.schema_id = enc.schema_id
                if v[1:5] != (t.schema_id or 0).to_bytes(4, "big"):
                    log(f"{t.name}: schema id differs; reloading")
                    todo.append(t)
                    continue
            log(f"{t.name}: reusing {have:,} records")
            continue
        todo.append(t)
    if not todo:
        return
    admin = _admin(env.bootstrap)
    existing = admin.list_topics(timeout=10).topics
    gone = [t.name for t in todo if t.name in existing]
    if gone:
        for f in admin.delete_topics(gone, operation_timeout=30).values():
            f.result()
        deadline = time.monotonic() + 60
        while set(gone) & set(admin.list_topics(timeout=10).topics):
            if time.monotonic() > deadline:
                raise TimeoutError(f"topics {gone} still exist a minute after deleting them")
            time.sleep(0.5)
        time.sleep(1)
    for name, f in admin.create_topics(
        [
            NewTopic(
                t.name,
                num_partitions=t.partitions,
                replication_factor=1,
                config={"retention.ms": "-1", "retention.bytes": "-1"},
            )
            for t in todo
        ]
    ).items():
        f.result()
        log(f"created {name}")
    producer = Producer(
        {
            "bootstrap.servers": env.bootstrap,
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "queue.buffering.max.kbytes": 512 * 1024,
            "compression.type": "none",
            "enable.idempotence": True,
        }
    )
    started = time.monotonic()
    avro_topic = next((t.name for t in todo if t.encoding == "avro"), None)
    enc = Encoders(env.registry_url if avro_topic else None, avro_topic)
    rng = random.Random(6)
    failures: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    for i in range(n):
        event = _event(i, n, rng)
        ts = event["received_at"]
        payloads = {"json": Encoders.json(event)}
        if avro_topic is not None:
            payloads["avro"] = enc.avro(event)
        for t in todo:
            value = payloads[t.encoding]
            while True:
                try:
                    producer.produce(
                        t.name,
                        value=value,
                        key=event["event_id"].encode(),
                        partition=i % t.partitions,
                        timestamp=ts,
                        on_delivery=on_delivery,
                    )
                    break
                except BufferError:
                    producer.poll(0.05)
        if i % 10000 == 0:
            producer.poll(0)
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"loading took longer than {timeout:.0f} s")
        if i and i % 500_000 == 0:
            log(f"loaded {i:,} of {n:,}")
    left = producer.flush(300)
    if left or failures:
        raise RuntimeError(f"producing failed: {left} undelivered, {failures[:3]}")
    for t in todo:
        if t.encoding == "avro":
            t.schema_id = enc.schema_id
        have = topic_count(env.bootstrap, t.name, t.partitions)
        if have != t.records:
            raise RuntimeError(f"{t.name}: {have} records after loading, expected {t.records}")
    log(f"loaded {n:,} records into {len(todo)} topic(s) in {time.monotonic() - started:.0f} s")


# -- workers (subprocesses) ------------------------------------------------------------------


def _consumer_conf(bootstrap: str) -> dict[str, Any]:
    """Exactly the consumer settings ``s3sink catchup`` uses by default (its own group)."""
    from s3sink.config import SinkConfig
    from s3sink.sink import consumer_config

    conf = consumer_config(SinkConfig(bootstrap_servers=bootstrap, name="bench"), catchup=True)
    conf.pop("statistics.interval.ms", None)  # the sink reads them in a callback
    conf["group.id"] = f"bench-ceiling-{uuid.uuid4().hex[:8]}"
    return conf


def worker_ceiling(bootstrap: str, topic: str, expect: int, batch: int) -> dict[str, Any]:
    """confluent-kafka batch consume, touching each value, nothing else."""
    from confluent_kafka import Consumer

    started = time.monotonic()
    c = Consumer(_consumer_conf(bootstrap))
    c.subscribe([topic])
    n = 0
    nbytes = 0
    first = None
    while n < expect:
        msgs = c.consume(num_messages=batch, timeout=0.2)
        if msgs and first is None:
            first = time.monotonic()
        for m in msgs:
            v = m.value()
            if v is not None and m.error() is None:
                n += 1
                nbytes += len(v)
    elapsed = time.monotonic() - started
    c.close()
    return {"records": n, "bytes": nbytes, "seconds": elapsed}


def worker_naive(bootstrap: str, topic: str, expect: int, batch: int, out: str) -> dict[str, Any]:
    """The naive reference: json.loads per record, Table.from_pylist per batch, Parquet zstd."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from confluent_kafka import Consumer

    started = time.monotonic()
    c = Consumer(_consumer_conf(bootstrap))
    c.subscribe([topic])
    n = 0
    writer: Any = None
    schema: Any = None
    while n < expect:
        msgs = c.consume(num_messages=batch, timeout=0.2)
        rows = [json.loads(m.value() or b"null") for m in msgs if m.error() is None]
        if not rows:
            continue
        table = pa.Table.from_pylist(rows, schema=schema)
        if writer is None:
            schema = table.schema
            writer = pq.ParquetWriter(out, schema, compression="zstd")
        writer.write_table(table)
        n += len(rows)
    if writer is not None:
        writer.close()
    elapsed = time.monotonic() - started
    c.close()
    return {"records": n, "seconds": elapsed, "bytes_out": os.path.getsize(out)}


# -- sink runs ---------------------------------------------------------------------------------


@dataclass
class Case:
    name: str  # json-jsonl, json-parquet, ...
    label: str
    topic: Topic
    fmt: str
    backend: str  # local | minio
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class FileInfo:
    key: str
    size: int
    reason: str


@dataclass
class Row:
    case: str
    label: str
    backend: str
    records: int
    seconds: float
    records_per_s: float
    mb_per_s: float
    cpu_s_per_m: float
    peak_rss_mib: float
    s3_requests: int | None
    s3_requests_per_gb: float | None
    files: int
    mean_file_mib: float
    target_mib: float
    ceiling_ratio: float | None
    target_ratio: float | None
    wall_s: float
    ok: bool
    note: str = ""
    reasons: dict[str, int] = field(default_factory=dict)
    bytes_out: int = 0
    tasks: int = 1


_SUMMARY = re.compile(
    r"catch-up done: (\d+) records in (\d+) files, (\d+) commits, (\d+) partitions, "
    r"([\d.]+) s"
)


def sink_config(env: Env, case: Case, run_id: str, out_dir: Path) -> dict[str, str]:
    topic = case.topic
    cfg = {
        "name": f"bench-{run_id}",
        "topics": topic.name,
        "bootstrap.servers": env.bootstrap,
        "group.id": f"bench-{run_id}",
        "value.converter": topic.encoding,
        "format.class": case.fmt,
        "partitioner.class": "time",
        "path.format": PATH_FORMAT,
        "partition.duration.ms": "3600000",
        "timestamp.extractor": "Record",
        "flush.size": "1000000000",
        "file.max.bytes": str(FILE_MAX_BYTES),
        "http.listen": "none",
        "log.format": "json",
    }
    if case.fmt == "parquet":
        cfg["parquet.codec"] = "zstd"
    if case.fmt == "avro":
        cfg["avro.codec"] = "zstd"
    if topic.encoding == "avro":
        cfg["value.converter.schema.registry.url"] = env.registry_url
    if case.backend == "local":
        cfg["storage.url"] = (out_dir / run_id).as_uri()
    else:
        cfg["storage.url"] = f"s3://{env.bucket}/{run_id}"
        cfg["store.url"] = env.proxy.url
        cfg["s3.path.style.access.enabled"] = "true"
        cfg["s3.region"] = env.s3.region
    cfg.update(case.extra)
    return cfg


def _commit_reasons(stderr: Path) -> dict[tuple[int, int], str]:
    """(partition, seq) -> rotation reason, from the sink's JSON log lines."""
    out: dict[tuple[int, int], str] = {}
    pattern = re.compile(r"committed seq (\d+) .*\((\w+)\)$")
    with stderr.open(errors="replace") as f:
        for line in f:
            if "committed seq" not in line:
                continue
            with contextlib.suppress(ValueError):
                rec = json.loads(line)
                m = pattern.search(str(rec.get("msg", "")))
                if m is not None and "partition" in rec:
                    out[(int(rec["partition"]), int(m.group(1)))] = m.group(2)
    return out


def _collect_files(
    env: Env, case: Case, run_id: str, out_dir: Path, reasons: dict[tuple[int, int], str]
) -> list[FileInfo]:
    """Data files from the commit markers, with the reason of the roll that made them."""
    markers: list[tuple[str, bytes]] = []
    if case.backend == "local":
        root = out_dir / run_id / "_s3sink" / "log"
        markers = [(str(p), p.read_bytes()) for p in root.rglob("*.json")]
    else:
        client = s3_client(env.s3)
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=env.bucket, Prefix=f"{run_id}/_s3sink/log/"):
            for obj in page.get("Contents", []):
                body = client.get_object(Bucket=env.bucket, Key=obj["Key"])["Body"].read()
                markers.append((obj["Key"], body))
    files: list[FileInfo] = []
    for key, body in markers:
        m = json.loads(body)
        partition = int(key.rsplit("/", 2)[-2])
        reason = reasons.get((partition, int(m["seq"])), "unknown")
        for f in m.get("files", ()):
            if not f["key"].startswith("_s3sink/"):
                files.append(FileInfo(f["key"], int(f["size"]), reason))
    return files


def _cleanup(env: Env, case: Case, run_id: str, out_dir: Path) -> None:
    if case.backend == "local":
        shutil.rmtree(out_dir / run_id, ignore_errors=True)
        return
    client = s3_client(env.s3)
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=env.bucket, Prefix=f"{run_id}/"):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=env.bucket, Delete={"Objects": keys, "Quiet": True})


def run_sink(
    env: Env,
    case: Case,
    out_dir: Path,
    logs_dir: Path,
    *,
    timeout: float,
    ceiling: float | None,
    profile: str | None = None,
) -> tuple[Row, list[FileInfo]]:
    run_id = f"{case.name}-{case.backend}-{uuid.uuid4().hex[:6]}"
    cfg = sink_config(env, case, run_id, out_dir)
    cfg_path = logs_dir / f"{run_id}.json"
    cfg_path.write_text(json.dumps({"name": cfg["name"], "config": cfg}, indent=1))
    child_env = clean_env()
    if env.s3 is not None:
        child_env["AWS_ACCESS_KEY_ID"] = env.s3.access_key
        child_env["AWS_SECRET_ACCESS_KEY"] = env.s3.secret_key
    argv = [sys.executable, "-m", "s3sink", "catchup", "-c", str(cfg_path), "--no-progress"]
    if profile:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        argv = [
            spy,
            "record",
            "--nonblocking",
            "-r",
            "50",
            "-o",
            profile,
            "--format",
            "speedscope",
            "--",
            *argv,
        ]
    before = env.proxy.counts["requests"] if env.proxy is not None else 0
    log(f"run {case.label} on {case.backend} ({run_id})")
    res = run_measured(argv, timeout=timeout, env=child_env, stderr_path=logs_dir / f"{run_id}.log")
    requests = env.proxy.counts["requests"] - before if env.proxy is not None else None
    m = _SUMMARY.search(res.stdout)
    ok = res.returncode == 0 and m is not None and not res.timed_out
    records = int(m.group(1)) if m else 0
    seconds = float(m.group(5)) if m else res.wall_s
    files: list[FileInfo] = []
    note = ""
    if ok:
        files = _collect_files(env, case, run_id, out_dir, _commit_reasons(res.stderr_path))
        if records != case.topic.records:
            ok = False
            note = f"{records} records archived, expected {case.topic.records}"
    else:
        note = "timed out" if res.timed_out else f"exit {res.returncode}, see {res.stderr_path}"
        log(f"{case.label}: {note}")
    _cleanup(env, case, run_id, out_dir)
    rate = records / seconds if seconds > 0 else 0.0
    bytes_in = case.topic.value_bytes * records / max(1, case.topic.records)
    bytes_out = sum(f.size for f in files)
    row = Row(
        tasks=int(case.extra.get("tasks.max", "1")),
        case=case.name,
        label=case.label,
        backend=case.backend,
        records=records,
        seconds=round(seconds, 2),
        records_per_s=round(rate),
        mb_per_s=round(bytes_in / seconds / 1e6, 1) if seconds > 0 else 0.0,
        cpu_s_per_m=round(res.cpu_s / max(1, records) * 1e6, 2),
        peak_rss_mib=round(res.maxrss_bytes / MiB, 1),
        s3_requests=requests,
        s3_requests_per_gb=None
        if requests is None or not bytes_in
        else round(requests / (bytes_in / 1e9), 1),
        files=len(files),
        mean_file_mib=round(bytes_out / len(files) / MiB, 2) if files else 0.0,
        target_mib=round(int(cfg["file.max.bytes"]) / MiB, 1),
        ceiling_ratio=round(rate / ceiling, 3) if ceiling and ok else None,
        target_ratio=TARGETS.get(case.name),
        wall_s=round(res.wall_s, 2),
        ok=ok,
        note=note,
        reasons=dict(Counter(f.reason for f in files)),
        bytes_out=bytes_out,
    )
    return row, files


def run_worker(
    kind: str, args: dict[str, Any], logs_dir: Path, timeout: float
) -> tuple[dict[str, Any], ProcResult]:
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        kind,
        "--worker-args",
        json.dumps(args),
    ]
    res = run_measured(
        argv,
        timeout=timeout,
        env=clean_env(),
        stderr_path=logs_dir / f"{kind}-{uuid.uuid4().hex[:6]}.log",
    )
    if res.returncode != 0 or res.timed_out:
        raise RuntimeError(f"{kind} worker failed (exit {res.returncode}): see {res.stderr_path}")
    out: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return out, res


@dataclass
class Ceiling:
    topic: str
    records_per_s: float
    mb_per_s: float
    cpu_s_per_m: float
    peak_rss_mib: float
    runs: list[int]


def measure_ceiling(
    env: Env, topic: Topic, logs_dir: Path, *, repeats: int, timeout: float, batch: int
) -> Ceiling:
    runs: list[tuple[float, dict[str, Any], ProcResult]] = []
    for _ in range(repeats):
        out, res = run_worker(
            "ceiling",
            {
                "bootstrap": env.bootstrap,
                "topic": topic.name,
                "expect": topic.records,
                "batch": batch,
            },
            logs_dir,
            timeout,
        )
        runs.append((out["records"] / out["seconds"], out, res))
        topic.value_bytes = int(out["bytes"])
    rates = [round(r[0]) for r in runs]
    _, out, res = max(runs, key=lambda r: r[0])
    log(f"ceiling {topic.name}: {[f'{r:,.0f}' for r in rates]} records/s")
    return Ceiling(
        topic=topic.name,
        records_per_s=round(max(rates)),
        mb_per_s=round(out["bytes"] / out["seconds"] / 1e6, 1),
        cpu_s_per_m=round(res.cpu_s / out["records"] * 1e6, 2),
        peak_rss_mib=round(res.maxrss_bytes / MiB, 1),
        runs=rates,
    )


# -- reporting --------------------------------------------------------------------------------


def _fmt(v: Any, spec: str = "") -> str:
    if v is None:
        return "-"
    return format(v, spec)


def table(rows: Sequence[Row], ceilings: dict[str, Ceiling]) -> str:
    head = (
        f"{'case':<24} {'backend':<7} {'records/s':>10} {'MB/s':>6} {'CPU s/M':>8} "
        f"{'RSS MiB':>8} {'S3 req/GB':>9} {'files':>5} {'mean MiB':>8} {'/target':>7} "
        f"{'ceiling':>7} {'goal':>5}"
    )
    lines = [head, "-" * len(head)]
    for name, c in ceilings.items():
        lines.append(
            f"{'ceiling ' + name:<24} {'-':<7} {c.records_per_s:>10,.0f} {c.mb_per_s:>6.1f} "
            f"{c.cpu_s_per_m:>8.2f} {c.peak_rss_mib:>8.0f} {'-':>9} {'-':>5} {'-':>8} "
            f"{'-':>7} {'1.000':>7} {'-':>5}"
        )
    for r in rows:
        frac = r.mean_file_mib / r.target_mib if r.target_mib else 0.0
        mark = "" if r.ok else "  FAILED: " + r.note
        lines.append(
            f"{r.label:<24} {r.backend:<7} {r.records_per_s:>10,.0f} {r.mb_per_s:>6.1f} "
            f"{r.cpu_s_per_m:>8.2f} {r.peak_rss_mib:>8.0f} "
            f"{_fmt(r.s3_requests_per_gb, '.0f'):>9} {r.files:>5} {r.mean_file_mib:>8.2f} "
            f"{frac:>7.2f} {_fmt(r.ceiling_ratio, '.3f'):>7} {_fmt(r.target_ratio, '.2f'):>5}"
            f"{mark}"
        )
    return "\n".join(lines)


def file_size_check(files: Sequence[FileInfo], target: int) -> dict[str, Any]:
    size_rolled = [f for f in files if f.reason == "file_max_bytes"]
    within = [f for f in size_rolled if abs(f.size - target) <= 0.1 * target]
    exempt = {"rotate_interval", "schedule"}
    small = [f for f in files if f.size < MiB and f.reason not in exempt]
    by_reason: dict[str, list[int]] = defaultdict(list)
    for f in files:
        by_reason[f.reason].append(f.size)
    return {
        "files": len(files),
        "size_rolled": len(size_rolled),
        "size_rolled_within_10pct": len(within),
        "size_rolled_min_mib": round(min((f.size for f in size_rolled), default=0) / MiB, 2),
        "size_rolled_max_mib": round(max((f.size for f in size_rolled), default=0) / MiB, 2),
        "under_1mib_not_time_or_schedule": len(small),
        "sizes_mib_by_reason": {
            k: sorted(round(s / MiB, 2) for s in v) for k, v in sorted(by_reason.items())
        },
        "ok": bool(size_rolled) and len(within) == len(size_rolled) and not small,
    }


# -- main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="small N: under a minute, for CI")
    p.add_argument("--records", type=int, default=None, help="records per topic (2,000,000)")
    p.add_argument("--partitions", type=int, default=8, help="partitions per topic (8)")
    p.add_argument(
        "--backends", default="local,minio", help="comma-separated: local, minio (local,minio)"
    )
    p.add_argument(
        "--cases",
        default="json-jsonl,json-parquet,avro-parquet,avro-avro",
        help="comma-separated main cases",
    )
    p.add_argument("--skip", default="", help="comma-separated: memory, filesize, naive")
    p.add_argument("--ceiling-runs", type=int, default=None, help="ceiling repeats per topic")
    p.add_argument("--batch", type=int, default=10000, help="consume batch size (10000)")
    p.add_argument(
        "--tasks",
        type=lambda text: [int(x) for x in text.split(",")],
        default=[1],
        help="tasks.max of the sink in the main cases; several (e.g. 1,2) run each (1)",
    )
    p.add_argument("--state-dir", default=None, help="broker/MinIO state (reused across runs)")
    p.add_argument("--results", default=str(ROOT / "bench" / "results"), help="JSON output dir")
    p.add_argument("--timeout", type=float, default=None, help="seconds per sink run")
    p.add_argument("--profile", default=None, help="py-spy every sink run into this directory")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-args", default="{}", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        wargs = json.loads(args.worker_args)
        result = worker_ceiling(**wargs) if args.worker == "ceiling" else worker_naive(**wargs)
        print(json.dumps(result))
        return 0
    from s3sink.local import cache_dir

    started = time.monotonic()
    n = args.records or (20_000 if args.quick else 2_000_000)
    parts = args.partitions if not args.quick else min(args.partitions, 4)
    repeats = args.ceiling_runs or (1 if args.quick else 3)
    timeout = args.timeout or max(60.0, n / 5_000)
    skip = {s for s in args.skip.split(",") if s}
    backends = [b for b in args.backends.split(",") if b]
    cases_wanted = [c for c in args.cases.split(",") if c]
    state = Path(args.state_dir) if args.state_dir else cache_dir() / "bench"
    state.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    logs_dir = state / "runs" / stamp
    logs_dir.mkdir(parents=True, exist_ok=True)
    out_dir = state / "out"
    out_dir.mkdir(exist_ok=True)
    load_start = load_average()
    log(f"N={n:,} P={parts} backends={backends} load={load_start} logs={logs_dir}")

    v = DATASET_VERSION
    json_topic = Topic(f"bench-v{v}-json-n{n}-p{parts}", parts, n, "json")
    avro_topic = Topic(f"bench-v{v}-avro-n{n}-p{parts}", parts, n, "avro")
    mem_parts = MEMORY_PARTITIONS
    mem_topic = Topic(f"bench-v{v}-json-n{n}-p{mem_parts}", mem_parts, n, "json")
    size_parts = 1 if args.quick else 2
    size_topic = Topic(f"bench-v{v}-json-n{n}-p{size_parts}", size_parts, n, "json")
    topics = [json_topic, avro_topic]
    if "memory" not in skip:
        topics.append(mem_topic)
    if "filesize" not in skip:
        topics.append(size_topic)

    rows: list[Row] = []
    extra: dict[str, Any] = {}
    ceilings: dict[str, Ceiling] = {}
    with environment(state, "minio" in backends) as env:
        ensure_topics(env, topics, n, timeout=max(300.0, n / 2_000))
        for t in (json_topic, avro_topic):
            ceilings[t.encoding] = measure_ceiling(
                env, t, logs_dir, repeats=repeats, timeout=timeout, batch=args.batch
            )
        for t in (mem_topic, size_topic):
            t.value_bytes = json_topic.value_bytes * t.records // max(1, json_topic.records)
        labels = {
            "json-jsonl": ("JSON -> JSON lines", json_topic, "json"),
            "json-parquet": ("JSON -> Parquet zstd", json_topic, "parquet"),
            "avro-parquet": ("Avro -> Parquet zstd", avro_topic, "parquet"),
            "avro-avro": ("Avro -> Avro zstd", avro_topic, "avro"),
        }
        for backend, task_count, name in itertools.product(backends, args.tasks, cases_wanted):
            label, topic, fmt = labels[name]
            tasks = {"tasks.max": str(task_count)} if task_count != 1 else {}
            if task_count != 1:
                label = f"{label} x{task_count}"
            case = Case(name, label, topic, fmt, backend, tasks)
            profile = None
            if args.profile:
                Path(args.profile).mkdir(parents=True, exist_ok=True)
                profile = str(
                    Path(args.profile) / f"{name}-{backend}-t{task_count}.speedscope.json"
                )
            row, _ = run_sink(
                env,
                case,
                out_dir,
                logs_dir,
                timeout=timeout,
                ceiling=ceilings[topic.encoding].records_per_s,
                profile=profile,
            )
            rows.append(row)
        if "naive" not in skip:
            out_file = out_dir / f"naive-{uuid.uuid4().hex[:6]}.parquet"
            try:
                res, proc = run_worker(
                    "naive",
                    {
                        "bootstrap": env.bootstrap,
                        "topic": json_topic.name,
                        "expect": n,
                        "batch": args.batch,
                        "out": str(out_file),
                    },
                    logs_dir,
                    timeout,
                )
            finally:
                out_file.unlink(missing_ok=True)
            rate = res["records"] / res["seconds"]
            ceiling = ceilings["json"].records_per_s
            rows.append(
                Row(
                    case="naive-parquet",
                    label="naive json.loads+pylist",
                    backend="local",
                    records=res["records"],
                    seconds=round(res["seconds"], 2),
                    records_per_s=round(rate),
                    mb_per_s=round(json_topic.value_bytes / res["seconds"] / 1e6, 1),
                    cpu_s_per_m=round(proc.cpu_s / res["records"] * 1e6, 2),
                    peak_rss_mib=round(proc.maxrss_bytes / MiB, 1),
                    s3_requests=None,
                    s3_requests_per_gb=None,
                    files=1,
                    mean_file_mib=round(res["bytes_out"] / MiB, 2),
                    target_mib=round(FILE_MAX_BYTES / MiB, 1),
                    ceiling_ratio=round(rate / ceiling, 3),
                    target_ratio=None,
                    wall_s=round(proc.wall_s, 2),
                    ok=True,
                    note="one file, no partitioning, no commit protocol",
                    bytes_out=int(res["bytes_out"]),
                )
            )
        if "memory" not in skip:
            for backend in backends:
                case = Case(
                    "memory",
                    f"memory {mem_parts}p JSON->Parquet",
                    mem_topic,
                    "parquet",
                    backend,
                    {"buffer.memory.bytes": str(MEMORY_BUDGET)},
                )
                row, _ = run_sink(env, case, out_dir, logs_dir, timeout=timeout, ceiling=None)
                limit = (MEMORY_BUDGET + RSS_ALLOWANCE) / MiB
                extra["memory" if backend == "local" else f"memory_{backend}"] = {
                    "partitions": mem_parts,
                    "budget_mib": MEMORY_BUDGET / MiB,
                    "peak_rss_mib": row.peak_rss_mib,
                    "limit_mib": limit,
                    "ok": row.ok and row.peak_rss_mib <= limit,
                    "rolls": row.reasons,
                }
                rows.append(row)
        if "filesize" not in skip:
            case = Case(
                "filesize", f"file size {size_parts}p JSON lines", size_topic, "json", "local"
            )
            row, files = run_sink(env, case, out_dir, logs_dir, timeout=timeout, ceiling=None)
            extra["file_size"] = {
                "target_mib": FILE_MAX_BYTES / MiB,
                **file_size_check(files, FILE_MAX_BYTES),
            }
            rows.append(row)

    text = table(rows, ceilings)
    load_end = load_average()
    print(text)
    for name, info in extra.items():
        print(f"{name}: {json.dumps(info)}")
    held = {
        f"{r.case}/{r.backend}" + (f" x{r.tasks}" if r.tasks != 1 else ""): (
            r.ceiling_ratio is not None and r.ceiling_ratio >= r.target_ratio
        )
        for r in rows
        if r.target_ratio is not None
    }
    print(f"targets: {json.dumps(held)}")
    print(f"load average: start {load_start}, end {load_end}")
    result = {
        "timestamp": stamp,
        "quick": args.quick,
        "records": n,
        "partitions": parts,
        "dataset_value_bytes": {"json": json_topic.value_bytes, "avro": avro_topic.value_bytes},
        "machine": machine(),
        "load_average": {"start": load_start, "end": load_end},
        "ceilings": {k: asdict(c) for k, c in ceilings.items()},
        "rows": [asdict(r) for r in rows],
        "targets_held": held,
        **extra,
        "seconds": round(time.monotonic() - started, 1),
        "table": text,
    }
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"bench-{'quick-' if args.quick else ''}{stamp}.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"results: {path}")
    failed = [r for r in rows if not r.ok]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
