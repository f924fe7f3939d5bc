"""Parquet row groups are encoded in the background: order, memory accounting, errors."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest

from formats import load_format
from formats.decoders import load_value_decoder
from s3sink.config import SinkConfig
from s3sink.records import RecordBatch


def batch(values: list[bytes | None], first: int = 0) -> RecordBatch:
    n = len(values)
    return RecordBatch(
        "t", 0, list(range(first, first + n)), [0] * n, [1] * n, [None] * n, values, [None] * n
    )


def config() -> SinkConfig:
    return SinkConfig(
        bootstrap_servers="x",
        value_converter="json",
        format_class="parquet",
        parquet_row_group_bytes=4096,
    )


def test_row_groups_stay_in_order() -> None:
    cfg = config()
    fmt, dec = load_format(cfg), load_value_decoder(cfg)
    out = io.BytesIO()
    w = fmt.open(out)
    for start in range(0, 5000, 250):
        b = batch([json.dumps({"id": i}).encode() for i in range(start, start + 250)], start)
        w.write(b, dec.decode(b).parts[0].table)
        assert w.buffered_bytes() < 100_000
    w.close()
    f = pq.ParquetFile(io.BytesIO(out.getvalue()))
    assert f.metadata.num_row_groups > 3
    assert f.read().column("id").to_pylist() == list(range(5000))


class Failing:
    def write(self, data: bytes | memoryview, /) -> object:
        raise OSError("disk on fire")


def test_an_encoding_error_surfaces() -> None:
    cfg = config()
    fmt, dec = load_format(cfg), load_value_decoder(cfg)
    w = fmt.open(Failing())
    b = batch([json.dumps({"id": i, "pad": "x" * 100}).encode() for i in range(200)])
    with pytest.raises(OSError, match="disk on fire"):
        for _ in range(10):
            w.write(b, dec.decode(b).parts[0].table)
        w.close()
