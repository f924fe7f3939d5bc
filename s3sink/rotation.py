"""When files roll: a pure function of writer state, the policy and the injected clock.

Reasons follow the Confluent S3 sink where it has them:

* ``flush.size`` — the writer holds this many records (across its open files);
* ``file.max.bytes`` — one open file reached this many encoded bytes;
* ``rotate.interval.ms`` — record time: a record's time is this far past the time of the first
  record of the open files (that record starts the next file, as in Confluent);
* ``rotate.schedule.interval.ms`` — wall clock: the clock passed the next multiple of the
  interval (aligned to ``timezone``) after the files were opened; idle partitions roll too;
* schema change, memory pressure, revoke, shutdown and the end of a catch-up are decided by the
  caller and carry their own reason.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo


class RotationReason(enum.Enum):
    FLUSH_SIZE = "flush_size"
    FILE_MAX_BYTES = "file_max_bytes"
    ROTATE_INTERVAL = "rotate_interval"
    SCHEDULE = "schedule"
    SCHEMA_CHANGE = "schema_change"
    MEMORY = "memory"
    REVOKE = "revoke"
    SHUTDOWN = "shutdown"
    CATCHUP_END = "catchup_end"


@dataclass(frozen=True, slots=True)
class RotationPolicy:
    flush_size: int
    file_max_bytes: int
    rotate_interval_ms: int = -1
    schedule_interval_ms: int = -1
    timezone: str = "UTC"

    def schedule_deadline(self, opened_ms: int) -> int | None:
        """The wall-clock time at which files opened at ``opened_ms`` roll, if scheduled.

        The next multiple of the interval after ``opened_ms``, counted from local midnight in
        ``timezone`` (so an hourly schedule rolls on the hour in every zone, including those
        with a 30-minute offset).
        """
        interval = self.schedule_interval_ms
        if interval <= 0:
            return None
        tz = ZoneInfo(self.timezone)
        local = datetime.fromtimestamp(opened_ms / 1000, tz)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        base = int(midnight.timestamp() * 1000)
        elapsed = opened_ms - base
        return base + (elapsed // interval + 1) * interval


@dataclass(frozen=True, slots=True)
class WriterState:
    """What rotation needs to know about a writer's open files."""

    records: int
    largest_file_bytes: int
    opened_ms: int | None
    first_record_time: int | None


def should_rotate(policy: RotationPolicy, state: WriterState, now_ms: int) -> RotationReason | None:
    """The reason to roll the open files now, or ``None``. Record-time rolls are decided by
    :func:`rotate_interval_split` while appending."""
    if state.records == 0:
        return None
    if state.records >= policy.flush_size:
        return RotationReason.FLUSH_SIZE
    if state.largest_file_bytes >= policy.file_max_bytes:
        return RotationReason.FILE_MAX_BYTES
    if state.opened_ms is not None:
        deadline = policy.schedule_deadline(state.opened_ms)
        if deadline is not None and now_ms >= deadline:
            return RotationReason.SCHEDULE
    return None


def rotate_interval_split(
    policy: RotationPolicy, first_record_time: int | None, times: list[int]
) -> int | None:
    """Index of the first record that must start a new file under ``rotate.interval.ms``.

    ``first_record_time`` is the time of the first record in the open files (``None`` if they
    are empty, in which case ``times[0]`` starts them). Returns ``None`` if all fit.
    """
    interval = policy.rotate_interval_ms
    if interval <= 0 or not times:
        return None
    base = times[0] if first_record_time is None else first_record_time
    limit = base + interval
    for i, t in enumerate(times):
        if t >= limit:
            return i if i > 0 or first_record_time is not None else None
    return None
