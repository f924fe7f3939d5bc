"""The Spark variant of ``s3sink ddl``, run in pyspark (local mode) over real sink output.

The sink archives a real topic to the filesystem backend (``storage.url=file:///...``) as
Parquet and as JSON lines, with the default partitioner (``partition=<n>``) and the time
partitioner (``dt=YYYY-MM-dd/hour=HH``). For each, the statements ``s3sink ddl --engine spark``
prints are executed as they are: the table starts without partitions, ``MSCK REPAIR TABLE``
finds every partition directory, ``count(*)`` and the distinct ids equal what was produced, and
the partition column values equal what the records' times and partitions say. Another test
archives a later hour and checks that ``ALTER TABLE ... RECOVER PARTITIONS`` finds it. Without
any DDL, ``spark.read.parquet(root)`` and ``spark.read.json(root)`` discover the partition columns
from the paths, with the values DuckDB and pyarrow find for each record.

One SparkSession serves the module (about 10 s to start on two cores).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from s3sink import cli
from s3sink.config import parse
from s3sink.sink import Sink
from tests.rig.kafka import create_topic, produce_n, unique_name

pyspark = pytest.importorskip("pyspark", reason="pyspark is a dev dependency (needs Java 17)")

pytestmark = pytest.mark.slow

N = 600
PARTITIONS = 3
HOUR_MS = 3_600_000
TIME_FORMAT = "'dt'=YYYY-MM-dd/'hour'=HH"


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from pyspark.sql import SparkSession

    warehouse = tmp_path_factory.mktemp("spark-warehouse")
    session = (
        SparkSession.builder.master("local[2]")
        .appName("s3sink-ddl")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.memory", "768m")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.warehouse.dir", warehouse.as_uri())
        .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={warehouse}")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def _base_hour() -> int:
    """Three hours ago, on the hour (inside the topic's retention)."""
    now = int(time.time() * 1000)
    return now - now % HOUR_MS - 3 * HOUR_MS


@pytest.fixture(scope="module")
def topic(kafka_bootstrap: str) -> tuple[str, int]:
    """A topic with N records over three partitions and three hours; returns (topic, base)."""
    name = create_topic(kafka_bootstrap, PARTITIONS)
    base = _base_hour()

    def value(i: int) -> bytes:
        return json.dumps(
            {
                "id": i,
                "name": f"user-{i}",
                "score": i / 4,
                "tags": ["a", "b"][: i % 3],
                "geo": {"lat": 48.85, "lon": 2.35},
            }
        ).encode()

    produce_n(
        kafka_bootstrap,
        name,
        N,
        value=value,
        partition=lambda i: i % PARTITIONS,
        timestamp_ms=lambda i: base + (i % 3) * HOUR_MS + i,
    )
    return name, base


def _hour_key(ms: int) -> tuple[str, str]:
    d = datetime.fromtimestamp(ms / 1000, UTC)
    return d.strftime("%Y-%m-%d"), d.strftime("%H")


def _archive(raw: dict[str, str]) -> None:
    summary = Sink(parse(raw, environ={})).run(catchup=True)
    assert summary.bad_records == 0


def _config(
    kafka_bootstrap: str, topic: str, store: Path, fmt: str, partitioner: str, metadata: bool
) -> dict[str, str]:
    raw = {
        "name": unique_name("spark"),
        "topics": topic,
        "bootstrap.servers": kafka_bootstrap,
        "storage.url": store.as_uri(),
        "value.converter": "json",
        "format.class": fmt,
        "flush.size": "150",
        "http.listen": "none",
        "store.kafka.metadata": str(metadata).lower(),
    }
    if partitioner == "time":
        raw.update(
            {
                "partitioner.class": "time",
                "path.format": TIME_FORMAT,
                "partition.duration.ms": str(HOUR_MS),
                "timestamp.extractor": "Record",
            }
        )
    return raw


def _ddl(config: Path, table: str, capsys: pytest.CaptureFixture[str]) -> list[str]:
    assert cli.main(["ddl", "-c", str(config), "--engine", "spark", "--table", table]) == 0
    text = capsys.readouterr().out
    body = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def _partitions(spark: Any, table: str) -> set[str]:
    return {r[0] for r in spark.sql(f"SHOW PARTITIONS {table}").collect()}


@pytest.mark.parametrize(
    ("fmt", "partitioner", "metadata"),
    [
        ("parquet", "default", True),
        ("parquet", "time", False),
        ("json", "default", False),
        ("json", "time", True),
    ],
)
def test_spark_reads_the_output_through_the_ddl(
    spark: Any,
    topic: tuple[str, int],
    kafka_bootstrap: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fmt: str,
    partitioner: str,
    metadata: bool,
) -> None:
    name, base = topic
    store = tmp_path / "store"
    raw = _config(kafka_bootstrap, name, store, fmt, partitioner, metadata)
    config = tmp_path / "sink.json"
    config.write_text(json.dumps(raw))
    _archive(raw)
    table = f"{fmt}_{partitioner}"

    create, *rest = _ddl(config, table, capsys)
    assert create.startswith(f"CREATE TABLE `{table}`")
    assert f"LOCATION '{store.as_uri()}/topics/{name}/'" in create
    spark.sql(create)
    assert _partitions(spark, table) == set()
    assert rest == [f"MSCK REPAIR TABLE `{table}`"]
    spark.sql(rest[0])

    # JSON lines with store.kafka.metadata are {"value": <record>, "_kafka": {...}}
    v = "value." if (fmt, metadata) == ("json", True) else ""
    if partitioner == "default":
        expected = {f"partition={p}" for p in range(PARTITIONS)}
        column = "`partition`"
    else:
        expected = {"dt={}/hour={}".format(*_hour_key(base + (i % 3) * HOUR_MS)) for i in range(N)}
        column = "concat('dt=', dt, '/hour=', hour)"
    assert _partitions(spark, table) == expected
    row = spark.sql(
        f"SELECT count(*), count(DISTINCT {v}id), min({v}id), max({v}id), sum(size({v}tags)), "
        f"max({v}geo.lat), collect_set({column}) FROM {table}"
    ).collect()[0]
    assert (row[0], row[1], row[2], row[3]) == (N, N, 0, N - 1)
    assert row[4] == sum(len(["a", "b"][: i % 3]) for i in range(N))
    assert row[5] == pytest.approx(48.85)
    values = {str(v) for v in row[6]}
    assert values == {e.replace("partition=", "") for e in expected}
    # the partition a record sits in is the one its Kafka partition / time says
    if partitioner == "default":
        wrong = spark.sql(f"SELECT count(*) FROM {table} WHERE {v}id % {PARTITIONS} != `partition`")
    else:
        wrong = spark.sql(
            f"SELECT count(*) FROM {table} WHERE CAST(hour AS INT) != "
            f"hour(timestamp_millis({base} + ({v}id % 3) * {HOUR_MS} + {v}id))"
        )
    assert wrong.collect()[0][0] == 0
    if metadata:
        kafka = spark.sql(
            f"SELECT count(DISTINCT _kafka.partition, _kafka.offset), min(_kafka.offset), "
            f"max(_kafka.timestamp) FROM {table}"
        ).collect()[0]
        assert kafka[0] == N and kafka[1] == 0 and kafka[2] is not None


def test_recover_partitions_finds_a_new_hour(
    spark: Any, kafka_bootstrap: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = create_topic(kafka_bootstrap, 2)
    base = _base_hour()

    def produce(first: int, n: int, at: int) -> None:
        produce_n(
            kafka_bootstrap,
            name,
            n,
            value=lambda i: json.dumps({"id": first + i, "name": "x"}).encode(),
            partition=lambda i: i % 2,
            timestamp_ms=lambda i: at + i,
        )

    produce(0, 20, base)
    store = tmp_path / "store"
    raw = _config(kafka_bootstrap, name, store, "parquet", "time", False)
    config = tmp_path / "sink.json"
    config.write_text(json.dumps(raw))
    _archive(raw)
    table = "recover_time"
    for statement in _ddl(config, table, capsys):
        spark.sql(statement)
    first = "dt={}/hour={}".format(*_hour_key(base))
    assert _partitions(spark, table) == {first}

    later = base + HOUR_MS
    produce(20, 6, later)
    _archive(raw)
    assert _partitions(spark, table) == {first}
    spark.sql(f"ALTER TABLE {table} RECOVER PARTITIONS")
    dt, hour = _hour_key(later)
    assert _partitions(spark, table) == {first, f"dt={dt}/hour={hour}"}
    row = spark.sql(
        f"SELECT count(*), min(id) FROM {table} WHERE dt = '{dt}' AND hour = '{hour}'"
    ).collect()[0]
    assert (row[0], row[1]) == (6, 20)
    assert spark.sql(f"SELECT count(*) FROM {table}").collect()[0][0] == 26


@pytest.mark.parametrize("fmt", ["parquet", "json"])
def test_spark_discovers_the_partitions_of_a_directory(
    spark: Any, topic: tuple[str, int], kafka_bootstrap: str, tmp_path: Path, fmt: str
) -> None:
    """``spark.read.parquet(root)`` / ``spark.read.json(root)`` without a table: Spark's own
    partition discovery finds ``dt`` and ``hour`` in the paths, with the same values (per
    record) as DuckDB's and pyarrow's Hive discovery."""
    import duckdb
    import pyarrow as pa
    import pyarrow.dataset as ds
    from pyspark.sql import types as T

    name, base = topic
    store = tmp_path / "store"
    _archive(_config(kafka_bootstrap, name, store, fmt, "time", False))
    root = store / "topics" / name

    df = getattr(spark.read, fmt)(root.as_uri())
    fields = {f.name: f.dataType for f in df.schema.fields}
    assert list(fields)[-2:] == ["dt", "hour"]  # partition columns come last
    assert isinstance(fields["dt"], T.DateType)
    assert isinstance(fields["hour"], T.IntegerType)  # '05' read as 5
    assert isinstance(fields["id"], T.LongType)
    spark_rows = sorted(
        (r["id"], r["dt"], r["hour"]) for r in df.select("id", "dt", "hour").collect()
    )
    expected = []
    for i in range(N):
        d = datetime.fromtimestamp((base + (i % 3) * HOUR_MS + i) / 1000, UTC)
        expected.append((i, d.date(), d.hour))
    assert spark_rows == expected

    scan = "read_parquet" if fmt == "parquet" else "read_json_auto"
    ext = "parquet" if fmt == "parquet" else "json"
    rel = duckdb.sql(
        f"select id, dt, hour from {scan}('{root}/**/*.{ext}', hive_partitioning=true, "
        "hive_types={'dt': DATE, 'hour': INTEGER}) order by id"
    )
    assert rel is not None
    assert rel.fetchall() == spark_rows

    part = ds.partitioning(pa.schema([("dt", pa.date32()), ("hour", pa.int32())]), flavor="hive")
    table = ds.dataset(root, format=fmt, partitioning=part).to_table(columns=["id", "dt", "hour"])
    assert sorted(zip(*(table[c].to_pylist() for c in ("id", "dt", "hour")), strict=True)) == (
        spark_rows
    )
