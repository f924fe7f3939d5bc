"""Keys and headers files (store.kafka.keys / store.kafka.headers) in every format."""

from __future__ import annotations

import io
import json
from typing import Any

import fastavro
import pyarrow.parquet as pq
import pytest

from formats.sidecar import load_sidecar_formats
from s3sink.config import SinkConfig
from s3sink.errors import ConfigError
from s3sink.records import RecordBatch


def cfg(**kw: Any) -> SinkConfig:
    base: dict[str, Any] = {"store_kafka_keys": True, "store_kafka_headers": True}
    return SinkConfig(bootstrap_servers="127.0.0.1:9", **(base | kw))


B = RecordBatch(
    "t",
    0,
    [0, 1, 2],
    [0, 0, 0],
    [1, 1, 1],
    [b"k0", None, b"k\xc3\xa92"],
    [b"{}", None, b"{}"],
    [[("h", b"v0"), ("n", None)], None, []],
)
HEADERS = [[{"key": "h", "value": b"v0"}, {"key": "n", "value": None}], [], []]


def write(fmt: Any) -> bytes:
    out = io.BytesIO()
    w = fmt.open(out)
    w.write(B, None)
    stats = w.close()
    assert stats.records == 3
    return out.getvalue()


def test_none_unless_asked() -> None:
    assert load_sidecar_formats(SinkConfig(bootstrap_servers="x")) == {}


@pytest.mark.parametrize("text", [False, True])
def test_parquet(text: bool) -> None:
    fmts = load_sidecar_formats(
        cfg(format_class="parquet", key_converter="string" if text else "bytes")
    )
    assert fmts["keys"].extension() == ".keys.snappy.parquet"
    assert fmts["headers"].extension() == ".headers.snappy.parquet"
    keys = pq.read_table(io.BytesIO(write(fmts["keys"])))["key"].to_pylist()
    assert keys == (["k0", None, "ké2"] if text else [b"k0", None, b"k\xc3\xa92"])
    headers = pq.read_table(io.BytesIO(write(fmts["headers"])))["headers"].to_pylist()
    assert headers == HEADERS


def test_avro() -> None:
    fmts = load_sidecar_formats(
        cfg(format_class="avro", key_converter="string", store_kafka_metadata=True)
    )
    assert fmts["keys"].extension() == ".keys.avro"
    assert list(fastavro.reader(io.BytesIO(write(fmts["keys"])))) == ["k0", None, "ké2"]
    assert list(fastavro.reader(io.BytesIO(write(fmts["headers"])))) == HEADERS


def test_json() -> None:
    fmts = load_sidecar_formats(cfg(format_class="json", s3_compression_type="none"))
    lines = write(fmts["keys"]).decode().splitlines()
    assert [json.loads(x) for x in lines] == ["azA=", None, "a8OpMg=="]
    lines = write(fmts["headers"]).decode().splitlines()
    assert [json.loads(x) for x in lines] == [
        [{"key": "h", "value": "djA="}, {"key": "n", "value": None}],
        [],
        [],
    ]


def test_bytearray_keys_only() -> None:
    fmts = load_sidecar_formats(cfg(format_class="bytearray", store_kafka_headers=False))
    assert write(fmts["keys"]) == b"k0\n\nk\xc3\xa92\n"
    with pytest.raises(ConfigError, match="headers"):
        load_sidecar_formats(cfg(format_class="bytearray"))
