"""``time``, ``hourly``, ``daily`` and ``field_time``: directories from record time.

As Confluent's ``TimeBasedPartitioner``: the record time (``timestamp.extractor``) is turned
into local time in ``timezone``, floored to a multiple of ``partition.duration.ms`` (counted
from the local epoch, so daily buckets start at local midnight), and the bucket start is
formatted with ``path.format`` (Joda syntax, see :mod:`partitioners.joda`). Without
``partition.duration.ms`` the bucket is the finest unit ``path.format`` shows (an hour for
``HH``). ``hourly`` and ``daily`` fix ``path.format`` to
``'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH`` (``/'hour'=HH`` dropped for ``daily``) and the
duration to an hour or a day. ``field_time`` puts the ``field`` directories first:
``country=FR/year=2024/month=05/day=03/hour=07``.

The work per batch is Arrow kernels plus one ``format`` call per distinct bucket. A record
without a usable time is reported in ``Encoded.errors`` (handled by ``errors.tolerance``); a
tombstone (``behavior.on.null.values=write``) has no fields, so ``RecordField`` places it by its
Kafka timestamp.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, ClassVar
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc

from partitioners.base import Encoded, PartitionColumn
from partitioners.field import FieldEncoder, to_encoded
from partitioners.joda import JodaPattern
from partitioners.timestamps import field_timestamps, record_timestamps
from s3sink.errors import ConfigError

if TYPE_CHECKING:
    from s3sink.config import SinkConfig
    from s3sink.records import RecordBatch

HOURLY_FORMAT = "'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH"
DAILY_FORMAT = "'year'=YYYY/'month'=MM/'day'=dd"
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
_LOCAL_EPOCH = datetime(1970, 1, 1)
_UTC_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class TimeEncoder:
    """Record times -> formatted bucket directories."""

    def __init__(self, config: SinkConfig, path_format: str | None, duration_ms: int) -> None:
        if not path_format:
            raise ConfigError(
                "path.format: required with partitioner.class=time, e.g. "
                f"{HOURLY_FORMAT} (or use partitioner.class=hourly or daily)",
                key="path.format",
            )
        self.pattern = JodaPattern.compile(path_format, config.locale)
        self.zone = ZoneInfo(config.timezone)
        self.extractor = config.timestamp_extractor
        self.field = config.timestamp_field
        self.unit = config.timestamp_field_unit
        if self.extractor == "RecordField" and not self.field:
            raise ConfigError(
                "timestamp.field: required with timestamp.extractor=RecordField",
                key="timestamp.field",
            )
        self.width = duration_ms if duration_ms > 0 else self.pattern.finest_unit_ms()
        self._utc = config.timezone in ("UTC", "Etc/UTC", "GMT", "Z")
        self._memo: tuple[RecordBatch, pa.Table | None, int, pa.Array, dict[int, str]] | None = None

    def needs_values(self) -> bool:
        return self.extractor == "RecordField"

    def times(
        self, batch: RecordBatch, values: pa.Table | None, now_ms: int
    ) -> tuple[pa.Array, dict[int, str]]:
        """Epoch ms per record (null where the record has an error) and the errors."""
        memo = self._memo
        if memo is not None and memo[0] is batch and memo[1] is values and memo[2] == now_ms:
            return memo[3], memo[4]
        n = len(batch)
        if self.extractor == "Wallclock":
            arr, errors = pa.array([now_ms] * n, pa.int64()), dict[int, str]()
        elif self.extractor == "Record":
            arr, errors = record_timestamps(batch.timestamps, batch.timestamp_types)
        else:
            arr, errors = field_timestamps(values, self.field or "", self.unit, self.zone, n)
            if errors and None in batch.values:
                arr, errors = _tombstones_by_record_time(batch, arr, errors)
        self._memo = (batch, values, now_ms, arr, errors)
        return arr, errors

    def format(self, times: pa.Array) -> pa.Array:
        """The formatted bucket of every time (null stays null)."""
        local = times if self._utc else self._to_local(times)
        w = self.width
        bucket = pc.subtract(local, _floor_mod(local, w))
        encoded = bucket.dictionary_encode()
        texts = [
            None
            if b is None
            else self.pattern.format(_LOCAL_EPOCH + timedelta(milliseconds=b), self.zone)
            for b in encoded.dictionary.to_pylist()
        ]
        return pa.array(texts, pa.string()).take(encoded.indices)

    def _to_local(self, times: pa.Array) -> pa.Array:
        """Local wall-clock ms in ``timezone``. Offsets come from Python's zoneinfo, once per
        distinct minute (Arrow's time zone code gets DST wrong after 2037)."""
        minutes = pc.subtract(times, _floor_mod(times, 60_000))
        encoded = minutes.dictionary_encode()
        offsets = [
            None if m is None else self._offset_ms(m) for m in encoded.dictionary.to_pylist()
        ]
        return pc.add(times, pa.array(offsets, pa.int64()).take(encoded.indices))

    def _offset_ms(self, epoch_ms: int) -> int:
        aware = (_UTC_EPOCH + timedelta(milliseconds=epoch_ms)).astimezone(self.zone)
        return (aware.utcoffset() or timedelta(0)) // timedelta(milliseconds=1)

    def encode_one(self, now_ms: int) -> str:
        out = self.format(pa.array([now_ms], pa.int64()))[0].as_py()
        return str(out)

    def record_times(
        self, batch: RecordBatch, values: pa.Table | None, now_ms: int
    ) -> Sequence[int] | None:
        if self.extractor == "Record":
            return None
        if self.extractor == "Wallclock":
            return [now_ms] * len(batch)
        arr, errors = self.times(batch, values, now_ms)
        if not errors:
            out: list[int] = arr.to_pylist()
            return out
        fallback = pa.array(batch.timestamps, pa.int64())
        filled: list[int] = pc.coalesce(arr, fallback).to_pylist()
        return filled

    def columns(self) -> tuple[PartitionColumn, ...]:
        return tuple(
            PartitionColumn(name, "int" if numeric else "string")
            for name, numeric in self.pattern.segments()
            if name
        )


def _tombstones_by_record_time(
    batch: RecordBatch, arr: pa.Array, errors: dict[int, str]
) -> tuple[pa.Array, dict[int, str]]:
    """A tombstone has no fields: it is placed by its Kafka timestamp instead."""
    times = arr.to_pylist()
    for i, v in enumerate(batch.values):
        if v is None and i in errors and batch.timestamps[i] >= 0:
            times[i] = batch.timestamps[i]
            del errors[i]
    return pa.array(times, pa.int64()), errors


def _floor_mod(x: pa.Array, w: int) -> pa.Array:
    """``x mod w`` in [0, w) also for negative ``x`` (times before 1970)."""
    r = pc.subtract(x, pc.multiply(pc.divide(x, w), w))  # truncating division
    return pc.if_else(pc.less(r, 0), pc.add(r, w), r)


class TimeBasedPartitioner:
    name: ClassVar[str] = "time"
    _format: ClassVar[str | None] = None
    _duration: ClassVar[int | None] = None

    def __init__(self, config: SinkConfig) -> None:
        path_format = self._format or config.path_format
        duration = self._duration if self._duration is not None else config.partition_duration_ms
        self._time = TimeEncoder(config, path_format, duration)

    def needs_values(self) -> bool:
        return self._time.needs_values()

    def encode(self, batch: RecordBatch, values: pa.Table | None, now_ms: int) -> Encoded:
        if self._time.extractor == "Wallclock":
            return Encoded(self._time.encode_one(now_ms))
        times, errors = self._time.times(batch, values, now_ms)
        return to_encoded(self._time.format(times), errors)

    def record_times(
        self, batch: RecordBatch, values: pa.Table | None, now_ms: int
    ) -> Sequence[int] | None:
        return self._time.record_times(batch, values, now_ms)

    def path(self, topic: str, encoded: str) -> str:
        return f"{topic}/{encoded}"

    def partition_columns(self) -> Sequence[PartitionColumn]:
        return self._time.columns()


class HourlyPartitioner(TimeBasedPartitioner):
    name: ClassVar[str] = "hourly"
    _format = HOURLY_FORMAT
    _duration = HOUR_MS


class DailyPartitioner(TimeBasedPartitioner):
    name: ClassVar[str] = "daily"
    _format = DAILY_FORMAT
    _duration = DAY_MS


class FieldTimePartitioner:
    """``field_time``: ``partition.field.name`` directories, then the time directories."""

    name: ClassVar[str] = "field_time"

    def __init__(self, config: SinkConfig) -> None:
        self._fields = FieldEncoder(config.partition_field_name, self.name)
        self._time = TimeEncoder(config, config.path_format, config.partition_duration_ms)

    def needs_values(self) -> bool:
        return True

    def encode(self, batch: RecordBatch, values: pa.Table | None, now_ms: int) -> Encoded:
        fields, errors = self._fields.encode(len(batch), values)
        times, terrors = self._time.times(batch, values, now_ms)
        for i, reason in terrors.items():
            errors.setdefault(i, reason)
        paths = pc.binary_join_element_wise(fields, self._time.format(times), "/")
        return to_encoded(paths, errors)

    def record_times(
        self, batch: RecordBatch, values: pa.Table | None, now_ms: int
    ) -> Sequence[int] | None:
        return self._time.record_times(batch, values, now_ms)

    def path(self, topic: str, encoded: str) -> str:
        return f"{topic}/{encoded}"

    def partition_columns(self) -> Sequence[PartitionColumn]:
        return (
            *(PartitionColumn(f, "string") for f in self._fields.fields),
            *self._time.columns(),
        )
