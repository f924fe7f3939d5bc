"""The README's migration, backup and restore commands, run as the README writes them.

Avro orders (Confluent wire format, from the rig's Schema Registry) are produced into
``orders``. Then, line by line: ``s3sink run -c confluent-s3-sink-orders.json`` (the Kafka
Connect example shown under "Migrating", four tasks) until it has published files, SIGTERM;
``s3sink run -c backup.properties`` until it has consumed everything, SIGTERM, and its
alternative ``s3sink catchup``; every ``s3sink restore`` line of "Restore" (a dry run, the
whole archive into a second cluster, a time window into a new topic, some partitions by key)
and the ``--value-format avro`` restore of the Parquet archive. Only addresses and bucket names
are swapped (:class:`~tests.test_readme_commands.Swap`); the topics are the README's, on the
rig's own broker.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from s3sink.config import load_config
from s3sink.local import KafkaBroker
from s3sink.restore import DEFAULT_PROGRESS_TOPIC, parse_time
from tests.rig.kafka import ProducerRecord, create_topic, produce
from tests.rig.s3 import S3Endpoint, create_bucket, s3_client
from tests.rig.schema_registry import SchemaRegistryServer
from tests.test_connect_example import _drop_topic, _forget_group
from tests.test_readme import fenced_blocks
from tests.test_readme_commands import (
    NOT_RUN,
    Swap,
    commands_under,
    free_port,
    metric_total,
    run_line,
    run_until,
)
from tests.test_restore import by_partition, murmur2, read_committed

MIGRATING = "## Migrating from the Confluent S3 sink"
ARCHIVE = "### 1. Archive with the `backup` format"
RESTORE = "### 2. Restore"
OTHER = "### 4. From other formats"

SCHEMA = json.dumps(
    {
        "type": "record",
        "name": "Order",
        "fields": [
            {"name": "id", "type": "long"},
            {"name": "created_at", "type": "long"},
            {"name": "country", "type": "string"},
            {"name": "amount", "type": "double"},
        ],
    }
)
PARTITIONS = 8
PROGRESS_TOPIC = DEFAULT_PROGRESS_TOPIC
#: The topics the README's commands name on the source cluster (restore progress included).
SOURCE_TOPICS = (
    *("orders", "dlq-orders", "orders-replay", "orders-v2", "orders-avro"),
    PROGRESS_TOPIC,
)
N = 400
MORE = 40
T_KAFKA = parse_time("2024-05-01T09:00:00Z")  # Kafka timestamps: 09:00 to 13:00, every 36 s
T_CREATED = parse_time("2026-01-01T00:00:00Z")  # created_at: 4 s apart, all in one hour


def _produce_orders(bootstrap: str, registry: str, first: int, n: int) -> None:
    serializer = AvroSerializer(SchemaRegistryClient({"url": registry}), SCHEMA)
    ctx = SerializationContext("orders", MessageField.VALUE)
    produce(
        bootstrap,
        "orders",
        [
            ProducerRecord(
                value=serializer(
                    {
                        "id": i,
                        "created_at": T_CREATED + i * 4000,
                        "country": "FR",
                        "amount": i / 2,
                    },
                    ctx,
                ),
                key=str(i).encode(),
                timestamp_ms=T_KAFKA + i * 36_000,
                partition=i % PARTITIONS,
            )
            for i in range(first, first + n)
        ],
    )


def _keys(endpoint: S3Endpoint, bucket: str, prefix: str) -> list[str]:
    client = s3_client(endpoint)
    found = client.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for o in found.get("Contents", [])]


def _archived_ids(endpoint: S3Endpoint, bucket: str) -> dict[int, list[int]]:
    """Kafka partition -> ids in the published Parquet files of the migration's archive."""
    client = s3_client(endpoint)
    out: dict[int, list[int]] = {}
    for key in _keys(endpoint, bucket, "raw/orders/"):
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        partition = int(key.rsplit("/", 1)[1].split("+")[1])
        out.setdefault(partition, []).extend(
            pq.read_table(io.BytesIO(body)).column("id").to_pylist()
        )
    return out


@pytest.mark.slow
def test_migration_backup_and_restore_commands(
    kafka_broker: KafkaBroker,
    second_bootstrap: str,
    s3_endpoint: S3Endpoint,
    tmp_path: Path,
) -> None:
    source, dr = kafka_broker.bootstrap, second_bootstrap  # dr-kafka-1:9092 in the README
    datalake, archive = create_bucket(s3_endpoint), create_bucket(s3_endpoint)
    registry = SchemaRegistryServer().start()
    try:
        _run_all(source, dr, s3_endpoint, datalake, archive, registry, tmp_path)
    finally:
        registry.stop()


def _run_all(
    source: str,
    dr: str,
    endpoint: S3Endpoint,
    datalake: str,
    archive: str,
    registry: SchemaRegistryServer,
    cwd: Path,
) -> None:
    # the example connector config, then command lines and backup.properties
    swap_connector = Swap(
        {
            "http://localhost:9000": endpoint.url,
            "acme-datalake": datalake,
            "http://localhost:8081": registry.url,
        }
    )
    swap = Swap(
        {
            "broker1:9092": source,
            "kafka-1:9092": source,
            "dr-kafka-1:9092": dr,
            "my-archive": archive,
            "http://registry:8081": registry.url,
        }
    )
    port = free_port()
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": endpoint.access_key,
        "AWS_SECRET_ACCESS_KEY": endpoint.secret_key,
        "AWS_DEFAULT_REGION": endpoint.region,
        # the S3 endpoint and the listener: addresses
        "S3SINK_STORE_URL": endpoint.url,
        "S3SINK_S3_PATH_STYLE_ACCESS_ENABLED": "true",
        "S3SINK_HTTP_LISTEN": f"127.0.0.1:{port}",
    }
    (connector,) = [b for h, lang, b in fenced_blocks() if h == MIGRATING and lang == "json"]
    (cwd / "confluent-s3-sink-orders.json").write_text(swap_connector(connector))
    (props,) = [b for h, lang, b in fenced_blocks() if h == ARCHIVE and lang == "properties"]
    assert props.startswith("# backup.properties\n")
    (cwd / "backup.properties").write_text(swap(props))

    # the README's names are fixed (the Connect example test uses "orders" too): drop what an
    # earlier test or run left under them, topics, consumer groups and restore progress
    deadline = time.monotonic() + 120
    for cluster, names in ((source, SOURCE_TOPICS), (dr, ("orders", PROGRESS_TOPIC))):
        for name in names:
            _drop_topic(cluster, name, deadline)
    for config in ("confluent-s3-sink-orders.json", "backup.properties"):
        loaded = load_config(cwd / config, {**env, "S3SINK_BOOTSTRAP_SERVERS": source})
        _forget_group(source, loaded.effective_group_id)
    create_topic(source, PARTITIONS, name="orders")
    create_topic(source, 1, name="dlq-orders")
    _produce_orders(source, registry.url, 0, N)
    ran: list[str] = []

    # -- Migrating: the Connect config, unchanged, four tasks; stop once files are published
    (line,) = commands_under(MIGRATING)
    done = run_until(
        swap(line), env, cwd, lambda: bool(_keys(endpoint, datalake, "raw/orders/")), timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "tasks.max=4" in done.stderr
    ran.append(line)
    archived = _archived_ids(endpoint, datalake)
    ids = sorted(i for p in archived.values() for i in p)
    assert ids and len(ids) == len(set(ids)) and set(ids) <= set(range(N))
    assert all(i % PARTITIONS == p for p, got in archived.items() for i in got)

    # -- backup: run until every record is consumed, SIGTERM; then the catch-up alternative
    (line,) = commands_under(ARCHIVE)
    run, alternative = line.split("# or: ")
    done = run_until(swap(run), env, cwd, lambda: metric_total(port, "records_consumed_total") >= N)
    assert done.returncode == 0, done.stderr[-3000:]
    _produce_orders(source, registry.url, N, MORE)
    done = run_line(swap(alternative), env, cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith(f"catch-up done: {MORE} records"), done.stdout
    ran.append(line)
    want = by_partition(read_committed(source, "orders"))
    assert sum(map(len, want.values())) == N + MORE

    # -- restore, line by line
    restore = commands_under(RESTORE)
    assert len(restore) == 5
    outputs: list[str] = []
    for line in restore:
        words = shlex.split(line)
        if line in NOT_RUN:  # kafka-topics.sh --create: the same topic, by the admin client
            assert words[0] == "kafka-topics.sh" and "--create" in words
            at = {w: words[i + 1] for i, w in enumerate(words[:-1]) if w.startswith("--")}
            create_topic(
                swap(at["--bootstrap-server"]), int(at["--partitions"]), name=at["--topic"]
            )
            continue
        target = words[words.index("--to-topic") + 1]
        on = swap(words[words.index("--bootstrap") + 1]) if "--bootstrap" in words else source
        if "--dry-run" not in words and on == source:  # "a new topic": created first
            create_topic(source, 3 if "--by-key" in words else PARTITIONS, name=target)
        done = run_line(swap(line), env, cwd)
        assert done.returncode == 0, f"{line}: {done.stderr[-3000:]}"
        outputs.append(done.stdout)
        ran.append(line)

    dry, whole, window, some = outputs
    assert "note: --to-topic orders does not exist yet" in dry
    planned = [ln for ln in dry.splitlines() if ln.startswith("partition ")]
    assert len(planned) == PARTITIONS
    assert sum(int(ln.split(", ")[2].split()[0].replace(",", "")) for ln in planned) == N + MORE
    assert "mapping: partitions kept 1:1" in dry

    # the whole archive on the second cluster: byte for byte, partitions 1:1
    assert whole.startswith(f"restore done: {N + MORE} records from orders into orders"), whole
    assert by_partition(read_committed(dr, "orders")) == want

    # the window [10:00, 12:30) into orders-replay on the same cluster
    lo, hi = parse_time("2024-05-01T10:00:00Z"), parse_time("2024-05-01T12:30:00Z")
    in_window = {p: [r for r in rs if lo <= r[3] < hi] for p, rs in want.items()}
    assert 0 < sum(map(len, in_window.values())) < N + MORE
    assert by_partition(read_committed(source, "orders-replay")) == {
        p: rs for p, rs in in_window.items() if rs
    }
    assert "records outside the time window skipped" in window

    # source partitions 0, 1, 4-7 by key onto three partitions
    assert "by key hash" in some
    got = read_committed(source, "orders-v2")
    chosen = [r for p, rs in want.items() if p in (0, 1, 4, 5, 6, 7) for r in rs]
    assert sorted(r.value or b"" for r in got) == sorted(r[1] or b"" for r in chosen)
    for r in got:
        assert r.key is not None and r.partition == (murmur2(r.key) & 0x7FFFFFFF) % 3

    # -- the Parquet archive of the migration back as Avro, registered in the registry
    (line,) = commands_under(OTHER)
    create_topic(source, PARTITIONS, name="orders-avro")
    done = run_line(swap(line), env, cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith(f"restore done: {len(ids)} records"), done.stdout
    assert "orders-avro-value" in done.stdout
    ran.append(line)
    deserialize = AvroDeserializer(SchemaRegistryClient({"url": registry.url}))
    ctx = SerializationContext("orders-avro", MessageField.VALUE)
    values: list[dict[str, Any]] = [
        deserialize(r.value, ctx) for r in read_committed(source, "orders-avro")
    ]
    assert sorted(v["id"] for v in values) == ids
    assert all(v["created_at"] == T_CREATED + v["id"] * 4000 for v in values)
    assert all(v["amount"] == v["id"] / 2 and v["country"] == "FR" for v in values)

    every = commands_under(MIGRATING, ARCHIVE, RESTORE, OTHER)
    assert ran == [line for line in every if line not in NOT_RUN]
