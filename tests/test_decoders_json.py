"""Schemaless JSON (inference and value.schema), JsonConverter envelopes, string values."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pytest

from formats.decoders import decoder_name, load_value_decoder
from formats.decoders.base import Decoded, Decoder
from formats.decoders.json_schemaless import SchemalessJsonDecoder
from s3sink.config import SinkConfig
from s3sink.errors import ConfigError
from s3sink.records import RecordBatch


def cfg(**kw: Any) -> SinkConfig:
    return SinkConfig(bootstrap_servers="127.0.0.1:9", **kw)


def batch(values: list[bytes | None], topic: str = "t", partition: int = 0) -> RecordBatch:
    n = len(values)
    return RecordBatch(
        topic, partition, list(range(n)), [0] * n, [1] * n, [None] * n, values, [None] * n
    )


def docs(*objs: Any) -> RecordBatch:
    return batch([json.dumps(o).encode() for o in objs])


def check_decoded(b: RecordBatch, d: Decoded) -> None:
    """The Decoder contract: parts are ascending, disjoint, aligned with their tables, and with
    the errors they cover every row exactly once."""
    seen: list[int] = []
    for p in d.parts:
        rows = list(range(len(b))) if p.rows is None else list(p.rows)
        assert rows == sorted(rows)
        if p.table is not None:
            assert p.table.num_rows == len(rows)
        seen.extend(rows)
    assert seen == sorted(seen)
    assert sorted(seen + list(d.errors)) == list(range(len(b)))
    assert all(isinstance(r, str) and r for r in d.errors.values())


def decode(decoder: Decoder, b: RecordBatch) -> Decoded:
    d = decoder.decode(b)
    check_decoded(b, d)
    return d


def one_table(d: Decoded) -> pa.Table:
    assert len(d.parts) == 1
    t = d.parts[0].table
    assert t is not None
    return t


# -- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "short"),
    [
        ("org.apache.kafka.connect.json.JsonConverter", "json"),
        ("org.apache.kafka.connect.storage.StringConverter", "string"),
        ("org.apache.kafka.connect.converters.ByteArrayConverter", "bytes"),
        ("io.confluent.connect.avro.AvroConverter", "avro"),
        ("io.confluent.connect.json.JsonSchemaConverter", "jsonschema"),
        ("io.confluent.connect.protobuf.ProtobufConverter", "protobuf"),
        ("JSON", "json"),
    ],
)
def test_converter_names(name: str, short: str) -> None:
    assert decoder_name(name) == short


def test_unknown_converter_and_missing_registry() -> None:
    with pytest.raises(ConfigError, match=r"value\.converter"):
        load_value_decoder(cfg(value_converter="com.example.Nope"))
    with pytest.raises(ConfigError, match=r"schema\.registry\.url"):
        load_value_decoder(cfg(value_converter="avro"))


# -- inference ------------------------------------------------------------------------------


def test_bulk_types() -> None:
    d = decode(
        SchemalessJsonDecoder(),
        docs({"i": 1, "f": 1.5, "s": "x", "b": True, "o": {"k": [1, 2]}, "n": None}),
    )
    t = one_table(d)
    assert t.schema.field("i").type == pa.int64()
    assert t.schema.field("f").type == pa.float64()
    assert t.schema.field("s").type == pa.string()
    assert t.schema.field("b").type == pa.bool_()
    assert t.schema.field("o").type == pa.struct([("k", pa.list_(pa.int64()))])
    assert t.schema.field("n").type == pa.null()
    assert d.parts[0].schema_id is not None and d.parts[0].schema_id.startswith("inferred:")


def test_timestamps_stay_text() -> None:
    d = decode(
        SchemalessJsonDecoder(),
        docs({"at": "2024-05-03T07:00:00Z", "d": "2024-05-03"}, {"at": "2024-05-03 09:00:00"}),
    )
    t = one_table(d)
    assert t.schema.field("at").type == pa.string()
    assert t["at"].to_pylist() == ["2024-05-03T07:00:00Z", "2024-05-03 09:00:00"]
    assert t["d"].to_pylist() == ["2024-05-03", None]


def test_stable_schema_same_data_same_id() -> None:
    dec = SchemalessJsonDecoder()
    a = decode(dec, docs({"a": 1, "b": "x"}))
    b = decode(dec, docs({"b": "y", "a": 2}))
    c = decode(SchemalessJsonDecoder(), docs({"a": 1, "b": "x"}))
    assert a.parts[0].schema_id == b.parts[0].schema_id == c.parts[0].schema_id
    assert one_table(b).schema.names == ["a", "b"]  # first appearance order, kept


def test_new_fields_widen_never_drop() -> None:
    dec = SchemalessJsonDecoder()
    first = decode(dec, docs({"a": 1}))
    second = decode(dec, docs({"a": 2, "new": {"x": True}}))
    third = decode(dec, docs({"a": 3}))
    assert first.parts[0].schema_id != second.parts[0].schema_id
    assert second.parts[0].schema_id == third.parts[0].schema_id
    assert one_table(third).to_pylist() == [{"a": 3, "new": None}]
    assert one_table(second).to_pylist() == [{"a": 2, "new": {"x": True}}]


def test_nested_fields_widen() -> None:
    dec = SchemalessJsonDecoder()
    decode(dec, docs({"o": {"a": 1}}))
    t = one_table(decode(dec, docs({"o": {"b": "x"}})))
    assert t.to_pylist() == [{"o": {"a": None, "b": "x"}}]


@pytest.mark.parametrize("same_batch", [True, False])
def test_int_and_double_make_double(same_batch: bool) -> None:
    dec = SchemalessJsonDecoder()
    if same_batch:
        t = one_table(decode(dec, docs({"v": 1}, {"v": 2.5}, {"v": 3})))
    else:
        decode(dec, docs({"v": 1}))
        t = one_table(decode(dec, docs({"v": 2.5}, {"v": 3})))
    assert t.schema.field("v").type == pa.float64()
    assert t["v"].to_pylist()[-1] == 3.0


@pytest.mark.parametrize("same_batch", [True, False])
def test_conflicts_become_json_text(same_batch: bool) -> None:
    values = [{"v": "text"}, {"v": {"k": [1, 2]}}, {"v": 12}, {"v": True}, {"v": [1]}, {"v": None}]
    dec = SchemalessJsonDecoder()
    if same_batch:
        t = one_table(decode(dec, docs(*values)))
    else:
        for v in values[:-1]:
            decode(dec, docs(v))
        t = one_table(decode(dec, docs(*values)))
    assert t.schema.field("v").type == pa.string()
    assert t["v"].to_pylist() == ["text", '{"k":[1,2]}', "12", "true", "[1]", None]


def test_bad_records_never_raise() -> None:
    values: list[bytes | None] = [
        b'{"ok": 1}',
        b"not json",
        b"",
        b"   ",
        b"[1, 2]",
        b"42",
        b'{"a": NaN}',
        b'{"a": 1}{"a": 2}',
        b"\xff\xfe",
        b"[" * 100 + b"]" * 100,
        b'{"a":' * 70 + b"1" + b"}" * 70,
        b'{"ok": 2}',
        None,
    ]
    d = decode(SchemalessJsonDecoder(), batch(values))
    assert set(d.errors) == set(range(1, 11))
    t = one_table(d)
    assert t.to_pylist() == [{"ok": 1}, {"ok": 2}, {"ok": None}]
    assert "nested deeper" in d.errors[10]
    assert "expected a JSON object" in d.errors[4]


def test_depth_guard_is_exact_enough() -> None:
    ok = b'{"a":' * 60 + b"1" + b"}" * 60
    strings = json.dumps({"s": "[[[[{{{{" * 100}).encode()
    d = decode(SchemalessJsonDecoder(), batch([ok, strings]))
    assert not d.errors


def test_pretty_printed_values() -> None:
    d = decode(SchemalessJsonDecoder(), batch([b'{\n  "a": 1\n}', b'{"a":\r\n 2}']))
    assert one_table(d).to_pylist() == [{"a": 1}, {"a": 2}]


def test_huge_record() -> None:
    big = json.dumps({"blob": "x" * 3_000_000, "n": 1}).encode()
    d = decode(SchemalessJsonDecoder(), batch([big, b'{"n": 2}']))
    assert one_table(d)["n"].to_pylist() == [1, 2]


def test_tombstones_keep_row_order() -> None:
    d = decode(SchemalessJsonDecoder(), batch([None, b'{"a":1}', None, b'{"a":2}']))
    assert one_table(d).to_pylist() == [{"a": None}, {"a": 1}, {"a": None}, {"a": 2}]
    only = decode(SchemalessJsonDecoder(), batch([None, None]))
    assert [p.rows for p in only.parts] == [None]
    assert only.parts[0].table is None  # no schema yet: formats write them as raw nulls


def test_big_integers_become_double() -> None:
    t = one_table(decode(SchemalessJsonDecoder(), docs({"n": 2**70}, {"n": 1}, {"n": "x"})))
    assert t.schema.field("n").type == pa.string()
    t = one_table(decode(SchemalessJsonDecoder(), docs({"n": 2**70}, {"n": 1})))
    assert t.schema.field("n").type == pa.float64()


def test_schemas_are_per_topic() -> None:
    dec = SchemalessJsonDecoder()
    a = decode(dec, batch([b'{"a":1}'], topic="one"))
    b = decode(dec, batch([b'{"b":1}'], topic="two"))
    assert one_table(a).schema.names == ["a"]
    assert one_table(b).schema.names == ["b"]


def test_explicit_value_schema() -> None:
    schema = {
        "type": "record",
        "name": "R",
        "fields": [
            {"name": "id", "type": "long"},
            {"name": "name", "type": ["null", "string"]},
            {"name": "score", "type": "double"},
        ],
    }
    dec = load_value_decoder(cfg(value_converter="json", value_schema=json.dumps(schema)))
    d = decode(
        dec,
        batch(
            [
                b'{"id": 1, "name": "a", "score": 1, "extra": true}',
                b'{"id": "x"}',
                b'{"id": 2, "score": 2.5}',
            ]
        ),
    )
    assert list(d.errors) == [1]
    t = one_table(d)
    assert t.schema.names == ["id", "name", "score"]
    assert t.schema.field("id").type == pa.int64()
    assert t.to_pylist() == [
        {"id": 1, "name": "a", "score": 1.0},
        {"id": 2, "name": None, "score": 2.5},
    ]
    assert d.parts[0].schema_id is not None and d.parts[0].schema_id.startswith("schema:")


def test_explicit_value_schema_from_file(tmp_path: Any) -> None:
    p = tmp_path / "v.avsc"
    p.write_text(
        json.dumps({"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]})
    )
    dec = load_value_decoder(cfg(value_converter="json", value_schema=f"@{p}"))
    assert one_table(decode(dec, batch([b'{"a": 1}']))).schema.field("a").type == pa.int32()
    with pytest.raises(ConfigError, match=r"value\.schema"):
        load_value_decoder(cfg(value_converter="json", value_schema='"string"'))


# -- envelopes ------------------------------------------------------------------------------

SCHEMA_A = {
    "type": "struct",
    "fields": [
        {"field": "id", "type": "int64"},
        {
            "field": "d",
            "type": "int32",
            "name": "org.apache.kafka.connect.data.Date",
            "optional": True,
        },
    ],
}
SCHEMA_B = {
    "type": "struct",
    "fields": [
        {"field": "id", "type": "int64"},
        {
            "field": "price",
            "type": "bytes",
            "name": "org.apache.kafka.connect.data.Decimal",
            "parameters": {"scale": "2"},
        },
    ],
}


def env(schema: Any, payload: Any) -> bytes:
    return json.dumps({"schema": schema, "payload": payload}).encode()


def test_envelopes_group_by_schema() -> None:
    dec = load_value_decoder(cfg(value_converter="json", value_converter_schemas_enable=True))
    b = batch(
        [
            env(SCHEMA_A, {"id": 1, "d": 19846}),
            env(SCHEMA_A, {"id": 2, "d": None}),
            env(SCHEMA_B, {"id": 3, "price": "AQ=="}),  # 1 -> 0.01
            b'{"payload": 1}',
            env(SCHEMA_A, {"id": "x"}),
            env({"type": "string"}, "plain"),
        ]
    )
    d = decode(dec, b)
    assert sorted(d.errors) == [3, 4]
    assert [p.rows for p in d.parts] == [[0, 1], [2], [5]]
    t0, t1, t2 = (p.table for p in d.parts)
    assert t0 is not None and t1 is not None and t2 is not None
    assert t0.schema.field("d").type == pa.date32()
    assert str(t0["d"][0].as_py()) == "2024-05-03"
    assert str(t1["price"][0].as_py()) == "0.01"
    assert t2.to_pylist() == [{"value": "plain"}]


# -- string ---------------------------------------------------------------------------------


def test_string_decoder() -> None:
    dec = load_value_decoder(cfg(value_converter="string"))
    d = decode(dec, batch([b"caf\xc3\xa9", b"\xff", None, b""]))
    assert list(d.errors) == [1]
    assert one_table(d).to_pylist() == [{"value": "café"}, {"value": None}, {"value": ""}]
