"""Rotation is a pure function of writer state, policy and the injected clock."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from s3sink.rotation import (
    RotationPolicy,
    RotationReason,
    WriterState,
    rotate_interval_split,
    should_rotate,
)

HOUR = 3_600_000


def _ms(iso: str, tz: str = "UTC") -> int:
    return int(datetime.fromisoformat(iso).replace(tzinfo=ZoneInfo(tz)).timestamp() * 1000)


def test_nothing_open_never_rotates() -> None:
    policy = RotationPolicy(flush_size=1, file_max_bytes=1, schedule_interval_ms=1)
    assert should_rotate(policy, WriterState(0, 0, None, None), 10**13) is None


def test_flush_size_and_max_bytes() -> None:
    policy = RotationPolicy(flush_size=100, file_max_bytes=1000)
    assert should_rotate(policy, WriterState(99, 999, 0, 0), 0) is None
    assert should_rotate(policy, WriterState(100, 0, 0, 0), 0) is RotationReason.FLUSH_SIZE
    assert should_rotate(policy, WriterState(1, 1000, 0, 0), 0) is RotationReason.FILE_MAX_BYTES


def test_schedule_rolls_on_the_aligned_boundary_even_when_idle() -> None:
    policy = RotationPolicy(flush_size=10**9, file_max_bytes=10**12, schedule_interval_ms=HOUR)
    opened = _ms("2026-03-01T10:59:59")
    state = WriterState(5, 10, opened, opened)
    assert should_rotate(policy, state, _ms("2026-03-01T10:59:59.999")) is None
    assert should_rotate(policy, state, _ms("2026-03-01T11:00:00")) is RotationReason.SCHEDULE


def test_schedule_is_aligned_to_the_time_zone() -> None:
    # India is UTC+05:30: an hourly schedule rolls on the local hour, i.e. at :30 UTC
    policy = RotationPolicy(1, 1, schedule_interval_ms=HOUR, timezone="Asia/Kolkata")
    opened = _ms("2026-03-01T10:10:00")
    assert policy.schedule_deadline(opened) == _ms("2026-03-01T10:30:00")
    daily = RotationPolicy(1, 1, schedule_interval_ms=24 * HOUR, timezone="Europe/Paris")
    assert daily.schedule_deadline(_ms("2026-07-01T12:00:00", "Europe/Paris")) == _ms(
        "2026-07-02T00:00:00", "Europe/Paris"
    )


@given(st.integers(min_value=0, max_value=2_000_000_000_000), st.integers(1, 10 * HOUR))
def test_schedule_deadline_is_the_next_boundary(opened: int, interval: int) -> None:
    policy = RotationPolicy(1, 1, schedule_interval_ms=interval)
    deadline = policy.schedule_deadline(opened)
    assert deadline is not None
    assert opened < deadline <= opened + interval
    assert (deadline - (opened - opened % 86_400_000)) % interval == 0  # from UTC midnight


def test_rotate_interval_split_follows_confluent() -> None:
    policy = RotationPolicy(10**9, 10**12, rotate_interval_ms=1000)
    # empty files: the first record is the base; a record 1000 ms later starts a new file
    assert rotate_interval_split(policy, None, [5000, 5500, 5999, 6000, 6001]) == 3
    assert rotate_interval_split(policy, None, [5000, 5100]) is None
    # open files based at 4000: the first record already crosses
    assert rotate_interval_split(policy, 4000, [5000]) == 0
    off = RotationPolicy(10**9, 10**12)
    assert rotate_interval_split(off, 0, [10**12]) is None


@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=50), st.integers(1, 5000))
def test_rotate_interval_split_property(times: list[int], interval: int) -> None:
    policy = RotationPolicy(10**9, 10**12, rotate_interval_ms=interval)
    k = rotate_interval_split(policy, None, times)
    if k is None:
        assert all(t < times[0] + interval for t in times)
    else:
        assert k > 0
        assert times[k] >= times[0] + interval
        assert all(t < times[0] + interval for t in times[:k])
