"""JSON lines: the one-join path writes what the line-by-line path writes."""

from __future__ import annotations

import io

import pytest

from formats.decoders import load_value_decoder
from formats.json import JsonFormat
from s3sink.config import SinkConfig
from s3sink.records import RecordBatch


def batch(values: list[bytes | None]) -> RecordBatch:
    n = len(values)
    return RecordBatch("t", 0, list(range(n)), [0] * n, [1] * n, [None] * n, values, [None] * n)


def write(values: list[bytes | None], converter: str, *, force_lines: bool) -> bytes:
    config = SinkConfig(bootstrap_servers="x", value_converter=converter, format_class="json")
    fmt = JsonFormat(config)
    out = io.BytesIO()
    w = fmt.open(out)
    b = batch(values)
    table = None
    if fmt.needs_values():
        decoded = load_value_decoder(config).decode(b)
        assert not decoded.errors
        table = decoded.parts[0].table
    if force_lines:
        w._raw_body = lambda _b, _v: None  # type: ignore[attr-defined]
    else:
        assert w._raw_body(b, table) is not None  # type: ignore[attr-defined]
    w.write(b, table)
    w.close()
    return out.getvalue()


@pytest.mark.parametrize("converter", ["json", "bytes", "string"])
def test_one_join_equals_line_by_line(converter: str) -> None:
    values: list[bytes | None] = [b'{"a":1}', b'{"b":"x y"}', b"{}"]
    fast = write(values, converter, force_lines=False)
    assert fast == write(values, converter, force_lines=True)
    assert fast == b'{"a":1}\n{"b":"x y"}\n{}\n'
