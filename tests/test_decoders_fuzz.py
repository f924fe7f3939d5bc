"""Decoders fed garbage: every input ends as rows or errors, never as an exception."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from formats.decoders import load_value_decoder
from formats.decoders.base import Decoder
from formats.decoders.json_schemaless import SchemalessJsonDecoder
from s3sink.config import SinkConfig
from s3sink.records import RecordBatch
from tests.rig.schema_registry import SchemaRegistryServer
from tests.test_decoders_json import check_decoded

FAST = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

SCHEMA = {
    "type": "record",
    "name": "R",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "s", "type": "string"},
        {"name": "u", "type": ["null", "double", {"type": "array", "items": "int"}]},
        {"name": "m", "type": {"type": "map", "values": "bytes"}},
    ],
}
CTX = SerializationContext("t", MessageField.VALUE)


@pytest.fixture(scope="module")
def registry() -> Iterator[SchemaRegistryServer]:
    with SchemaRegistryServer() as server:
        client = SchemaRegistryClient({"url": server.url})
        server.good_avro = AvroSerializer(client, json.dumps(SCHEMA))(  # type: ignore[attr-defined]
            {"id": 1, "s": "x", "u": [1, 2], "m": {"k": b"v"}}, CTX
        )
        server.good_json = JSONSerializer(  # type: ignore[attr-defined]
            json.dumps({"type": "object", "properties": {"a": {"type": "integer"}}}), client
        )({"a": 1}, CTX)
        yield server


def batch(values: list[bytes | None]) -> RecordBatch:
    n = len(values)
    return RecordBatch("t", 0, list(range(n)), [0] * n, [1] * n, [None] * n, values, [None] * n)


def run(decoder: Decoder, values: list[bytes | None]) -> None:
    b = batch(values)
    check_decoded(b, decoder.decode(b))


_DECODERS: dict[str, list[Decoder]] = {}


def decoders(registry: SchemaRegistryServer) -> list[Decoder]:
    """One set of decoders per registry (schemas are fetched once, as in the sink)."""
    if registry.url not in _DECODERS:
        _DECODERS[registry.url] = _make_decoders(registry)
    return _DECODERS[registry.url]


def _make_decoders(registry: SchemaRegistryServer) -> list[Decoder]:
    def cfg(converter: str, **kw: Any) -> SinkConfig:
        return SinkConfig(
            bootstrap_servers="127.0.0.1:9",
            value_converter=converter,
            value_converter_schema_registry_url=registry.url,
            format_class="parquet",
            **kw,
        )

    return [
        load_value_decoder(cfg("bytes")),
        load_value_decoder(cfg("string")),
        load_value_decoder(cfg("json")),
        load_value_decoder(cfg("json", value_converter_schemas_enable=True)),
        load_value_decoder(cfg("avro", schema_compatibility="BACKWARD")),
        load_value_decoder(cfg("jsonschema")),
        load_value_decoder(cfg("protobuf")),
    ]


values_st = st.lists(st.one_of(st.none(), st.binary(max_size=64)), max_size=12)


@FAST
@given(values=values_st)
def test_garbage_bytes(registry: SchemaRegistryServer, values: list[bytes | None]) -> None:
    for d in decoders(registry):
        run(d, values)


@FAST
@given(
    cut=st.integers(min_value=0, max_value=40),
    flip=st.integers(min_value=0, max_value=255),
    at=st.integers(min_value=0, max_value=40),
)
def test_truncated_and_corrupted_wire_values(
    registry: SchemaRegistryServer, cut: int, flip: int, at: int
) -> None:
    for good in (registry.good_avro, registry.good_json):  # type: ignore[attr-defined]
        truncated = good[: min(cut, len(good))]
        corrupt = bytearray(good)
        corrupt[min(at, len(good) - 1)] ^= flip
        for d in decoders(registry)[4:]:
            run(d, [good, truncated, bytes(corrupt), None])


def test_wrong_magic_and_unknown_ids(registry: SchemaRegistryServer) -> None:
    good = registry.good_avro  # type: ignore[attr-defined]
    for d in decoders(registry)[4:]:
        b = batch([b"\x01" + good[1:], b"\x00\x7f\xff\xff\xff" + good[5:], b"", b"\x00"])
        out = d.decode(b)
        check_decoded(b, out)
        assert sorted(out.errors) == [0, 1, 2, 3]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(objs=st.lists(json_values, max_size=8))
def test_json_values_of_any_shape(objs: list[Any]) -> None:
    """Any mix of JSON documents: objects become rows (conflicts widened), others errors."""
    dec = SchemalessJsonDecoder()
    values: list[bytes | None] = [json.dumps(o).encode() for o in objs]
    b = batch(values)
    d = dec.decode(b)
    check_decoded(b, d)
    assert set(d.errors) == {i for i, o in enumerate(objs) if not isinstance(o, dict)}
    # the same decoder again: schema only widens, same rows
    d2 = dec.decode(b)
    assert d2.parts == () or d2.parts[0].schema_id == dec._schemas["t"][1]


@settings(max_examples=30, deadline=None)
@given(depth=st.integers(min_value=0, max_value=20_000), kind=st.sampled_from(["[", '{"a":']))
def test_deeply_nested_json(depth: int, kind: str) -> None:
    closing = "]" if kind == "[" else "}"
    deep = ('{"x":' + kind * depth + "1" + closing * depth + "}").encode()
    unclosed = ('{"x":' + kind * depth).encode()
    for dec in (
        SchemalessJsonDecoder(),
        load_value_decoder(
            SinkConfig(
                bootstrap_servers="x", value_converter="json", value_converter_schemas_enable=True
            )
        ),
    ):
        run(dec, [deep, unclosed])


def test_invalid_utf8_and_huge_records() -> None:
    values: list[bytes | None] = [
        b'{"a": "\xff\xfe"}',
        b'{"a": "' + b"x" * 5_000_000 + b'"}',
        b'{"a": "\\ud800"}',
    ]
    run(SchemalessJsonDecoder(), values)
    run(load_value_decoder(SinkConfig(bootstrap_servers="x", value_converter="string")), values)


# -- huge records -------------------------------------------------------------------------------

MIB = 1024 * 1024
HUGE_TEXT = "".join(chr(0x61 + i % 26) for i in range(26)) * (3 * MIB // 26)  # ~3 MiB
HUGE_BLOB = bytes(range(256)) * (2 * MIB // 256)  # 2 MiB
HUGE_ITEMS = [f"item-{i:06d}-" + "z" * 80 for i in range(12_000)]  # ~1 MiB in many strings
HUGE_CTX = SerializationContext("huge", MessageField.VALUE)


def _huge_batch(values: list[bytes | None]) -> RecordBatch:
    n = len(values)
    return RecordBatch("huge", 0, list(range(n)), [0] * n, [1] * n, [None] * n, values, [None] * n)


def _huge_proto_class() -> Any:
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="huge.proto", package="fuzz", syntax="proto3")
    m = fdp.message_type.add(name="Huge")
    m.field.add(name="id", number=1, type=F.TYPE_INT64, label=F.LABEL_OPTIONAL)
    m.field.add(name="text", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    m.field.add(name="blob", number=3, type=F.TYPE_BYTES, label=F.LABEL_OPTIONAL)
    m.field.add(name="items", number=4, type=F.TYPE_STRING, label=F.LABEL_REPEATED)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("fuzz.Huge"))


def _huge_values(converter: str, url: str) -> tuple[bytes, bytes]:
    """A huge valid value and a small one, in the wire format of ``converter``."""
    client = SchemaRegistryClient({"url": url})
    if converter == "avro":
        schema: dict[str, Any] = {
            "type": "record",
            "name": "Huge",
            "fields": [
                {"name": "id", "type": "long"},
                {"name": "text", "type": "string"},
                {"name": "blob", "type": "bytes"},
                {"name": "items", "type": {"type": "array", "items": "string"}},
            ],
        }
        ser = AvroSerializer(client, json.dumps(schema))
        big = ser({"id": 1, "text": HUGE_TEXT, "blob": HUGE_BLOB, "items": HUGE_ITEMS}, HUGE_CTX)
        small = ser({"id": 2, "text": "s", "blob": b"b", "items": ["i"]}, HUGE_CTX)
        return big, small
    if converter == "jsonschema":
        jschema: dict[str, Any] = {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "text": {"type": "string"},
                "items": {"type": "array", "items": {"type": "string"}},
            },
        }
        jser = JSONSerializer(json.dumps(jschema), client)
        big = jser({"id": 1, "text": HUGE_TEXT, "items": HUGE_ITEMS}, HUGE_CTX)
        small = jser({"id": 2, "text": "s", "items": ["i"]}, HUGE_CTX)
        return big, small
    from confluent_kafka.schema_registry.protobuf import ProtobufSerializer

    cls = _huge_proto_class()
    pser = ProtobufSerializer(cls, client, {"use.deprecated.format": False})
    msg = cls(id=1, text=HUGE_TEXT, blob=HUGE_BLOB)
    msg.items.extend(HUGE_ITEMS)
    return pser(msg, HUGE_CTX), pser(cls(id=2, text="s", blob=b"b", items=["i"]), HUGE_CTX)


@pytest.mark.parametrize("converter", ["avro", "jsonschema", "protobuf"])
def test_huge_records(registry: SchemaRegistryServer, converter: str) -> None:
    """A record of several MiB decodes whole; the same record cut short is a bad record (with
    a reason) and the records around it still decode."""
    big, small = _huge_values(converter, registry.url)
    assert len(big) > 4 * MIB
    decoder = load_value_decoder(
        SinkConfig(
            bootstrap_servers="127.0.0.1:9",
            value_converter=converter,
            value_converter_schema_registry_url=registry.url,
            format_class="parquet",
        )
    )
    values: list[bytes | None] = [
        small,
        big,
        big[: len(big) - 7],  # inside the last string
        big[: len(big) // 2],  # inside the text (or the blob)
        big[:9],  # just past the header
        small,
    ]
    b = _huge_batch(values)
    d = decoder.decode(b)
    check_decoded(b, d)
    assert sorted(d.errors) == [2, 3, 4]
    rows = [r for p in d.parts if p.table is not None for r in p.table.to_pylist()]
    assert [r["id"] for r in rows] == [2, 1, 2]
    huge = rows[1]
    assert huge["text"] == HUGE_TEXT
    assert huge["items"] == HUGE_ITEMS
    if converter != "jsonschema":
        assert huge["blob"] == HUGE_BLOB
    # the decoder is still usable afterwards
    again = decoder.decode(_huge_batch([big]))
    assert not again.errors
