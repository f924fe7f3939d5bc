"""Data file names: ``<topic>+<kafka partition>+<zero-padded start offset><extension>``.

The names are made by :class:`~s3sink.writer.PartitionWriter` when it opens a file, and read
back by the DDL (``_DATA_FILE``, ``data_file_glob``: data files, not keys/headers files) and by
restore (``sidecar_of``: the data file a keys/headers file belongs to). Property tests over
topic names (dots, dashes, underscores), partitions, offsets up to 2**63-1, pad widths and every
format/codec, plus names of files committed end to end.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3sink.clock import ManualClock
from s3sink.commitlog import PartitionLog
from s3sink.committer import Committer
from s3sink.config import parse
from s3sink.context import SinkContext, build_context
from s3sink.ddl import _DATA_FILE, DATA_SUFFIXES, data_file_glob
from s3sink.metrics import Metrics
from s3sink.restore import sidecar_of
from s3sink.storage.memory import MemoryStorage
from s3sink.writer import OpenFile, PartitionWriter, _is_data

MAX_OFFSET = 2**63 - 1

#: (format settings, data file extension, whether keys/headers files are possible)
FORMATS: list[tuple[dict[str, str], str, tuple[str, ...]]] = [
    ({"format.class": "json"}, ".json", ("keys", "headers")),
    ({"format.class": "json", "s3.compression.type": "gzip"}, ".json.gz", ("keys", "headers")),
    ({"format.class": "json", "s3.compression.type": "zstd"}, ".json.zst", ("keys", "headers")),
    ({"format.class": "bytearray"}, ".bin", ("keys",)),
    ({"format.class": "bytearray", "s3.compression.type": "gzip"}, ".bin.gz", ("keys",)),
    (
        {"format.class": "bytearray", "format.bytearray.extension": ".txt"},
        ".txt",
        ("keys",),
    ),
    ({"format.class": "parquet"}, ".snappy.parquet", ("keys", "headers")),
    ({"format.class": "parquet", "parquet.codec": "none"}, ".parquet", ("keys", "headers")),
    ({"format.class": "parquet", "parquet.codec": "gzip"}, ".gz.parquet", ("keys", "headers")),
    ({"format.class": "parquet", "parquet.codec": "zstd"}, ".zstd.parquet", ("keys", "headers")),
    ({"format.class": "parquet", "parquet.codec": "lz4"}, ".lz4.parquet", ("keys", "headers")),
    ({"format.class": "avro"}, ".avro", ("keys", "headers")),
    ({"format.class": "avro", "avro.codec": "zstd"}, ".avro", ("keys", "headers")),
    ({"format.class": "backup"}, ".avro", ()),
]

#: Kafka's legal topic characters; "." and ".." are not topics.
topics = st.from_regex(r"[A-Za-z0-9._-]{1,60}", fullmatch=True).filter(
    lambda t: t not in (".", "..")
)
tricky_topics = st.sampled_from(
    ["a.b.c", "orders-v2", "__consumer_like", "x_y-z.0", "9", "a..b", "-._", "keys", "_headers"]
)
offsets = st.one_of(
    st.integers(min_value=0, max_value=MAX_OFFSET),
    st.sampled_from([0, 9, 10, 9_999_999_999, 10_000_000_000, 10**18, MAX_OFFSET - 1, MAX_OFFSET]),
)

_NAME = re.compile(r"(?P<topic>.+)\+(?P<partition>\d+)\+(?P<offset>\d+)(?P<ext>(\..*)?)")


def parse_name(name: str) -> tuple[str, int, int, str, int]:
    """topic, partition, offset, extension and digit count of a data file name."""
    m = _NAME.fullmatch(name)
    assert m, name
    return (
        m["topic"],
        int(m["partition"]),
        int(m["offset"]),
        m["ext"],
        len(m["offset"]),
    )


@cache
def context(index: int) -> SinkContext:
    settings_, _, sidecars = FORMATS[index]
    raw = {
        "topics": "t",
        "bootstrap.servers": "127.0.0.1:1",
        "storage.url": "memory://",
        "http.listen": "none",
        "value.converter": "json",
        **settings_,
    }
    if "keys" in sidecars:
        raw["store.kafka.keys"] = "true"
    if "headers" in sidecars:
        raw["store.kafka.headers"] = "true"
    config = parse(raw, environ={})
    clock = ManualClock(1_700_000_000_000)
    metrics = Metrics()
    committer = Committer(1, clock, metrics, lambda w, m: None)
    return build_context(config, MemoryStorage(), clock, metrics, committer)


def open_names(
    index: int, topic: str, partition: int, offset: int, width: int
) -> tuple[OpenFile, dict[str, OpenFile]]:
    """The data file and keys/headers files a writer opens for a record at ``offset``."""
    base = context(index)
    ctx = dataclasses.replace(
        base,
        config=dataclasses.replace(base.config, filename_offset_zero_pad_width=width),
    )
    plog = PartitionLog(ctx.storage, topic, partition, "test", "attempt-1", ctx.clock)
    writer = PartitionWriter(ctx, topic, partition, plog, offset)
    encoded = f"partition={partition}"
    data = writer._open(encoded, offset)
    sides = {kind: writer._open(encoded, offset, sidecar=kind) for kind in FORMATS[index][2]}
    writer.abandon()
    return data, sides


def glob_matches(pattern: str, name: str) -> bool:
    """Hadoop's glob (``*``, ``[0-9]``, ``{a,b}``) by brace expansion and fnmatch."""
    m = re.search(r"\{([^}]*)\}", pattern)
    if m is None:
        return fnmatch.fnmatchcase(name, pattern)
    return any(
        glob_matches(pattern[: m.start()] + alt + pattern[m.end() :], name)
        for alt in m.group(1).split(",")
    )


@settings(max_examples=300, deadline=None)
@given(
    index=st.integers(min_value=0, max_value=len(FORMATS) - 1),
    topic=st.one_of(topics, tricky_topics),
    partition=st.integers(min_value=0, max_value=2**31 - 1),
    offset=offsets,
    width=st.integers(min_value=1, max_value=20),
)
def test_data_file_names_round_trip(
    index: int, topic: str, partition: int, offset: int, width: int
) -> None:
    settings_, ext, _ = FORMATS[index]
    data, sides = open_names(index, topic, partition, offset, width)
    directory, _, name = data.final_key.rpartition("/")
    assert directory == f"topics/{topic}/partition={partition}"
    assert name == f"{topic}+{partition}+{offset:0{width}d}{ext}"
    got_topic, got_partition, got_offset, got_ext, digits = parse_name(name)
    assert (got_topic, got_partition, got_offset, got_ext) == (topic, partition, offset, ext)
    assert digits == max(width, len(str(offset)))
    assert _is_data(data.file_key)
    # the DDL sees a data file; its glob for the format matches every codec's name
    assert _DATA_FILE.search(data.final_key)
    fmt = settings_["format.class"]
    if fmt in DATA_SUFFIXES and ext.lstrip(".") in DATA_SUFFIXES[fmt]:
        assert glob_matches(data_file_glob(fmt), name), (data_file_glob(fmt), name)
    # keys/headers files: in a sibling tree, not data files, mapped back to their data file
    for kind, side in sides.items():
        assert not _is_data(side.file_key)
        side_dir, _, side_name = side.final_key.rpartition("/")
        assert side_dir == f"topics/_{kind}/{topic}/partition={partition}"
        assert side_name == f"{topic}+{partition}+{offset:0{width}d}.{kind}{ext}"
        assert not _DATA_FILE.search(side.final_key)
        assert sidecar_of("topics", side.final_key) == (kind, data.final_key)
    assert sidecar_of("topics", data.final_key) is None


SIDECAR_CASES = [
    pytest.param(
        i,
        kind,
        id=f"{FORMATS[i][1]}-{kind}",
    )
    for i in range(len(FORMATS))
    for kind in FORMATS[i][2]
    if FORMATS[i][0]["format.class"] in DATA_SUFFIXES
]


@pytest.mark.parametrize(("index", "kind"), SIDECAR_CASES)
def test_data_file_glob_skips_keys_and_headers_files(index: int, kind: str) -> None:
    fmt = FORMATS[index][0]["format.class"]
    for topic, offset in (("orders", 0), ("a.b-c_d", 12345), ("t", MAX_OFFSET)):
        data, sides = open_names(index, topic, 1, offset, 10)
        assert glob_matches(data_file_glob(fmt), data.final_key.rsplit("/", 1)[1])
        side_name = sides[kind].final_key.rsplit("/", 1)[1]
        assert not glob_matches(data_file_glob(fmt), side_name), (data_file_glob(fmt), side_name)


def test_every_format_and_codec_is_covered() -> None:
    from formats import BUILTIN

    assert {s["format.class"] for s, _, _ in FORMATS} == set(BUILTIN)
    for i in range(len(FORMATS)):
        assert context(i).format.extension() == FORMATS[i][1]


def test_names_sort_by_offset_within_the_pad_width() -> None:
    index = 0
    names = [
        open_names(index, "a.b-c_d", 3, o, 10)[0].final_key for o in (0, 9, 10, 999, 9_999_999_999)
    ]
    assert names == sorted(names)
    assert [parse_name(n.rsplit("/", 1)[1])[2] for n in names] == [0, 9, 10, 999, 9_999_999_999]


@pytest.mark.parametrize(
    ("topic", "start"),
    [("orders.v1", 0), ("a-b_c.d", 9_999_999_998), ("t", MAX_OFFSET - 3)],
)
def test_committed_file_names_carry_the_first_offset(topic: str, start: int) -> None:
    """Through append and commit: each committed file is named after its first record."""
    from s3sink.records import RecordBatch
    from s3sink.rotation import RotationReason

    storage = MemoryStorage()
    clock = ManualClock(1_700_000_000_000)
    metrics = Metrics()
    config = parse(
        {
            "topics": topic,
            "bootstrap.servers": "127.0.0.1:1",
            "storage.url": "memory://",
            "http.listen": "none",
            "format.class": "json",
            "flush.size": "2",
            "store.kafka.keys": "true",
        },
        environ={},
    )
    committer = Committer(1, clock, metrics, lambda w, m: None)
    ctx = build_context(config, storage, clock, metrics, committer)
    plog = PartitionLog(storage, topic, 5, "test", "attempt-1", clock)
    plog.takeover(None, lambda: start)
    writer = PartitionWriter(ctx, topic, 5, plog, start)
    n = 3
    values: list[Any] = [b'{"i":%d}' % i for i in range(n)]
    writer.append(
        RecordBatch(
            topic,
            5,
            list(range(start, start + n)),
            [1] * n,
            [1] * n,
            [b"k"] * n,
            values,
            [None] * n,
        )
    )
    writer.seal(RotationReason.SHUTDOWN)
    assert committer.wait_idle(None, 30)
    assert writer.failure is None, writer.failure
    from tests.rig.archive import markers

    commits = [m for m in markers(storage, topic, 5) if m.kind == "commit"]
    assert [(m.start, m.end) for m in commits] == [(start, start + 2), (start + 2, start + 3)]
    for m in commits:
        data = [f for f in m.files if f.role == "data"]
        keys = [f for f in m.files if f.role == "keys"]
        assert len(data) == len(keys) == 1
        name = data[0].key.rsplit("/", 1)[1]
        assert parse_name(name)[:4] == (topic, 5, data[0].first_offset, ".json")
        assert data[0].first_offset == m.start
        assert sidecar_of("topics", keys[0].key) == ("keys", data[0].key)
        assert storage.head(data[0].key) is not None
    committer.shutdown(wait=True)
