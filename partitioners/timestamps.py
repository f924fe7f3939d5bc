"""Record times for the time partitioners (``timestamp.extractor``), computed per batch.

* ``Record``: the Kafka record timestamp. A record without one (-1) is an error.
* ``RecordField``: ``timestamp.field`` of the decoded value (dots for nested fields):
  Arrow timestamps and dates as they are; integers and floats as epoch values in
  ``timestamp.field.unit`` (``auto`` picks s/ms/us/ns by magnitude); strings as ISO-8601
  (``2024-05-03T07:00:00Z``, ``2024-05-03T09:00:00+02:00``, ``2024-05-03``; a time without an
  offset is read in ``timezone``) or as digits (epoch, as for integers). A null, missing or
  unparseable value is an error for that record, never an exception.
* ``Wallclock``: the injected clock (``now_ms``).

All results are epoch milliseconds (UTC) in an ``int64`` Arrow array, null where the record has
an error (reasons in the returned dict).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc

from partitioners.fields import get_field

#: Python's datetime range (years 1..9999, a day of margin for time zones), in epoch ms:
#: times outside cannot be formatted.
MIN_MS = -62_135_596_800_000 + 86_400_000
MAX_MS = 253_402_300_799_999 - 86_400_000

_SCALE_TO_MS = {"s": 1000.0, "ms": 1.0, "us": 1e-3, "ns": 1e-6}


def record_timestamps(
    timestamps: list[int], timestamp_types: list[int]
) -> tuple[pa.Array, dict[int, str]]:
    arr = pa.array(timestamps, pa.int64())
    bad = pc.or_(pc.less(arr, 0), pc.greater(arr, MAX_MS))
    if not pc.any(bad).as_py():
        return arr, {}
    errors = {
        i: "the record has no timestamp (timestamp.extractor=Record)"
        if timestamps[i] < 0
        else "the record timestamp is beyond the year 9999"
        for i in pc.indices_nonzero(bad).to_pylist()
    }
    return pc.if_else(bad, pa.scalar(None, pa.int64()), arr), errors


def field_timestamps(
    values: pa.Table | None, name: str, unit: str, zone: ZoneInfo, n: int
) -> tuple[pa.Array, dict[int, str]]:
    if values is None:
        reason = (
            "the record value is not decoded: set value.converter (json, avro, ...) to use "
            "timestamp.extractor=RecordField"
        )
        return pa.nulls(n, pa.int64()), dict.fromkeys(range(n), reason)
    col = get_field(values, name)
    if col is None:
        return pa.nulls(n, pa.int64()), dict.fromkeys(range(n), f"no field {name!r} in the record")
    ms, errors = to_epoch_ms(col, unit, zone)
    if ms.null_count > len(errors):
        valid = col.is_valid().to_pylist()
        for i in pc.indices_nonzero(pc.is_null(ms)).to_pylist():
            reason = "is out of range (years 1 to 9999)" if valid[i] else "is null"
            errors.setdefault(i, f"timestamp field {name!r} {reason}")
    ms, errors = _check_range(ms, errors, name)
    return ms, errors


def _check_range(
    ms: pa.Array, errors: dict[int, str], name: str
) -> tuple[pa.Array, dict[int, str]]:
    out = pc.or_(pc.less(ms, MIN_MS), pc.greater(ms, MAX_MS))
    if pc.any(out).as_py():
        for i in pc.indices_nonzero(pc.fill_null(out, False)).to_pylist():
            errors[i] = f"timestamp field {name!r} is out of range (years 1 to 9999)"
        ms = pc.if_else(pc.fill_null(out, False), pa.scalar(None, pa.int64()), ms)
    return ms, errors


def to_epoch_ms(col: pa.Array, unit: str, zone: ZoneInfo) -> tuple[pa.Array, dict[int, str]]:
    """Epoch milliseconds of a column of times; unparseable entries are null with a reason."""
    t = col.type
    if pa.types.is_dictionary(t):
        col = col.cast(t.value_type)
        t = col.type
    if pa.types.is_timestamp(t):
        return _floor_ms(col.cast(pa.int64()), t.unit), {}
    if pa.types.is_date(t):
        return col.cast(pa.timestamp("ms")).cast(pa.int64()), {}
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return _epoch_numbers(col, unit), {}
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return _parse_strings(col.cast(pa.string()), unit, zone)
    reason = f"a {t} value is not a time"
    return pa.nulls(len(col), pa.int64()), {
        i: reason for i in pc.indices_nonzero(pc.is_valid(col)).to_pylist()
    }


_PER_MS = {"s": None, "ms": 1, "us": 1000, "ns": 1_000_000}


def _floor_ms(ticks: pa.Array, unit: str) -> pa.Array:
    """Epoch ms of int64 ticks in ``unit``, rounded down (also before 1970)."""
    if unit == "s":
        return pc.multiply(ticks, 1000)
    k = _PER_MS[unit] or 1
    if k == 1:
        return ticks
    q = pc.divide(ticks, k)  # truncates toward zero
    return pc.if_else(pc.greater(pc.multiply(q, k), ticks), pc.subtract(q, 1), q)


def _epoch_numbers(col: pa.Array, unit: str) -> pa.Array:
    x = col.cast(pa.float64(), safe=False)
    if unit == "auto":
        mag = pc.abs(x)
        scale = pc.if_else(
            pc.less(mag, 1e11),
            1000.0,
            pc.if_else(pc.less(mag, 1e14), 1.0, pc.if_else(pc.less(mag, 1e17), 1e-3, 1e-6)),
        )
    else:
        scale = pa.scalar(_SCALE_TO_MS[unit])
    if pa.types.is_integer(col.type) and unit == "ms":
        return col.cast(pa.int64())  # exact, whatever the magnitude (range checked later)
    ms = pc.floor(pc.multiply(x, scale))
    ok = pc.and_(pc.greater_equal(ms, float(MIN_MS)), pc.less_equal(ms, float(MAX_MS)))
    ms = pc.if_else(ok, ms, pa.scalar(None, pa.float64()))
    return ms.cast(pa.int64())


def _parse_strings(col: pa.Array, unit: str, zone: ZoneInfo) -> tuple[pa.Array, dict[int, str]]:
    try:  # fast path: every string has a zone offset (or Z)
        ns = col.cast(pa.timestamp("ns", "UTC"))
        return _floor_ms(ns.cast(pa.int64()), "ns"), {}
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    errors: dict[int, str] = {}
    encoded = col.dictionary_encode()
    out: list[int | None] = []
    for s in encoded.dictionary.to_pylist():
        out.append(parse_time_text(s, unit, zone))
    ms = pa.array(out, pa.int64()).take(encoded.indices)
    bad = pc.and_(pc.is_valid(col), pc.is_null(ms))
    for i in pc.indices_nonzero(bad).to_pylist():
        errors[i] = f"cannot parse {_clip(col[i].as_py())!r} as a time"
    return ms, errors


def parse_time_text(s: str, unit: str, zone: ZoneInfo) -> int | None:
    """Epoch ms of an ISO-8601 string (zone-less in ``zone``) or of an epoch in digits."""
    text = s.strip()
    if not text:
        return None
    if text.lstrip("-").isdigit():
        try:
            arr = _epoch_numbers(pa.array([int(text)], pa.int64()), unit)
        except (OverflowError, pa.ArrowInvalid):  # beyond int64
            return None
        v = arr[0].as_py()
        return None if v is None else int(v)
    if text.endswith(("z", "Z")):
        text = text[:-1] + "+00:00"
    try:
        d = datetime.fromisoformat(text)
    except ValueError:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=zone)
    try:
        return (d - _EPOCH) // _MS
    except OverflowError:
        return None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def _clip(s: object) -> str:
    text = str(s)
    return text if len(text) <= 60 else text[:57] + "..."
