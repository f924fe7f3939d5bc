"""The schemaless JSON decoder's bulk fast path gives what the value-by-value path gives."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from formats.decoders import jsonutil
from formats.decoders.json_schemaless import SchemalessJsonDecoder
from s3sink.records import RecordBatch


def batch(values: list[bytes | None]) -> RecordBatch:
    n = len(values)
    return RecordBatch("t", 0, list(range(n)), [0] * n, [1] * n, [None] * n, values, [None] * n)


def slow(values: list[bytes | None]) -> Any:
    """The value-by-value path (a tombstone at the end forces it, then is dropped)."""
    d = SchemalessJsonDecoder().decode(batch([*values, None]))
    return {k: v for k, v in d.errors.items() if k < len(values)}, [
        (None if p.table is None else p.table.slice(0, len(values)).to_pylist(), p.schema_id)
        for p in d.parts
    ]


def fast(values: list[bytes | None]) -> Any:
    d = SchemalessJsonDecoder().decode(batch(values))
    return dict(d.errors), [
        (None if p.table is None else p.table.to_pylist(), p.schema_id) for p in d.parts
    ]


@pytest.mark.parametrize(
    "values",
    [
        [b'{"a":1,"b":{"c":[1,2]}}', b'{"a":2,"ts":"2024-05-03T07:00:00Z"}'],
        [b"{}", b"{}"],
        [b'{"a":' * 63 + b"1" + b"}" * 63],
        [b'{"x":"' + b"[" * 200 + b'"}'],
    ],
)
def test_clean_batches_take_the_fast_path_with_the_same_result(values: list[bytes | None]) -> None:
    assert jsonutil.joined_if_clean(values) is not None  # type: ignore[arg-type]
    assert fast(values) == slow(values)


@pytest.mark.parametrize(
    "values",
    [
        [b'{"a":1}', b"null"],
        [b'{"a":1}', b' {"a":2}'],
        [b'{"a":1}', b""],
        [b'{"a":1}', b'{"a":\n2}'],
        [b'{"a":1}', b'{"a":\r2}'],
        [b'{"a":1}', b'{"a":"' + b"x" * jsonutil.SHALLOW_BYTES + b'"}'],
    ],
)
def test_other_batches_go_value_by_value(values: list[bytes]) -> None:
    assert jsonutil.joined_if_clean(values) is None


def test_too_deep_for_the_rules_falls_back_and_reports_it() -> None:
    deep = b'{"a":' * 65 + b"1" + b"}" * 65
    ok = b'{"a":' * 64 + b"1" + b"}" * 64
    assert jsonutil.joined_if_clean([deep, ok]) is not None
    d = SchemalessJsonDecoder().decode(batch([deep, ok]))
    assert list(d.errors) == [0] and "nested deeper" in d.errors[0]
    d = SchemalessJsonDecoder().decode(batch([ok]))
    assert not d.errors


def test_a_bad_value_in_a_clean_looking_batch_is_found() -> None:
    values: list[bytes | None] = [b'{"a":1}', b'{"a":}', b'{"a":3}']
    d = SchemalessJsonDecoder().decode(batch(values))
    assert list(d.errors) == [1]
    assert d.parts[0].rows == [0, 2]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.dictionaries(st.sampled_from("abc"), json_values, max_size=3), min_size=1, max_size=6
    )
)
def test_fast_and_slow_paths_agree(objs: list[dict[str, Any]]) -> None:
    values: list[bytes | None] = [json.dumps(o, separators=(",", ":")).encode() for o in objs]
    assert fast(values) == slow(values)


# -- validation only (JSON lines: nothing reads the columns) ---------------------------------


def test_json_lines_only_validate() -> None:
    from formats.decoders import load_value_decoder
    from formats.decoders.base import META_LAZY, meta
    from s3sink.config import SinkConfig

    def dec(**kw: Any) -> Any:
        return load_value_decoder(SinkConfig(bootstrap_servers="x", value_converter="json", **kw))

    assert dec(format_class="json")._columns is False
    assert dec(format_class="parquet")._columns is True
    assert dec(format_class="json", partitioner_class="field", partition_field_name=("a",))._columns

    d = dec(format_class="json").decode(batch([b'{"a":1}', b'{"b":[1,{"c":2}]}']))
    assert not d.errors and len(d.parts) == 1
    t = d.parts[0].table
    assert t is not None and t.num_rows == 2 and meta(t, META_LAZY) == b"1"
    assert d.parts[0].rows is None and d.parts[0].schema_id is None


@pytest.mark.parametrize(
    ("values", "bad"),
    [
        ([b'{"a":1}', b'{"a":}', b'{"a":3}'], [1]),
        ([b'{"a":1}', b'{"a":' * 65 + b"1" + b"}" * 65], [1]),
        ([b'{"a":1}', b"[" * 70 + b"]" * 70], [1]),
        (
            [
                b'{"a":' * 64 + b"1" + b"}" * 64,
                b'{"s":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}',
            ],
            [],
        ),
    ],
)
def test_validation_only_finds_the_bad_values(values: list[bytes | None], bad: list[int]) -> None:
    d = SchemalessJsonDecoder(columns=False).decode(batch(values))
    assert list(d.errors) == bad
    assert sum(len(p.rows) if p.rows is not None else len(values) for p in d.parts) == len(
        values
    ) - len(bad)


# -- what pyarrow's reader would accept but JSON does not ------------------------------------


@pytest.mark.parametrize("columns", [True, False])
@pytest.mark.parametrize(
    ("bad_value", "reason"),
    [
        (b'{"a":NaN}', "not valid JSON"),
        (b'{"a":-Infinity}', "not valid JSON"),
        (b'{"a":Infinity,"b":1}', "not valid JSON"),
        (b'{"s":"\xff\xfe"}', "not valid UTF-8"),
        (b'{"s":"caf\xc3"}', "not valid UTF-8"),
    ],
)
def test_nan_infinity_and_invalid_utf8_are_bad_records(
    bad_value: bytes, reason: str, columns: bool
) -> None:
    values: list[bytes | None] = [b'{"a":1}', bad_value, b'{"a":3,"s":"caf\xc3\xa9"}']
    assert jsonutil.joined_if_clean(values) is None  # type: ignore[arg-type]
    d = SchemalessJsonDecoder(columns=columns).decode(batch(values))
    assert list(d.errors) == [1]
    assert d.errors[1].startswith(reason), d.errors[1]
    assert [p.rows for p in d.parts] == [[0, 2]]


@pytest.mark.parametrize(
    "values",
    [
        [b'{"s":"NaN"}', b'{"s":"Infinity and beyond"}'],
        [b'{"s":"caf\xc3\xa9 \xe2\x82\xac"}'],
    ],
)
def test_the_words_inside_strings_and_valid_utf8_are_good(values: list[bytes | None]) -> None:
    for columns in (True, False):
        d = SchemalessJsonDecoder(columns=columns).decode(batch(values))
        assert not d.errors
    assert fast(values) == slow(values)
    assert fast(values)[1][0][0] == [json.loads(v) for v in values if v is not None]
