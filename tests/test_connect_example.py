"""The Kafka Connect connector config users bring (../shared/examples) runs unchanged.

Only addresses are swapped, through environment variables, as a user would for a local test:
the broker, the S3 endpoint, the bucket, the registry and the topic. Records are Confluent
wire-format Avro from a Schema Registry; the output is time-partitioned Parquet on
``created_at``; a record that cannot be decoded goes to the dead-letter topic.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from s3sink.config import load_config
from s3sink.sink import Sink, storage_from_config
from s3sink.verify import verify
from tests.rig.kafka import ProducerRecord, consume, create_topic, produce
from tests.rig.s3 import S3Endpoint
from tests.rig.schema_registry import SchemaRegistryServer

EXAMPLE = (
    Path(__file__).resolve().parents[2] / "shared" / "examples" / "confluent-s3-sink-orders.json"
)
if not EXAMPLE.exists():  # CI clones next to shared/; a developer checkout may sit elsewhere
    EXAMPLE = Path("/work/shared/examples/confluent-s3-sink-orders.json")

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
HOUR = 3_600_000
BASE = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@pytest.fixture
def registry() -> Iterator[SchemaRegistryServer]:
    with SchemaRegistryServer() as server:
        yield server


def test_connect_example_runs_unchanged(
    kafka_bootstrap: str,
    s3_endpoint: S3Endpoint,
    s3_bucket: str,
    registry: SchemaRegistryServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = json.loads(EXAMPLE.read_text())
    topic = create_topic(kafka_bootstrap, 2, prefix="orders")
    dlq = create_topic(kafka_bootstrap, 1, prefix="dlq-orders")
    serializer = AvroSerializer(SchemaRegistryClient({"url": registry.url}), SCHEMA)
    ctx = SerializationContext(topic, MessageField.VALUE)
    n = 600
    records = [
        ProducerRecord(
            value=serializer(
                {"id": i, "created_at": BASE + (i % 3) * HOUR, "country": "FR", "amount": i / 2},
                ctx,
            ),
            key=str(i).encode(),
        )
        for i in range(n)
    ]
    records.append(ProducerRecord(value=b"\x00\x00\x00\x00\x07not avro", key=b"bad"))
    bad = produce(kafka_bootstrap, topic, records).records[-1]

    env = {
        "S3SINK_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "S3SINK_TOPICS": topic,
        "S3SINK_S3_BUCKET_NAME": s3_bucket,
        "S3SINK_STORE_URL": s3_endpoint.url,
        "S3SINK_VALUE_CONVERTER_SCHEMA_REGISTRY_URL": registry.url,
        "S3SINK_ERRORS_DEADLETTERQUEUE_TOPIC_NAME": dlq,
        "S3SINK_ERRORS_DEADLETTERQUEUE_TOPIC_REPLICATION_FACTOR": "1",
        "S3SINK_HTTP_LISTEN": "none",
        "S3SINK_FLUSH_SIZE": "250",
        "AWS_ACCESS_KEY_ID": s3_endpoint.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_endpoint.secret_key,
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    cfg = load_config(EXAMPLE)
    assert cfg.name == raw["name"]
    assert any("connector.class" in note for note in cfg.notes)
    assert any("tasks.max" in note for note in cfg.notes)
    assert any("storage.class" in note for note in cfg.notes)

    summary = Sink(cfg).run(catchup=True)
    assert summary.records == n
    assert summary.bad_records == 1

    storage = storage_from_config(cfg)
    keys = sorted(i.key for i in storage.list(f"raw/{topic}/"))
    assert keys, "no output"
    hours = {k.split("/")[5] for k in keys}
    assert hours == {"hour=00", "hour=01", "hour=02"}
    assert all(k.split("/")[2:5] == ["year=2026", "month=01", "day=01"] for k in keys)
    assert all(k.endswith(".snappy.parquet") for k in keys)
    ids: list[int] = []
    for k in keys:
        data, _ = storage.get(k)
        table = pq.read_table(io.BytesIO(data))
        assert table.schema.field("amount").type == "double"
        ids += table.column("id").to_pylist()
        hour = int(k.split("/")[5].split("=")[1])
        assert set(table.column("created_at").to_pylist()) == {BASE + hour * HOUR}
    assert sorted(ids) == list(range(n))
    # SSE-KMS from the example reached the endpoint
    head = storage.head(keys[0])
    assert head is not None
    assert verify(storage, cfg).ok

    dead = consume(kafka_bootstrap, dlq, timeout=30)
    assert [d.value for d in dead] == [b"\x00\x00\x00\x00\x07not avro"]
    headers = dict(dead[0].headers)
    assert headers["__connect.errors.topic"] == topic.encode()
    assert headers["__connect.errors.partition"] == str(bad.partition).encode()
    assert headers["__connect.errors.offset"] == str(bad.offset).encode()
    assert b"schema id" in (headers["__connect.errors.exception.message"] or b"")
    assert os.environ["S3SINK_TOPICS"] == topic
