"""The Kafka Connect connector configs users bring (../shared/examples) run unchanged.

Each example runs as users run it, ``python -m s3sink run -c <example>``, with only addresses
swapped through environment variables, as a user would for a local test: the broker, the
Schema Registry, the S3 endpoint and the HTTP listener. Topics, bucket, ``topics.dir``,
``flush.size``, rotation, partitioner, format and SSE-KMS settings are the example's own.

Records carry an id and a record time (``timestamp.field``, also the Kafka timestamp) that
walks through three time buckets per partition; one last record per partition jumps past
``rotate.interval.ms`` (or follows ``flush.size`` records), so that everything before it is
committed while the sink runs. SIGTERM then commits what is buffered and the process exits 0.
The output must hold every record exactly once, in the example's layout, with the example's
server-side encryption on every data file; a record that cannot be decoded goes where
``errors.tolerance`` sends it.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import gzip
import io
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fastavro
import pyarrow.parquet as pq
import pytest
from confluent_kafka import KafkaException
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from formats.decoders import decoder_name
from partitioners import ALIASES as PARTITIONER_ALIASES
from s3sink.commitlog import ROOT
from s3sink.config import CONNECT_ONLY_KEYS, SinkConfig, load_config, read_config_file
from s3sink.local.process import _die_with_parent, free_port
from s3sink.sink import storage_from_config
from s3sink.storage.base import Storage
from s3sink.verify import verify
from tests.rig.kafka import ProducerRecord, admin, consume, create_topic, produce
from tests.rig.s3 import S3Endpoint, create_bucket
from tests.rig.schema_registry import SchemaRegistryServer
from tests.rig.sinkproc import all_markers

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "shared" / "examples"
if not EXAMPLES_DIR.is_dir():  # CI clones next to shared/; a developer checkout may sit elsewhere
    EXAMPLES_DIR = Path("/work/shared/examples")
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.json"))

HOUR = 3_600_000
BASE = 1_767_225_600_000  # 2026-01-01T00:00:00Z
PARTITIONS = 2
PER_BUCKET = 100  # records per partition and time bucket (three buckets)
TIME_BUCKETS = 3
UNDECODABLE_AVRO = b"\x00\x00\x00\x7f\x07not avro"  # wire format, a schema id never registered


def test_examples_are_found() -> None:
    assert EXAMPLES, f"no *.json in {EXAMPLES_DIR}"


@pytest.fixture
def registry() -> Iterator[SchemaRegistryServer]:
    with SchemaRegistryServer() as server:
        yield server


# -- the rig: the example's own topics, groups and bucket, fresh -------------------------------


def _drop_topic(bootstrap: str, name: str, deadline: float) -> None:
    """The example names its topics: drop what an earlier run left under that name."""
    client = admin(bootstrap)
    if name in client.list_topics(timeout=10).topics:
        client.delete_topics([name], operation_timeout=30)[name].result(timeout=60)
        while name in client.list_topics(timeout=10).topics:
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {name} still exists after deletion")
            time.sleep(0.1)


def _fresh_topic(bootstrap: str, name: str, partitions: int, timeout: float = 60.0) -> None:
    """A new topic under a name the example gives (an earlier run's is dropped first)."""
    deadline = time.monotonic() + timeout
    _drop_topic(bootstrap, name, deadline)
    while True:  # the broker may still be finishing the deletion
        try:
            create_topic(bootstrap, partitions, name=name)
            return
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _forget_group(bootstrap: str, group: str) -> None:
    client = admin(bootstrap)  # held: the futures resolve only while their client lives
    futures = client.delete_consumer_groups([group], request_timeout=30)
    with contextlib.suppress(KafkaException):  # no such group: nothing to forget
        futures[group].result(timeout=30)


def _fresh_bucket(endpoint: S3Endpoint, client: S3Client, bucket: str) -> None:
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        create_bucket(endpoint, bucket)
        return
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if objects:
            client.delete_objects(Bucket=bucket, Delete={"Objects": objects})  # type: ignore[typeddict-item]
    for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])


# -- what to produce ---------------------------------------------------------------------------


def _encoder(cfg: SinkConfig, topic: str, registry: SchemaRegistryServer, time_field: str) -> Any:
    name = decoder_name(cfg.value_converter)
    if name == "avro":
        schema = {
            "type": "record",
            "name": "Order",
            "fields": [
                {"name": "id", "type": "long"},
                {"name": time_field, "type": "long"},
                {"name": "country", "type": "string"},
                {"name": "amount", "type": "double"},
            ],
        }
        serializer = AvroSerializer(SchemaRegistryClient({"url": registry.url}), json.dumps(schema))
        ctx = SerializationContext(topic, MessageField.VALUE)
        return lambda row: serializer(row, ctx), UNDECODABLE_AVRO
    if name == "json":
        return lambda row: json.dumps(row).encode(), b"{not json"
    raise AssertionError(f"this test has no records for value.converter={cfg.value_converter}")


def _records(
    cfg: SinkConfig, encode: Callable[[dict[str, Any]], bytes], time_field: str
) -> tuple[list[ProducerRecord], int]:
    """Records in time order per partition, and how many ids they carry. The last record of
    each partition forces a roll of everything before it (by record time, else flush.size)."""
    by_time = cfg.rotate_interval_ms > 0 and cfg.timestamp_extractor != "Wallclock"
    if by_time:
        per_partition = PER_BUCKET * TIME_BUCKETS
        step = max(HOUR, cfg.rotate_interval_ms)
    else:
        assert cfg.flush_size <= 20_000, "no record-time roll and a flush.size too large to fill"
        per_partition = cfg.flush_size
        step = HOUR
    out: list[ProducerRecord] = []
    i = 0
    for p in range(PARTITIONS):
        for k in range(per_partition + 1):  # the last one: the roll trigger
            bucket = k * TIME_BUCKETS // per_partition
            t = BASE + bucket * step + (k % PER_BUCKET)
            row = {"id": i, time_field: t, "country": "FR", "amount": i / 2}
            out.append(ProducerRecord(encode(row), str(i).encode(), None, t, p))
            i += 1
    return out, i


# -- reading the output ------------------------------------------------------------------------


def _rows(storage: Storage, key: str) -> list[dict[str, Any]]:
    data, _ = storage.get(key)
    if key.endswith(".parquet"):
        rows: list[dict[str, Any]] = pq.read_table(io.BytesIO(data)).to_pylist()
        return rows
    if key.endswith(".avro"):
        return [dict(r) for r in fastavro.reader(io.BytesIO(data))]  # type: ignore[arg-type]
    if key.endswith(".gz"):
        data = gzip.decompress(data)
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def _joda(path_format: str, t_ms: int, tz: str) -> str:
    """The subset of Joda patterns the examples use: quoted literals, YYYY, MM, dd, HH."""
    from zoneinfo import ZoneInfo

    at = datetime.fromtimestamp(t_ms / 1000, ZoneInfo(tz))
    fields = {"YYYY": f"{at.year:04d}", "MM": f"{at.month:02d}", "dd": f"{at.day:02d}"}
    fields["HH"] = f"{at.hour:02d}"
    parts = re.findall(r"'[^']*'|YYYY|MM|dd|HH|[^'A-Za-z]+", path_format)
    assert "".join(parts) == path_format, f"path.format beyond this test: {path_format}"
    return "".join(p.strip("'") if p.startswith("'") else fields.get(p, p) for p in parts)


# -- the run -----------------------------------------------------------------------------------


def _wait_until_committed(
    proc: subprocess.Popen[bytes],
    storage: Storage,
    topic: str,
    below: Mapping[int, int],
    log: Path,
    timeout: float = 240.0,
) -> None:
    """Until each partition's commit log covers every offset before ``below[p]``."""
    deadline = time.monotonic() + timeout
    while True:
        ends = {p: max((m.end for m in all_markers(storage, topic, p)), default=0) for p in below}
        if all(ends[p] >= below[p] for p in below):
            return
        tail = log.read_text(errors="replace")[-3000:]
        assert proc.poll() is None, f"the sink exited ({proc.returncode}):\n{tail}"
        assert time.monotonic() < deadline, f"commits reached {ends}, not {dict(below)}:\n{tail}"
        time.sleep(0.25)


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_connect_example_runs_unchanged(
    example: Path,
    kafka_bootstrap: str,
    s3_endpoint: S3Endpoint,
    s3_client: S3Client,
    registry: SchemaRegistryServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = read_config_file(example)
    listen = f"127.0.0.1:{free_port()}"
    # addresses only: where the broker, the registry, S3 and the HTTP listener are
    env = {
        "S3SINK_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "S3SINK_STORE_URL": s3_endpoint.url,
        "S3SINK_HTTP_LISTEN": listen,
        "AWS_ACCESS_KEY_ID": s3_endpoint.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_endpoint.secret_key,
    }
    if "value.converter.schema.registry.url" in raw:
        env["S3SINK_VALUE_CONVERTER_SCHEMA_REGISTRY_URL"] = registry.url
    cfg = load_config(example, environ=env)
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):  # this process reads S3 too
        monkeypatch.setenv(k, env[k])
    assert cfg.name == json.loads(example.read_text())["name"]
    assert len(cfg.topics) == 1, "this test drives one topic"
    topic = cfg.topics[0]
    assert cfg.s3_bucket_name is not None
    bucket = cfg.s3_bucket_name

    _fresh_bucket(s3_endpoint, s3_client, bucket)
    _forget_group(kafka_bootstrap, cfg.effective_group_id)
    _fresh_topic(kafka_bootstrap, topic, PARTITIONS)
    dlq = cfg.errors_deadletterqueue_topic_name
    if dlq is not None:
        # the sink creates the dead-letter topic as Kafka Connect does, with
        # errors.deadletterqueue.topic.replication.factor (3 by default) capped by this
        # single-broker rig's one broker, and says so
        _drop_topic(kafka_bootstrap, dlq, time.monotonic() + 60)

    time_field = cfg.timestamp_field or "created_at"
    encode, undecodable = _encoder(cfg, topic, registry, time_field)
    records, n = _records(cfg, encode, time_field)
    if cfg.errors_tolerance == "all":
        records.insert(PER_BUCKET // 2, ProducerRecord(undecodable, b"bad", None, BASE, 0))
    delivered = produce(kafka_bootstrap, topic, records)
    ends = delivered.end_offsets()
    bad = next((d for d in delivered if records[d.seq].value == undecodable), None)

    storage = storage_from_config(cfg)
    log = tmp_path / "run.log"
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("S3SINK_")}
    child_env.update(env)
    argv = [sys.executable, "-m", "s3sink", "run", "-c", str(example)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=child_env,
            preexec_fn=_die_with_parent(),  # noqa: PLW1509
        )
    try:
        # every record but the last of each partition is committed while the sink runs
        _wait_until_committed(proc, storage, topic, {p: e - 1 for p, e in ends.items()}, log)
        proc.terminate()  # SIGTERM: commit what is buffered (the last records), exit 0
        code = proc.wait(90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text = log.read_text(errors="replace")
    assert code == 0, text[-4000:]
    for k in raw:
        if k in CONNECT_ONLY_KEYS:
            assert f"{k} is a Kafka Connect key with no effect here" in text, k
    if dlq is not None:  # created by the sink, with the replication factor it could have
        assert f"dead-letter topic {dlq} created (1 partition, replication factor 1)" in text
        assert "the cluster has 1 broker(s); creating it with replication factor 1" in text
    for p, ms in ((p, all_markers(storage, topic, p)) for p in range(PARTITIONS)):
        assert max(m.end for m in ms) == ends[p], (p, text[-3000:])

    # records exactly once, in the example's layout, as a reader lists them
    data_keys = sorted(i.key for i in storage.list(f"{cfg.topics_dir}/{topic}/"))
    assert data_keys, "no output"
    partitioner = PARTITIONER_ALIASES.get(cfg.partitioner_class, cfg.partitioner_class)
    ids: collections.Counter[int] = collections.Counter()
    for key in data_keys:
        rows = _rows(storage, key)
        assert rows, key
        ids.update(int(r["id"]) for r in rows)
        if partitioner == "time" and cfg.path_format:
            width = cfg.partition_duration_ms
            starts = {int(r[time_field]) // width * width for r in rows}
            assert len(starts) == 1, (key, starts)
            folder = _joda(cfg.path_format, starts.pop(), cfg.timezone)
            assert key.startswith(f"{cfg.topics_dir}/{topic}/{folder}/"), key
    assert ids == collections.Counter(range(n)), "not every record exactly once"
    assert verify(storage, cfg).ok

    # the example's server-side encryption reached every object a reader sees
    if cfg.s3_ssea_name is not None:
        for key in data_keys:
            head = s3_client.head_object(Bucket=bucket, Key=key)
            assert head.get("ServerSideEncryption") == cfg.s3_ssea_name, (key, head)
            if cfg.s3_sse_kms_key_id is not None:
                assert head.get("SSEKMSKeyId") == cfg.s3_sse_kms_key_id, (key, head)

    # the record that cannot be decoded went where errors.tolerance sends it
    if bad is None:
        return
    if dlq is not None:
        dead = consume(kafka_bootstrap, dlq, timeout=30)
        assert [d.value for d in dead] == [undecodable]
        headers = dict(dead[0].headers)
        assert headers["__connect.errors.topic"] == topic.encode()
        assert headers["__connect.errors.partition"] == str(bad.partition).encode()
        assert headers["__connect.errors.offset"] == str(bad.offset).encode()
        assert (headers["__connect.errors.exception.message"] or b"") != b""
    else:
        error_keys = [i.key for i in storage.list(f"{ROOT}/errors/{topic}/{bad.partition}/")]
        kept = [r for k in error_keys for r in _rows(storage, k)]
        assert [base64.b64decode(r["value"]) for r in kept] == [undecodable]
