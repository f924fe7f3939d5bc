"""Marker encoding and log key layout."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s3sink.commitlog import (
    FileEntry,
    Marker,
    log_prefix,
    marker_key,
    seq_of,
    staging_epoch_of,
    staging_prefix,
)
from s3sink.errors import CommitLogError

files = st.builds(
    FileEntry,
    staging=st.text(min_size=1, max_size=40),
    key=st.text(min_size=1, max_size=40),
    etag=st.text(max_size=34),
    size=st.integers(0, 2**40),
    records=st.integers(0, 10**9),
    first_offset=st.integers(0, 2**62),
    last_offset=st.integers(0, 2**62),
    min_timestamp=st.none() | st.integers(-(2**50), 2**50),
    max_timestamp=st.none() | st.integers(-(2**50), 2**50),
    schema=st.none() | st.text(max_size=10),
)


@given(
    seq=st.integers(0, 10**15),
    epoch=st.integers(1, 10**6),
    kind=st.sampled_from(["commit", "fence"]),
    start=st.integers(0, 2**62),
    length=st.integers(0, 10**9),
    fs=st.lists(files, max_size=4),
)
def test_marker_round_trip(
    seq: int, epoch: int, kind: str, start: int, length: int, fs: list[FileEntry]
) -> None:
    m = Marker(
        seq=seq,
        epoch=epoch,
        kind=kind,  # type: ignore[arg-type]
        writer="host-1",
        attempt="abc",
        start=start,
        end=start + length,
        files=tuple(fs),
        created_ms=123,
        records=sum(f.records for f in fs),
    )
    assert Marker.decode(m.encode()) == m


def test_garbage_marker_is_a_clear_error() -> None:
    with pytest.raises(CommitLogError, match="not a valid s3sink commit marker"):
        Marker.decode(b"{not json", "k")
    with pytest.raises(CommitLogError, match="newer s3sink"):
        Marker.decode(b'{"version": 99}', "k")


@given(st.integers(0, 10**19 - 1))
def test_marker_keys_sort_by_seq(seq: int) -> None:
    key = marker_key("orders", 3, seq)
    assert key.startswith(log_prefix("orders", 3))
    assert seq_of(key) == seq
    assert marker_key("orders", 3, seq) < marker_key("orders", 3, seq + 1)


def test_staging_epoch_parsing() -> None:
    key = f"{staging_prefix('t', 0)}e0000000007/attempt/000001-t+0+0000000000.json"
    assert staging_epoch_of(key, "t", 0) == 7
    assert staging_epoch_of(f"{staging_prefix('t', 0)}junk/x", "t", 0) is None
