"""``split_messages`` and ``RecordBatch.from_messages``: the consumer's batch, column-wise."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from s3sink.records import RecordBatch, split_messages


@dataclass
class FakeMessage:
    """Duck-typed like confluent-kafka's ``Message``."""

    t: str
    p: int
    o: int
    v: bytes | None = b"v"
    err: Any = None
    k: bytes | None = None
    h: list[tuple[str, bytes | None]] | None = field(default=None)

    def topic(self) -> str:
        return self.t

    def partition(self) -> int:
        return self.p

    def offset(self) -> int:
        return self.o

    def timestamp(self) -> tuple[int, int]:
        return (1, 1000 + self.o)

    def key(self) -> bytes | None:
        return self.k

    def value(self) -> bytes | None:
        return self.v

    def headers(self) -> list[tuple[str, bytes | None]] | None:
        return self.h

    def error(self) -> Any:
        return self.err


def _reference(msgs: list[FakeMessage]) -> tuple[dict[tuple[str, int], list[Any]], list[Any]]:
    groups: dict[tuple[str, int], list[Any]] = {}
    failed = []
    for m in msgs:
        if m.error() is not None:
            failed.append((m, m.error()))
        else:
            groups.setdefault((m.topic(), m.partition()), []).append(m)
    return groups, failed


def test_split_keeps_order_per_partition_and_reports_errors() -> None:
    msgs = [
        FakeMessage("a", 0, 0),
        FakeMessage("a", 0, 1),
        FakeMessage("a", 1, 0),
        FakeMessage("b", 0, 0),
        FakeMessage("a", 0, 2),
        FakeMessage("a", 1, 1, err="eof"),
        FakeMessage("a", 1, 1),
    ]
    groups, failed = split_messages(msgs)
    assert [(m.t, m.p, m.o) for m in groups[("a", 0)]] == [("a", 0, 0), ("a", 0, 1), ("a", 0, 2)]
    assert [m.o for m in groups[("a", 1)]] == [0, 1]
    assert [m.o for m in groups[("b", 0)]] == [0]
    assert [e for _, e in failed] == ["eof"]


def test_split_edge_cases() -> None:
    assert split_messages([]) == ({}, [])
    only_error = FakeMessage("a", 0, 0, err="eof")
    assert split_messages([only_error]) == ({}, [(only_error, "eof")])
    same = [FakeMessage("a", 3, i) for i in range(5)]
    assert split_messages(same) == ({("a", 3): same}, [])


@given(
    st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 3), st.booleans()), max_size=60)
)
def test_split_matches_the_per_message_loop(spec: list[tuple[str, int, bool]]) -> None:
    msgs = [FakeMessage(t, p, i, err="e" if bad else None) for i, (t, p, bad) in enumerate(spec)]
    assert split_messages(msgs) == _reference(msgs)


def test_from_messages_columns() -> None:
    msgs = [
        FakeMessage("a", 0, 5, v=b"x", k=b"k", h=[("h", b"1")]),
        FakeMessage("a", 0, 6, v=None),
    ]
    b = RecordBatch.from_messages("a", 0, msgs)
    assert b.offsets == [5, 6]
    assert b.timestamps == [1005, 1006]
    assert b.timestamp_types == [1, 1]
    assert b.keys == [b"k", None]
    assert b.values == [b"x", None]
    assert b.headers == [[("h", b"1")], None]
    assert b.value_bytes() == 2
    assert len(RecordBatch.from_messages("a", 0, [])) == 0
