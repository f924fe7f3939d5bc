"""Wire-format decoders (Avro, JSON Schema, Protobuf) against a real HTTP Schema Registry,
with values made by confluent-kafka's own serializers; ``schema.compatibility`` behaviour."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import socket
from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

import pyarrow as pa
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2

from formats.decoders import load_value_decoder
from formats.decoders.base import META_AVRO_SCHEMA_ID, META_LAZY, Decoded, Decoder, meta
from s3sink.config import SinkConfig
from s3sink.errors import RetriableError
from s3sink.records import RecordBatch
from tests.rig.schema_registry import SchemaRegistryServer
from tests.test_decoders_json import check_decoded

CTX = SerializationContext("orders", MessageField.VALUE)


@pytest.fixture
def registry() -> Iterator[SchemaRegistryServer]:
    with SchemaRegistryServer() as server:
        yield server


def client(registry: SchemaRegistryServer) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": registry.url})


def cfg(registry: SchemaRegistryServer, converter: str, **kw: Any) -> SinkConfig:
    return SinkConfig(
        bootstrap_servers="127.0.0.1:9",
        value_converter=converter,
        value_converter_schema_registry_url=registry.url,
        **kw,
    )


def batch(values: list[bytes | None], partition: int = 0) -> RecordBatch:
    n = len(values)
    return RecordBatch(
        "orders", partition, list(range(n)), [0] * n, [1] * n, [None] * n, values, [None] * n
    )


def decode(decoder: Decoder, b: RecordBatch) -> Decoded:
    d = decoder.decode(b)
    check_decoded(b, d)
    return d


def rows(d: Decoded) -> list[Any]:
    out: list[Any] = []
    for p in d.parts:
        assert p.table is not None
        out.extend(p.table.to_pylist())
    return out


# -- Avro -----------------------------------------------------------------------------------

ORDER_V1 = {
    "type": "record",
    "name": "Order",
    "fields": [{"name": "id", "type": "long"}, {"name": "item", "type": "string"}],
}
ORDER_V2 = {
    **ORDER_V1,
    "fields": [*ORDER_V1["fields"], {"name": "qty", "type": "int", "default": 1}],
}


def avro(registry: SchemaRegistryServer, schema: Any) -> Any:
    ser = AvroSerializer(client(registry), json.dumps(schema))
    return lambda rec: ser(rec, CTX)


def test_avro_types(registry: SchemaRegistryServer) -> None:
    schema = {
        "type": "record",
        "name": "All",
        "namespace": "x",
        "fields": [
            {"name": "b", "type": "boolean"},
            {"name": "i", "type": "int"},
            {"name": "f", "type": "float"},
            {"name": "by", "type": "bytes"},
            {"name": "e", "type": {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]}},
            {"name": "fx", "type": {"type": "fixed", "name": "Two", "size": 2}},
            {"name": "arr", "type": {"type": "array", "items": "string"}},
            {"name": "m", "type": {"type": "map", "values": "long"}},
            {"name": "opt", "type": ["null", "string"], "default": None},
            {"name": "u", "type": ["null", "string", "long"], "default": None},
            {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-micros"}},
            {"name": "lts", "type": {"type": "long", "logicalType": "local-timestamp-millis"}},
            {"name": "d", "type": {"type": "int", "logicalType": "date"}},
            {
                "name": "dec",
                "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2},
            },
            {"name": "uid", "type": {"type": "string", "logicalType": "uuid"}},
            {
                "name": "nested",
                "type": {
                    "type": "record",
                    "name": "In",
                    "fields": [{"name": "c", "type": "Color"}],
                },
            },
        ],
    }
    ser = avro(registry, schema)
    ts = dt.datetime(2024, 5, 3, 7, 0, 0, 123456, tzinfo=dt.UTC)
    rec = {
        "b": True, "i": 1, "f": 1.5, "by": b"\x00", "e": "GREEN", "fx": b"ab", "arr": ["x"],
        "m": {"k": 2}, "opt": None, "u": 5, "ts": ts, "lts": dt.datetime(2024, 1, 1, 0, 0),
        "d": dt.date(2024, 5, 3), "dec": decimal.Decimal("12.34"),
        "uid": "2b1b1f5e-6d0c-4f59-9d8a-3b8f1b2a9c10", "nested": {"c": "RED"},
    }  # fmt: skip
    d = decode(load_value_decoder(cfg(registry, "avro", format_class="parquet")), batch([ser(rec)]))
    t = d.parts[0].table
    assert t is not None
    types = {f.name: f.type for f in t.schema}
    assert types["i"] == pa.int32()
    assert types["f"] == pa.float32()
    assert types["e"] == pa.string()
    assert types["fx"] == pa.binary(2)
    assert types["m"] == pa.map_(pa.string(), pa.int64())
    assert types["u"] == pa.struct([("member0", pa.string()), ("member1", pa.int64())])
    assert types["ts"] == pa.timestamp("us", "UTC")
    assert types["lts"] == pa.timestamp("ms")
    assert types["d"] == pa.date32()
    assert types["dec"] == pa.decimal128(9, 2)
    got = t.to_pylist()[0]
    assert got["u"] == {"member0": None, "member1": 5}
    assert got["m"] == [("k", 2)]
    assert got["ts"] == ts
    assert got["dec"] == decimal.Decimal("12.34")
    assert got["uid"] == rec["uid"]
    assert got["nested"] == {"c": "RED"}


def test_avro_recursive_type_is_cut(registry: SchemaRegistryServer) -> None:
    schema = {
        "type": "record",
        "name": "Node",
        "fields": [
            {"name": "v", "type": "int"},
            {"name": "next", "type": ["null", "Node"], "default": None},
        ],
    }
    ser = avro(registry, schema)
    d = decode(
        load_value_decoder(cfg(registry, "avro", format_class="parquet")),
        batch([ser({"v": 1, "next": {"v": 2, "next": None}})]),
    )
    assert rows(d) == [{"v": 1, "next": '{"v":2,"next":null}'}]


def test_avro_bad_records(registry: SchemaRegistryServer) -> None:
    ser = avro(registry, ORDER_V1)
    good = ser({"id": 1, "item": "a"})
    json_id = registry.register("other-value", '{"type":"object"}', "JSON")
    values: list[bytes | None] = [
        good,
        good[:-2],  # truncated
        good + b"\x00",  # trailing byte
        b"\x01" + good[1:],  # wrong magic byte
        b"\x00\x00\x00\x03\xe7" + good[5:],  # unknown id 999
        b"\x00" + json_id.to_bytes(4, "big") + b"{}",  # not an Avro schema
        b"\x00\x00",  # too short
        b"\x00" + good[1:5] + b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # bad varint
    ]
    d = decode(load_value_decoder(cfg(registry, "avro", format_class="parquet")), batch(values))
    assert sorted(d.errors) == list(range(1, 8))
    assert "unknown schema id 999" in d.errors[4]
    assert "magic byte 1" in d.errors[3]
    assert "after the record" in d.errors[2]
    assert "not AVRO" in d.errors[5]


def test_avro_schema_fetched_once(registry: SchemaRegistryServer) -> None:
    ser = avro(registry, ORDER_V1)
    dec = load_value_decoder(cfg(registry, "avro", format_class="parquet"))
    for k in range(5):
        decode(dec, batch([ser({"id": k, "item": "a"})] * 10))
    assert registry.requests["GET /schemas/ids/{id}"] == 1


def test_lazy_when_only_avro_is_written(registry: SchemaRegistryServer) -> None:
    ser = avro(registry, ORDER_V1)
    b = batch([ser({"id": 1, "item": "a"}), ser({"id": 2, "item": "b"})])
    lazy = decode(load_value_decoder(cfg(registry, "avro", format_class="avro")), b)
    assert meta(lazy.parts[0].table, META_LAZY) == b"1"
    assert meta(lazy.parts[0].table, META_AVRO_SCHEMA_ID) == b"1"
    full = decode(
        load_value_decoder(
            cfg(
                registry,
                "avro",
                format_class="avro",
                partitioner_class="field",
                partition_field_name=("item",),
            )
        ),
        b,
    )
    assert meta(full.parts[0].table, META_LAZY) is None
    assert rows(full) == [{"id": 1, "item": "a"}, {"id": 2, "item": "b"}]


def test_registry_unreachable_is_retriable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = SinkConfig(
        bootstrap_servers="127.0.0.1:9",
        value_converter="avro",
        format_class="parquet",
        value_converter_schema_registry_url=f"http://127.0.0.1:{port}",
        value_converter_props=MappingProxyType({"max.retries": "0"}),
    )
    dec = load_value_decoder(config)
    with pytest.raises(RetriableError, match="schema registry"):
        dec.decode(batch([b"\x00\x00\x00\x00\x01\x02"]))


# -- schema.compatibility ----------------------------------------------------------------------


def interleaved(registry: SchemaRegistryServer, n: int = 10) -> RecordBatch:
    s1, s2 = avro(registry, ORDER_V1), avro(registry, ORDER_V2)
    return batch(
        [
            s2({"id": i, "item": "x", "qty": 7}) if i % 2 else s1({"id": i, "item": "x"})
            for i in range(n)
        ]
    )


def schema_ids(d: Decoded) -> list[str | None]:
    return [p.schema_id for p in d.parts]


def test_none_rolls_at_every_change(registry: SchemaRegistryServer) -> None:
    d = decode(
        load_value_decoder(cfg(registry, "avro", format_class="parquet")), interleaved(registry)
    )
    assert len(d.parts) == 10  # documented: use BACKWARD/FORWARD/FULL for interleaved versions


@pytest.mark.parametrize("mode", ["BACKWARD", "FULL"])
def test_backward_projects_older_records(registry: SchemaRegistryServer, mode: str) -> None:
    dec = load_value_decoder(
        cfg(registry, "avro", format_class="parquet", schema_compatibility=mode)
    )
    d = decode(dec, interleaved(registry))
    assert schema_ids(d) == ["1", "2"]  # one roll, at the first v2 record
    assert [r.get("qty") for r in rows(d)] == [None, 7, 1, 7, 1, 7, 1, 7, 1, 7]
    # the next batch stays on v2, even when it starts with v1 records
    again = decode(dec, interleaved(registry))
    assert schema_ids(again) == ["2"]


def test_forward_projects_newer_records(registry: SchemaRegistryServer) -> None:
    dec = load_value_decoder(
        cfg(registry, "avro", format_class="parquet", schema_compatibility="FORWARD")
    )
    d = decode(dec, interleaved(registry))
    assert schema_ids(d) == ["1"]
    assert all("qty" not in r for r in rows(d))


def test_compatibility_is_per_partition(registry: SchemaRegistryServer) -> None:
    s1, s2 = avro(registry, ORDER_V1), avro(registry, ORDER_V2)
    s1({"id": 0, "item": "x"})  # registers v1 first (id 1)
    dec = load_value_decoder(
        cfg(registry, "avro", format_class="parquet", schema_compatibility="BACKWARD")
    )
    decode(dec, batch([s2({"id": 1, "item": "x", "qty": 1})], partition=0))
    d = decode(dec, batch([s1({"id": 1, "item": "x"})], partition=1))
    assert schema_ids(d) == ["1"]


def test_incompatible_records_keep_their_schema(registry: SchemaRegistryServer) -> None:
    s1 = avro(registry, ORDER_V1)
    v2 = {
        **ORDER_V1,
        "fields": [*ORDER_V1["fields"], {"name": "must", "type": "int"}],
    }  # no default
    s2 = avro(registry, v2)
    s1({"id": 0, "item": "x"})  # registers v1 first (id 1)
    dec = load_value_decoder(
        cfg(registry, "avro", format_class="parquet", schema_compatibility="BACKWARD")
    )
    d = decode(
        dec,
        batch(
            [
                s2({"id": 1, "item": "a", "must": 3}),
                s1({"id": 2, "item": "b"}),
                s2({"id": 3, "item": "c", "must": 4}),
            ]
        ),
    )
    assert schema_ids(d) == ["2", "1", "2"]
    assert not d.errors


# -- JSON Schema ------------------------------------------------------------------------------

JSON_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "Order",
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "item": {"type": "string"},
        "price": {"type": "number"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "ship": {"$ref": "#/definitions/Address"},
        "note": {"oneOf": [{"type": "null"}, {"type": "string"}]},
        "any": {},
    },
    "definitions": {"Address": {"type": "object", "properties": {"city": {"type": "string"}}}},
}


def jsonschema(registry: SchemaRegistryServer, schema: Any) -> Any:
    ser = JSONSerializer(json.dumps(schema), client(registry))
    return lambda rec: ser(rec, CTX)


def test_jsonschema_types_and_bulk(registry: SchemaRegistryServer) -> None:
    props: dict[str, Any] = dict(JSON_SCHEMA["properties"])
    del props["any"]
    ser = jsonschema(registry, {**JSON_SCHEMA, "properties": props})
    recs = [
        {
            "id": 1,
            "item": "a",
            "price": 2,
            "tags": ["x"],
            "ship": {"city": "Lyon"},
            "note": None,
            "extra": 1,
        }
    ]
    d = decode(
        load_value_decoder(cfg(registry, "jsonschema", format_class="parquet")),
        batch([ser(r) for r in recs]),
    )
    t = d.parts[0].table
    assert t is not None
    assert t.schema.names == ["id", "item", "price", "tags", "ship", "note"]
    assert t.schema.field("price").type == pa.float64()
    assert t.to_pylist() == [
        {"id": 1, "item": "a", "price": 2.0, "tags": ["x"], "ship": {"city": "Lyon"}, "note": None}
    ]


def test_jsonschema_untyped_field_is_json_text(registry: SchemaRegistryServer) -> None:
    ser = jsonschema(registry, JSON_SCHEMA)
    recs = [{"id": 1, "any": {"k": [1]}}, {"id": 2, "any": "s"}]
    d = decode(
        load_value_decoder(cfg(registry, "jsonschema", format_class="parquet")),
        batch([ser(r) for r in recs]),
    )
    assert [r["any"] for r in rows(d)] == ['{"k":[1]}', "s"]


def test_jsonschema_bad_records(registry: SchemaRegistryServer) -> None:
    ser = jsonschema(registry, JSON_SCHEMA)
    good = ser({"id": 1})
    values: list[bytes | None] = [
        good,
        good[:5] + b'{"id": "x"}',
        good[:5] + b"{nope",
        good[:5] + b"[1]",
        None,
    ]
    d = decode(
        load_value_decoder(cfg(registry, "jsonschema", format_class="parquet")), batch(values)
    )
    assert sorted(d.errors) == [1, 2, 3]
    assert len(rows(d)) == 2


def test_jsonschema_backward(registry: SchemaRegistryServer) -> None:
    v1 = {"type": "object", "properties": {"id": {"type": "integer"}}}
    v2 = {"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": "string"}}}
    s1, s2 = jsonschema(registry, v1), jsonschema(registry, v2)
    dec = load_value_decoder(
        cfg(registry, "jsonschema", format_class="parquet", schema_compatibility="BACKWARD")
    )
    d = decode(
        dec,
        batch(
            [
                s1({"id": 1}),
                s2({"id": 2, "name": "b"}),
                s1({"id": 3}),
                None,
                s2({"id": 4, "name": "d"}),
            ]
        ),
    )
    assert schema_ids(d) == ["1", "2"]
    assert rows(d) == [
        {"id": 1},
        {"id": 2, "name": "b"},
        {"id": 3, "name": None},
        {"id": None, "name": None},
        {"id": 4, "name": "d"},
    ]


# -- Protobuf --------------------------------------------------------------------------------


def proto_class(extra_field: bool = False) -> Any:
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="orders.proto", package="shop", syntax="proto3")
    fdp.dependency.append("google/protobuf/timestamp.proto")
    status = fdp.enum_type.add(name="Status")
    status.value.add(name="NEW", number=0)
    status.value.add(name="DONE", number=1)
    line = fdp.message_type.add(name="Line")
    line.field.add(name="sku", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    line.field.add(name="qty", number=2, type=F.TYPE_INT32, label=F.LABEL_OPTIONAL)
    m = fdp.message_type.add(name="Order")
    m.field.add(name="id", number=1, type=F.TYPE_INT64, label=F.LABEL_OPTIONAL)
    m.field.add(
        name="status", number=2, type=F.TYPE_ENUM, type_name=".shop.Status", label=F.LABEL_OPTIONAL
    )
    m.field.add(
        name="lines", number=3, type=F.TYPE_MESSAGE, type_name=".shop.Line", label=F.LABEL_REPEATED
    )
    m.field.add(
        name="at",
        number=4,
        type=F.TYPE_MESSAGE,
        type_name=".google.protobuf.Timestamp",
        label=F.LABEL_OPTIONAL,
    )
    m.field.add(name="raw", number=5, type=F.TYPE_BYTES, label=F.LABEL_OPTIONAL)
    entry = m.nested_type.add(name="AttrsEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=F.TYPE_INT32, label=F.LABEL_OPTIONAL)
    m.field.add(
        name="attrs",
        number=6,
        type=F.TYPE_MESSAGE,
        type_name=".shop.Order.AttrsEntry",
        label=F.LABEL_REPEATED,
    )
    if extra_field:
        m.field.add(name="note", number=7, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.Order"))


def protobuf(registry: SchemaRegistryServer, cls: Any) -> Any:
    ser = ProtobufSerializer(cls, client(registry), {"use.deprecated.format": False})
    return lambda msg: ser(msg, CTX)


def test_protobuf(registry: SchemaRegistryServer) -> None:
    cls = proto_class()
    ser = protobuf(registry, cls)
    msg = cls(id=7, status=1, raw=b"\x01")
    msg.lines.add(sku="a", qty=2)
    msg.at.FromDatetime(dt.datetime(2024, 5, 3, 7, 0, 0))
    msg.attrs["k"] = 3
    empty = cls()
    d = decode(
        load_value_decoder(cfg(registry, "protobuf", format_class="parquet")),
        batch([ser(msg), ser(empty), b"\x00\x00\x00\x00\x01\x00\xff\xff", None]),
    )
    assert list(d.errors) == [2]
    t = d.parts[0].table
    assert t is not None
    assert t.schema.field("at").type == pa.timestamp("us", "UTC")
    assert t.schema.field("status").type == pa.string()
    assert t.schema.field("attrs").type == pa.map_(pa.string(), pa.int32())
    got = t.to_pylist()
    assert got[0]["id"] == 7
    assert got[0]["status"] == "DONE"
    assert got[0]["lines"] == [{"sku": "a", "qty": 2}]
    assert got[0]["at"] == dt.datetime(2024, 5, 3, 7, tzinfo=dt.UTC)
    assert got[0]["attrs"] == [("k", 3)]
    assert got[1] == {"id": 0, "status": "NEW", "lines": [], "at": None, "raw": b"", "attrs": []}
    assert got[2]["id"] is None  # the tombstone row


def test_protobuf_backward(registry: SchemaRegistryServer) -> None:
    c1, c2 = proto_class(), proto_class(extra_field=True)
    s1, s2 = protobuf(registry, c1), protobuf(registry, c2)
    dec = load_value_decoder(
        cfg(registry, "protobuf", format_class="parquet", schema_compatibility="BACKWARD")
    )
    d = decode(dec, batch([s1(c1(id=1)), s2(c2(id=2, note="n")), s1(c1(id=3))]))
    assert len(d.parts) == 2
    assert [r.get("note") for r in rows(d)] == [None, "n", None]
