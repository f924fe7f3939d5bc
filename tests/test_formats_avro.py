"""Avro specifics: codecs, record bodies copied from the wire format, projection, metadata,
tombstones, derived schemas, deterministic bytes."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import fastavro
import pyarrow as pa
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from formats import load_format
from formats.avro_container import zigzag_long
from formats.decoders import load_value_decoder
from s3sink.config import SinkConfig
from s3sink.records import RecordBatch
from tests.rig.schema_registry import SchemaRegistryServer

V1 = {
    "type": "record",
    "name": "Order",
    "namespace": "shop",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "item", "type": "string"},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ],
}
V2 = {**V1, "fields": [*V1["fields"], {"name": "qty", "type": "int", "default": 1}]}


@pytest.fixture(scope="module")
def registry() -> Iterator[SchemaRegistryServer]:
    with SchemaRegistryServer() as server:
        yield server


def serializer(registry: SchemaRegistryServer, schema: Any) -> Any:
    client = SchemaRegistryClient({"url": registry.url})
    ser = AvroSerializer(client, json.dumps(schema))
    ctx = SerializationContext("orders", MessageField.VALUE)
    return lambda rec: ser(rec, ctx)


def cfg(registry: SchemaRegistryServer | None = None, **kw: Any) -> SinkConfig:
    extra: dict[str, Any] = {"format_class": "avro"}
    if registry is not None:
        extra |= {"value_converter": "avro", "value_converter_schema_registry_url": registry.url}
    return SinkConfig(bootstrap_servers="127.0.0.1:9", **(extra | kw))


def batch(values: list[bytes | None], topic: str = "orders") -> RecordBatch:
    n = len(values)
    return RecordBatch(
        topic, 0, list(range(n)), [1000] * n, [1] * n, [b"k"] * n, values, [None] * n
    )


def write(config: SinkConfig, b: RecordBatch) -> bytes:
    d = load_value_decoder(config).decode(b)
    assert not d.errors
    out = io.BytesIO()
    w = load_format(config).open(out)
    for p in d.parts:
        w.write(b if p.rows is None else b.take(p.rows), p.table)
    w.close()
    return out.getvalue()


def records(data: bytes) -> list[Any]:
    return list(fastavro.reader(io.BytesIO(data)))


def orders(n: int, start: int = 0) -> list[dict[str, Any]]:
    import datetime as dt

    at = dt.datetime(2024, 5, 3, tzinfo=dt.UTC)
    return [{"id": i, "item": f"i{i}", "at": at} for i in range(start, start + n)]


@pytest.mark.parametrize(
    ("codec", "header"),
    [
        ("null", b"null"),
        ("deflate", b"deflate"),
        ("snappy", b"snappy"),
        ("zstd", b"zstandard"),
        ("bzip2", b"bzip2"),
        ("xz", b"xz"),
    ],
)
def test_codecs(registry: SchemaRegistryServer, codec: str, header: bytes) -> None:
    ser = serializer(registry, V1)
    recs = orders(50)
    data = write(cfg(registry, avro_codec=codec), batch([ser(r) for r in recs]))
    reader: Any = fastavro.reader(io.BytesIO(data))
    assert reader.metadata["avro.codec"] == header.decode()
    assert list(reader) == recs


def test_bodies_are_copied_not_reencoded(
    registry: SchemaRegistryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    ser = serializer(registry, V1)
    values = [ser(r) for r in orders(20)]

    def refuse(*a: Any, **k: Any) -> None:
        raise AssertionError("re-encoded")

    monkeypatch.setattr(fastavro, "schemaless_writer", refuse)
    data = write(cfg(registry), batch(values))
    # null codec: the single block is the bodies, byte for byte
    body = b"".join(v[5:] for v in values)
    assert zigzag_long(20) + zigzag_long(len(body)) + body in data
    reader: Any = fastavro.reader(io.BytesIO(data))
    assert reader.writer_schema["name"] == "shop.Order"
    assert list(reader) == orders(20)


def test_file_schema_is_the_registry_schema(registry: SchemaRegistryServer) -> None:
    ser = serializer(registry, V1)
    data = write(cfg(registry), batch([ser(r) for r in orders(2)]))
    reader: Any = fastavro.reader(io.BytesIO(data))
    assert json.loads(reader.metadata["avro.schema"]) == V1


def test_backward_projection_reencodes_only_older_records(registry: SchemaRegistryServer) -> None:
    s1, s2 = serializer(registry, V1), serializer(registry, V2)
    recs = orders(6)
    values = [s2({**r, "qty": 5}) if i % 2 else s1(r) for i, r in enumerate(recs)]
    config = cfg(registry, schema_compatibility="BACKWARD")
    d = load_value_decoder(config).decode(batch(values))
    assert [p.schema_id for p in d.parts] == [d.parts[0].schema_id, d.parts[1].schema_id]
    assert len(d.parts) == 2  # v1 alone, then v2 with the v1 records projected
    # the sink rolls between the parts: the second file holds v2 and projected v1 records
    b = batch(values)
    out = io.BytesIO()
    w = load_format(config).open(out)
    part = d.parts[1]
    w.write(b.take(part.rows or []), part.table)
    w.close()
    got = records(out.getvalue())
    assert [r["qty"] for r in got] == [5, 1, 5, 1, 5]  # the default filled in for v1 records
    assert [r["id"] for r in got] == [1, 2, 3, 4, 5]


def test_metadata_is_appended_to_raw_bodies(registry: SchemaRegistryServer) -> None:
    ser = serializer(registry, V1)
    data = write(cfg(registry, store_kafka_metadata=True), batch([ser(r) for r in orders(3)]))
    reader: Any = fastavro.reader(io.BytesIO(data))
    fields = [f["name"] for f in reader.writer_schema["fields"]]
    assert fields == ["id", "item", "at", "_kafka"]
    got = list(reader)
    assert [r["_kafka"]["offset"] for r in got] == [0, 1, 2]
    assert got[0]["_kafka"]["key"] == b"k"
    assert {k: v for k, v in got[0].items() if k != "_kafka"} == orders(1)[0]


def test_tombstones_in_raw_mode(registry: SchemaRegistryServer) -> None:
    ser = serializer(registry, V1)
    recs = orders(2)
    values = [ser(recs[0]), None, ser(recs[1])]
    data = write(cfg(registry, behavior_on_null_values="write"), batch(values))
    reader: Any = fastavro.reader(io.BytesIO(data))
    assert reader.writer_schema[0] == "null"
    assert list(reader) == [recs[0], None, recs[1]]


def test_primitive_registry_schema_with_metadata(registry: SchemaRegistryServer) -> None:
    ser = serializer(registry, "string")
    data = write(cfg(registry, store_kafka_metadata=True), batch([ser("a"), ser("b")]))
    got = records(data)
    assert [(r["value"], r["_kafka"]["offset"]) for r in got] == [("a", 0), ("b", 1)]


def test_deterministic_bytes(registry: SchemaRegistryServer) -> None:
    ser = serializer(registry, V1)
    b = batch([ser(r) for r in orders(10)])
    assert write(cfg(registry, avro_codec="deflate"), b) == write(
        cfg(registry, avro_codec="deflate"), b
    )
    j = batch([json.dumps({"a": i}).encode() for i in range(5)])
    jc = cfg(value_converter="json")
    assert write(jc, j) == write(jc, j)


def test_schema_derived_from_json(registry: SchemaRegistryServer) -> None:
    docs = [
        {"id": 1, "a-b": "x", "nested": {"x": 1.5, "deep": {"y": True}}, "list": [{"z": 1}]},
        {"id": 2, "a-b": None, "nested": None, "list": []},
    ]
    data = write(
        cfg(value_converter="json"),
        batch([json.dumps(d).encode() for d in docs], topic="my.topic-1"),
    )
    reader: Any = fastavro.reader(io.BytesIO(data))
    schema = reader.writer_schema
    assert schema["name"] == "s3sink.my_topic_1"
    assert [f["name"] for f in schema["fields"]] == ["id", "a_b", "nested", "list"]
    got = list(reader)
    assert got[0] == {
        "id": 1,
        "a_b": "x",
        "nested": {"x": 1.5, "deep": {"y": True}},
        "list": [{"z": 1}],
    }
    assert got[1] == {"id": 2, "a_b": None, "nested": None, "list": []}


def test_maps_and_types_from_arrow() -> None:
    config = cfg(value_converter="json")
    t = pa.table(
        {
            "m": pa.array([[("a", 1)], None], pa.map_(pa.string(), pa.int64())),
            "ts": pa.array([1, None], pa.timestamp("us", "UTC")),
            "d": pa.array([1, None], pa.date32()),
            "dec": pa.array([1, None], pa.decimal128(5, 2)),
            "b": pa.array([b"x", None]),
        }
    )
    out = io.BytesIO()
    w = load_format(config).open(out)
    w.write(batch([b"{}", b"{}"]), t)
    w.close()
    got = records(out.getvalue())
    assert got[0]["m"] == {"a": 1}
    assert got[0]["ts"].timestamp() == 1e-6
    assert str(got[0]["dec"]) == "1.00"
    assert got[1] == {"m": None, "ts": None, "d": None, "dec": None, "b": None}


def test_raw_bytes_converter() -> None:
    config = cfg()
    out = io.BytesIO()
    w = load_format(config).open(out)
    w.write(batch([b"\x00\x01", b""]), None)
    w.close()
    reader: Any = fastavro.reader(io.BytesIO(out.getvalue()))
    assert reader.writer_schema == "bytes"
    assert list(reader) == [b"\x00\x01", b""]


@pytest.mark.parametrize("codec", ["zstd", "deflate", "snappy", "null"])
def test_blocks_compressed_in_the_background_keep_their_order(codec: str) -> None:
    """Many blocks, compressed in the shared pool and written as they finish: the file has
    every record in order, the same bytes as blocks compressed one by one, and ``buffered``
    counts the blocks still in compression."""
    from formats.avro_container import ContainerWriter, compress

    bodies = [avro_body(i) for i in range(20_000)]
    out = io.BytesIO()
    w = ContainerWriter(out, "string", codec, -1, b"seed", 4096)
    held = 0
    for chunk in range(0, len(bodies), 500):
        w.extend(bodies[chunk : chunk + 500])
        held = max(held, w.buffered())
    w.flush()
    assert w.buffered() == 0
    assert w.written == len(out.getvalue())
    assert held < 4096 + 500 * 16 + 5 * 4096 * 2
    got = list(fastavro.reader(io.BytesIO(out.getvalue())))
    assert got == [f"record-{i}-" + "x" * (i % 9) for i in range(20_000)]
    # the same file as compressing each block in turn
    reference = io.BytesIO()
    header = out.getvalue()[: out.getvalue().index(w.sync) + 16]
    reference.write(header)
    block = bytearray()
    count = 0
    for chunk in range(0, len(bodies), 500):
        block += b"".join(bodies[chunk : chunk + 500])
        count += len(bodies[chunk : chunk + 500])
        if len(block) >= 4096:
            data = compress(codec, bytes(block))
            reference.write(zigzag_long(count) + zigzag_long(len(data)) + data + w.sync)
            block, count = bytearray(), 0
    if count:
        data = compress(codec, bytes(block))
        reference.write(zigzag_long(count) + zigzag_long(len(data)) + data + w.sync)
    assert reference.getvalue() == out.getvalue()


def avro_body(i: int) -> bytes:
    text = (f"record-{i}-" + "x" * (i % 9)).encode()
    return zigzag_long(len(text)) + text
