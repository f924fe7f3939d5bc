"""Time partitioners: extractors, Joda path formats, durations, time zones, locales, errors."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from partitioners import load_partitioner
from partitioners.base import Encoded
from partitioners.joda import JodaPattern
from partitioners.timestamps import parse_time_text, to_epoch_ms
from s3sink.config import SinkConfig
from s3sink.errors import ConfigError
from s3sink.records import RecordBatch

T0 = 1_714_719_600_000  # 2024-05-03T07:00:00Z, a Friday


def ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0, tz: str = "UTC") -> int:
    return int(dt.datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(tz)).timestamp() * 1000)


def cfg(**kw: Any) -> SinkConfig:
    base: dict[str, Any] = {"partitioner_class": "time", "timestamp_extractor": "Record"}
    return SinkConfig(bootstrap_servers="127.0.0.1:9", **(base | kw))


def batch(timestamps: list[int]) -> RecordBatch:
    n = len(timestamps)
    return RecordBatch(
        "t", 0, list(range(n)), timestamps, [1] * n, [None] * n, [b"{}"] * n, [None] * n
    )


def paths(enc: Encoded, n: int) -> list[str | None]:
    return [enc.partitions] * n if isinstance(enc.partitions, str) else list(enc.partitions)


def encode(
    config: SinkConfig, timestamps: list[int], values: pa.Table | None = None, now: int = T0
) -> list[str | None]:
    enc = load_partitioner(config).encode(batch(timestamps), values, now)
    return paths(enc, len(timestamps))


def test_hourly_and_daily() -> None:
    ts = [T0, T0 + 59 * 60_000, T0 + 3_600_000, ms(2024, 12, 31, 23, 59)]
    assert encode(cfg(partitioner_class="hourly"), ts) == [
        "year=2024/month=05/day=03/hour=07",
        "year=2024/month=05/day=03/hour=07",
        "year=2024/month=05/day=03/hour=08",
        "year=2024/month=12/day=31/hour=23",
    ]
    assert encode(cfg(partitioner_class="daily"), ts[:1]) == ["year=2024/month=05/day=03"]


def test_timezone_and_dst() -> None:
    # Europe/Paris: 2024-03-31 02:00 -> 03:00 (UTC+1 -> UTC+2)
    before = ms(2024, 3, 31, 0, 30)  # 01:30 local
    after = ms(2024, 3, 31, 1, 30)  # 03:30 local
    assert encode(cfg(partitioner_class="hourly", timezone="Europe/Paris"), [before, after]) == [
        "year=2024/month=03/day=31/hour=01",
        "year=2024/month=03/day=31/hour=03",
    ]
    # daily buckets start at local midnight
    late = ms(2024, 5, 3, 23, 30)
    assert encode(cfg(partitioner_class="daily", timezone="Asia/Tokyo"), [late]) == [
        "year=2024/month=05/day=04"
    ]
    assert encode(
        cfg(partitioner_class="daily", timezone="America/Los_Angeles"), [ms(2024, 5, 3, 5)]
    ) == ["year=2024/month=05/day=02"]


def test_partition_duration_buckets() -> None:
    config = cfg(path_format="'dt'=YYYY-MM-dd/'t'=HHmm", partition_duration_ms=15 * 60_000)
    ts = [ms(2024, 5, 3, 7, 14), ms(2024, 5, 3, 7, 15), ms(2024, 5, 3, 7, 59)]
    assert encode(config, ts) == [
        "dt=2024-05-03/t=0700",
        "dt=2024-05-03/t=0715",
        "dt=2024-05-03/t=0745",
    ]
    # without a duration: the finest unit of the format (minutes here)
    assert encode(cfg(path_format="HHmm"), ts) == ["0714", "0715", "0759"]


def test_times_before_1970() -> None:
    config = cfg(
        partitioner_class="daily",
        timestamp_extractor="RecordField",
        timestamp_field="at",
        timestamp_field_unit="ms",
    )
    values = pa.table({"at": [ms(1969, 12, 31, 23, 59)]})
    assert encode(config, [0], values) == ["year=1969/month=12/day=31"]


def test_joda_tokens() -> None:
    d = dt.datetime(2024, 5, 3, 7, 8, 9, 123456)
    cases = {
        "YYYY yy MM M dd d": "2024 24 05 5 03 3",
        "HH H hh h KK kk a": "07 7 07 7 07 07 AM",
        "mm ss SSS S": "08 09 123 1",
        "DDD e EEE EEEE MMM MMMM": "124 5 Fri Friday May May",
        "xxxx ww": "2024 18",
        "'quoted ''text''' G C": "quoted 'text' AD 20",
        "yyyy/MM/dd'T'HH": "2024/05/03T07",
    }
    for pattern, expected in cases.items():
        assert JodaPattern.compile(pattern).format(d) == expected, pattern
    assert (
        JodaPattern.compile("Z ZZ ZZZ z").format(d, ZoneInfo("Europe/Paris"))
        == "+0200 +02:00 Europe/Paris CEST"
    )
    assert JodaPattern.compile("hh a").format(dt.datetime(2024, 1, 1, 0)) == "12 AM"
    assert JodaPattern.compile("kk").format(dt.datetime(2024, 1, 1, 0)) == "24"


def test_locale() -> None:
    d = dt.datetime(2024, 5, 3)
    assert JodaPattern.compile("EEEE d MMMM", "fr-FR").format(d) == "vendredi 3 mai"
    assert JodaPattern.compile("EEE MMM", "de_DE").format(d) == "Fr. Mai"
    assert encode(cfg(path_format="'m'=MMM", locale="es"), [T0]) == ["m=may"]
    with pytest.raises(ConfigError, match="locale"):
        JodaPattern.compile("MMMM", "xx-YY")
    assert JodaPattern.compile("MM", "xx-YY").format(d) == "05"  # numbers need no names


@pytest.mark.parametrize("bad", ["'open", "YYYY/qq", "'year'=YYYY/'b'=BB"])
def test_bad_path_format(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"path\.format"):
        load_partitioner(cfg(path_format=bad))


def test_partition_columns() -> None:
    p = load_partitioner(cfg(path_format="'year'=YYYY/'date'=YYYY-MM-dd/HH/'m'=MMM"))
    assert [(c.name, c.type) for c in p.partition_columns()] == [
        ("year", "int"),
        ("date", "string"),
        ("m", "string"),
    ]


# -- extractors -----------------------------------------------------------------------------


def test_record_extractor_errors() -> None:
    enc = load_partitioner(cfg(partitioner_class="hourly")).encode(batch([T0, -1]), None, T0)
    assert paths(enc, 2)[1] is None
    assert "no timestamp" in enc.errors[1]


def test_wallclock_uses_the_injected_clock() -> None:
    p = load_partitioner(cfg(partitioner_class="hourly", timestamp_extractor="Wallclock"))
    assert p.encode(batch([0, -1]), None, T0).partitions == "year=2024/month=05/day=03/hour=07"
    assert p.record_times(batch([0, -1]), None, T0) == [T0, T0]


def field_cfg(**kw: Any) -> SinkConfig:
    return cfg(
        partitioner_class="hourly", timestamp_extractor="RecordField", timestamp_field="e.at", **kw
    )


def nested(col: pa.Array) -> pa.Table:
    return pa.table({"e": pa.StructArray.from_arrays([col], names=["at"])})


@pytest.mark.parametrize(
    "col",
    [
        pa.array([T0]),
        pa.array([T0 // 1000]),  # epoch seconds (auto)
        pa.array([T0 * 1000]),  # microseconds (auto)
        pa.array([T0 * 1_000_000]),  # nanoseconds (auto)
        pa.array([T0 / 1000 + 0.5]),  # float seconds
        pa.array(["2024-05-03T07:00:00Z"]),
        pa.array(["2024-05-03T09:00:00.5+02:00"]),
        pa.array(["2024-05-03T07:00:00"]),  # no offset: the timezone (UTC)
        pa.array([str(T0)]),  # digits
        pa.array([T0], pa.timestamp("ms", "UTC")),
        pa.array([T0 * 1000], pa.timestamp("us")),
    ],
)
def test_record_field_forms(col: pa.Array) -> None:
    p = load_partitioner(field_cfg())
    assert p.encode(batch([0]), nested(col), T0).partitions == "year=2024/month=05/day=03/hour=07"


def test_record_field_units() -> None:
    assert encode(field_cfg(timestamp_field_unit="s"), [0], nested(pa.array([T0 // 1000]))) == [
        "year=2024/month=05/day=03/hour=07"
    ]
    assert encode(field_cfg(timestamp_field_unit="ms"), [0], nested(pa.array([5]))) == [
        "year=1970/month=01/day=01/hour=00"
    ]


def test_record_field_local_strings_use_the_timezone() -> None:
    config = field_cfg(timezone="Europe/Paris")
    assert encode(config, [0], nested(pa.array(["2024-05-03T09:30:00"]))) == [
        "year=2024/month=05/day=03/hour=09"
    ]


def test_record_field_errors() -> None:
    p = load_partitioner(field_cfg())
    col = pa.array(["2024-05-03T07:00:00Z", None, "tomorrow", "2024-02-30"])
    enc = p.encode(batch([T0] * 4), nested(col), T0)
    assert sorted(enc.errors) == [1, 2, 3]
    assert "is null" in enc.errors[1]
    assert "tomorrow" in enc.errors[2]
    # record_times falls back to the Kafka timestamp for records in error
    assert p.record_times(batch([T0 + 1] * 4), nested(col), T0) == [T0, T0 + 1, T0 + 1, T0 + 1]
    missing = p.encode(batch([T0]), pa.table({"x": [1]}), T0)
    assert "no field" in missing.errors[0]
    huge = p.encode(batch([T0]), nested(pa.array([1e30])), T0)
    assert "out of range" in huge.errors[0]


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(
        min_value=dt.datetime(1900, 1, 1),
        max_value=dt.datetime(2200, 1, 1),
        timezones=st.sampled_from([dt.UTC, ZoneInfo("Europe/Paris"), ZoneInfo("America/St_Johns")]),
    )
)
def test_iso_strings_round_trip(d: dt.datetime) -> None:
    """Vectorized and per-value parsing agree with Python for ISO-8601 strings."""
    expected = (d - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)
    text = d.isoformat()
    got, errors = to_epoch_ms(pa.array([text]), "auto", ZoneInfo("UTC"))
    assert not errors
    assert got[0].as_py() == expected
    assert parse_time_text(text, "auto", ZoneInfo("UTC")) == expected


@settings(max_examples=100, deadline=None)
@given(
    t=st.integers(min_value=ms(1900, 1, 1), max_value=ms(2200, 1, 1)),
    zone=st.sampled_from(["UTC", "Europe/Paris", "Asia/Kathmandu", "America/St_Johns"]),
)
def test_hourly_matches_python(t: int, zone: str) -> None:
    local = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=t)
    expected = local.astimezone(ZoneInfo(zone)).strftime("year=%Y/month=%m/day=%d/hour=%H")
    config = cfg(
        partitioner_class="hourly",
        timezone=zone,
        timestamp_extractor="RecordField",
        timestamp_field="at",
        timestamp_field_unit="ms",
    )
    assert encode(config, [0], pa.table({"at": [t]})) == [expected]


def test_tombstones_keep_the_time_partitioning() -> None:
    p = load_partitioner(field_cfg())
    b = batch([T0, T0 + 3 * 3_600_000])
    b.values[1] = None
    col = pa.array(["2024-05-03T07:00:00Z", None])
    enc = p.encode(b, nested(col), T0)
    assert not enc.errors
    assert paths(enc, 2) == [
        "year=2024/month=05/day=03/hour=07",
        "year=2024/month=05/day=03/hour=10",
    ]


def test_dst_after_2037_and_extreme_times() -> None:
    """Offsets come from zoneinfo (Arrow's tz code misses DST rules after 2037)."""
    config = field_cfg(timezone="Europe/Paris", timestamp_field_unit="ms")
    t = ms(2039, 3, 27, 1)  # the spring-forward instant: 03:00 local
    assert encode(config, [0], nested(pa.array([t]))) == ["year=2039/month=03/day=27/hour=03"]
    edge = [ms(9999, 12, 29), ms(1, 1, 3), 2**62]
    enc = load_partitioner(config).encode(batch([0, 0, 0]), nested(pa.array(edge)), T0)
    assert paths(enc, 3)[:2] == [
        "year=9999/month=12/day=29/hour=01",
        "year=0001/month=01/day=03/hour=00",
    ]
    assert list(enc.errors) == [2]
    record = load_partitioner(cfg(partitioner_class="hourly", timezone="Pacific/Kiritimati"))
    far = record.encode(batch([2**62]), None, T0)
    assert "9999" in far.errors[0]
