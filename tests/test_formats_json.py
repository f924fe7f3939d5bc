"""JSON lines specifics: original bytes, rendering decoded records, metadata lines, codecs."""

from __future__ import annotations

import io
import json
from typing import Any

import pyarrow as pa
import pytest

from formats import load_format
from formats.decoders import load_value_decoder
from formats.json import JsonFormat
from s3sink.config import SinkConfig
from s3sink.records import RecordBatch


def cfg(**kw: Any) -> SinkConfig:
    return SinkConfig(bootstrap_servers="127.0.0.1:9", format_class="json", **kw)


def batch(values: list[bytes | None]) -> RecordBatch:
    n = len(values)
    return RecordBatch("t", 1, list(range(n)), [5] * n, [2] * n, [b"key"] * n, values, [None] * n)


def write(config: SinkConfig, b: RecordBatch) -> list[bytes]:
    fmt = load_format(config)
    out = io.BytesIO()
    w = fmt.open(out)
    if fmt.needs_values():
        d = load_value_decoder(config).decode(b)
        for p in d.parts:
            w.write(b if p.rows is None else b.take(p.rows), p.table)
    else:
        w.write(b, None)
    w.close()
    return out.getvalue().split(b"\n")[:-1]


def test_original_bytes_are_kept() -> None:
    values: list[bytes | None] = [b'{"b":1,  "a":2.50}', b'{"x":"\\u00e9"}']
    assert write(cfg(), batch(values)) == values
    assert write(cfg(value_converter="json"), batch(values)) == values


def test_multiline_values_become_one_line() -> None:
    lines = write(cfg(), batch([b'{\n  "a": 1\n}', b"not\njson"]))
    assert lines == [b'{"a":1}', b'"not\\njson"']


def test_tombstones_and_metadata() -> None:
    config = cfg(store_kafka_metadata=True, behavior_on_null_values="write", key_converter="string")
    lines = write(config, batch([b'{"a":1}', None]))
    docs = [json.loads(x) for x in lines]
    assert docs[0]["value"] == {"a": 1}
    assert docs[1]["value"] is None
    assert docs[0]["_kafka"] == {
        "topic": "t",
        "partition": 1,
        "offset": 0,
        "timestamp": 5,
        "timestamp_type": "LogAppendTime",
        "key": "key",
        "headers": [],
    }


def test_decoded_records_are_rendered() -> None:
    """Records that are not JSON on the wire (Avro, Protobuf, envelopes) are rendered."""
    config = cfg(value_converter="json", value_converter_schemas_enable=True)
    env = {
        "schema": {
            "type": "struct",
            "fields": [
                {"field": "id", "type": "int32"},
                {"field": "at", "type": "int64", "name": "org.apache.kafka.connect.data.Timestamp"},
                {"field": "raw", "type": "bytes", "optional": True},
                {
                    "field": "m",
                    "type": "map",
                    "keys": {"type": "string"},
                    "values": {"type": "int32"},
                },
            ],
        },
        "payload": {"id": 7, "at": 1714719600123, "raw": "AAE=", "m": {"a": 1}},
    }
    lines = write(config, batch([json.dumps(env).encode()]))
    assert json.loads(lines[0]) == {
        "id": 7,
        "at": "2024-05-03T07:00:00.123Z",
        "raw": "AAE=",
        "m": {"a": 1},
    }


def test_schema_changes_do_not_roll_json_files() -> None:
    fmt = load_format(cfg(value_converter="json"))
    assert isinstance(fmt, JsonFormat)
    assert fmt.rolls_on_schema_change() is False
    assert fmt.needs_values() is True
    assert load_format(cfg()).needs_values() is False


@pytest.mark.parametrize(
    ("codec", "ext"), [("none", ".json"), ("gzip", ".json.gz"), ("zstd", ".json.zst")]
)
def test_codecs(codec: str, ext: str) -> None:
    config = cfg(s3_compression_type=codec)
    fmt = load_format(config)
    assert fmt.extension() == ext
    out = io.BytesIO()
    w = fmt.open(out)
    w.write(batch([b'{"a":1}'] * 100), None)
    stats = w.close()
    data = out.getvalue()
    assert stats.bytes == len(data)
    if codec == "gzip":
        import gzip

        data = gzip.decompress(data)
    elif codec == "zstd":
        data = pa.decompress(data, codec="zstd", decompressed_size=800, asbytes=True)
    assert data == b'{"a":1}\n' * 100
