"""Spark reads the sink's Avro output, with partition discovery and through ``s3sink ddl``.

The sink archives a real topic to the filesystem backend (``storage.url=file:///...``) as Avro
object container files (``format.class=avro`` from schemaless JSON, so the Avro schema is
inferred), with the default partitioner (``partition=<n>``) and the time partitioner
(``dt=YYYY-MM-dd/hour=HH``), under several ``avro.codec`` values. Spark (pyspark in local mode,
with the spark-avro jar from Maven Central, :func:`tests.rig.spark.ensure_spark_avro_jar`) then
reads it twice, as users do:

* ``spark.read.format("avro").load(<topics.dir>/<topic>)``: partition discovery finds the
  partition columns with Spark's inferred types (``partition`` int; ``dt`` date, ``hour`` int);
* the statements of ``s3sink ddl --engine spark`` (``CREATE TABLE ... USING avro OPTIONS
  (avroSchema ...)``, then ``MSCK REPAIR TABLE``): every partition directory is registered and
  the partition columns have the DDL's types (``partition`` int; ``dt``/``hour`` strings).

Both must give back exactly the produced records (every field of every record, each once) and,
for each record, the partition its Kafka partition or its time says; with
``store.kafka.metadata`` the ``_kafka`` column carries the record's partition, offset and
timestamp.

The jar is resolved on first use and cached under ``$S3SINK_CACHE_DIR/spark/<version>/``.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from s3sink import cli
from s3sink.config import parse
from s3sink.sink import Sink
from tests.rig.kafka import create_topic, produce_n, unique_name
from tests.rig.spark import AvroJar, ensure_spark_avro_jar, local_session, statements

pytest.importorskip("pyspark", reason="pyspark is a dev dependency (needs Java 17)")

pytestmark = pytest.mark.slow

N = 600
PARTITIONS = 3
HOUR_MS = 3_600_000
TIME_FORMAT = "'dt'=YYYY-MM-dd/'hour'=HH"

#: id -> (name, score, tags, (lat, lon))
Record = tuple[str, float, list[str], tuple[float, float]]


def _record(i: int) -> dict[str, Any]:
    return {
        "id": i,
        "name": f"user-{i}",
        "score": i / 4,
        "tags": ["a", "b"][: i % 3],
        "geo": {"lat": 48.85 + i / 1000, "lon": 2.35},
    }


def _expected(i: int) -> Record:
    r = _record(i)
    return (r["name"], r["score"], r["tags"], (r["geo"]["lat"], r["geo"]["lon"]))


@pytest.fixture(scope="module")
def avro_jar() -> AvroJar:
    started = time.monotonic()
    jar = ensure_spark_avro_jar()
    print(
        f"[figures] spark-avro jar {jar.path} (pyspark {jar.wanted}; "
        f"{'exact' if jar.exact else jar.note}) in {time.monotonic() - started:.1f}s",
        flush=True,
    )
    return jar


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory, avro_jar: AvroJar) -> Iterator[Any]:
    session = local_session(
        "s3sink-avro", tmp_path_factory.mktemp("spark-warehouse"), [avro_jar.path]
    )
    yield session
    session.stop()
    # release the Java objects' Python proxies now, while py4j's connection is fresh (its
    # finalizer thread otherwise logs a reset connection during a later test)
    gc.collect()


def _base_hour() -> int:
    """Three hours ago, on the hour (inside the topic's retention)."""
    now = int(time.time() * 1000)
    return now - now % HOUR_MS - 3 * HOUR_MS


def _timestamp(base: int, i: int) -> int:
    """Each Kafka partition spans the three hours (its records alternate between them)."""
    return base + ((i // PARTITIONS) % 3) * HOUR_MS + i


@pytest.fixture(scope="module")
def topic(kafka_bootstrap: str) -> tuple[str, int]:
    """A topic with N records over three partitions x three hours; returns (topic, base)."""
    name = create_topic(kafka_bootstrap, PARTITIONS, prefix="spark-avro")
    base = _base_hour()
    produce_n(
        kafka_bootstrap,
        name,
        N,
        value=lambda i: json.dumps(_record(i)).encode(),
        partition=lambda i: i % PARTITIONS,
        timestamp_ms=lambda i: _timestamp(base, i),
    )
    return name, base


def _config(
    kafka_bootstrap: str, topic: str, store: Path, partitioner: str, codec: str, metadata: bool
) -> dict[str, str]:
    raw = {
        "name": unique_name("spark-avro"),
        "topics": topic,
        "bootstrap.servers": kafka_bootstrap,
        "storage.url": store.as_uri(),
        "value.converter": "json",
        "format.class": "avro",
        "avro.codec": codec,
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


def _hour(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _rows(df: Any, partition_columns: list[str]) -> dict[int, tuple[Record, tuple[Any, ...]]]:
    """id -> (record fields, partition column values); fails on a duplicate id."""
    out: dict[int, tuple[Record, tuple[Any, ...]]] = {}
    cols = ["id", "name", "score", "tags", "geo.lat", "geo.lon", *partition_columns]
    for row in df.select(*cols).collect():
        i = int(row[0])
        assert i not in out, f"id {i} read twice"
        record: Record = (row[1], row[2], list(row[3]), (row[4], row[5]))
        out[i] = (record, tuple(row[6:]))
    return out


def _check_records(
    got: dict[int, tuple[Record, tuple[Any, ...]]], partition_of: Any, where: str
) -> None:
    assert sorted(got) == list(range(N)), f"{where}: ids differ from the produced 0..{N - 1}"
    wrong_record = [i for i in range(N) if got[i][0] != _expected(i)]
    assert not wrong_record, (
        f"{where}: {len(wrong_record)} records differ, e.g. id {wrong_record[0]}: "
        f"{got[wrong_record[0]][0]} != {_expected(wrong_record[0])}"
    )
    wrong_partition = [i for i in range(N) if got[i][1] != partition_of(i)]
    assert not wrong_partition, (
        f"{where}: {len(wrong_partition)} records in the wrong partition, e.g. id "
        f"{wrong_partition[0]}: {got[wrong_partition[0]][1]} != {partition_of(wrong_partition[0])}"
    )


def _check_metadata(df: Any, base: int, where: str) -> None:
    rows = df.selectExpr(
        "id", "_kafka.partition", "_kafka.offset", "unix_millis(_kafka.timestamp)"
    ).collect()
    got = {int(r[0]): (r[1], r[2], r[3]) for r in rows}
    want = {i: (i % PARTITIONS, i // PARTITIONS, _timestamp(base, i)) for i in range(N)}
    assert got == want, f"{where}: _kafka (partition, offset, timestamp) differ"


@pytest.mark.parametrize(
    ("partitioner", "codec", "metadata"),
    [
        ("default", "snappy", True),
        ("time", "deflate", False),
        ("time", "zstd", True),
    ],
)
def test_spark_reads_avro_output(
    spark: Any,
    topic: tuple[str, int],
    kafka_bootstrap: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    partitioner: str,
    codec: str,
    metadata: bool,
) -> None:
    name, base = topic
    store = tmp_path / "store"
    raw = _config(kafka_bootstrap, name, store, partitioner, codec, metadata)
    summary = Sink(parse(raw, environ={})).run(catchup=True)
    assert summary.bad_records == 0
    root = store / "topics" / name
    files = sorted(p for p in root.rglob("*") if p.is_file())
    assert files, f"no output under {root}"
    assert all(p.name.endswith(".avro") for p in files), [p.name for p in files]

    # -- 1. the directory, with partition discovery -------------------------------------------
    df = spark.read.format("avro").load(root.as_uri())
    types = {f.name: f.dataType.simpleString() for f in df.schema.fields}
    assert types["id"] == "bigint"
    assert types["name"] == "string"
    assert types["score"] == "double"
    assert types["tags"] == "array<string>"
    assert types["geo"] == "struct<lat:double,lon:double>"
    if partitioner == "default":
        assert types["partition"] == "int"
        discovered_cols = ["partition"]

        def discovered(i: int) -> tuple[Any, ...]:
            return (i % PARTITIONS,)
    else:
        assert (types["dt"], types["hour"]) == ("date", "int")
        discovered_cols = ["dt", "hour"]

        def discovered(i: int) -> tuple[Any, ...]:
            d = _hour(_timestamp(base, i))
            return (date(d.year, d.month, d.day), d.hour)

    _check_records(_rows(df, discovered_cols), discovered, "spark.read.format('avro')")
    if metadata:
        assert "_kafka" in types
        _check_metadata(df, base, "spark.read.format('avro')")

    # -- 2. the table of `s3sink ddl --engine spark`, partitions by MSCK REPAIR TABLE ----------
    config = tmp_path / "sink.json"
    config.write_text(json.dumps(raw))
    table = f"avro_{partitioner}_{codec}"
    assert cli.main(["ddl", "-c", str(config), "--engine", "spark", "--table", table]) == 0
    create, *rest = statements(capsys.readouterr().out)
    assert create.startswith(f"CREATE TABLE `{table}`")
    assert "USING avro" in create
    assert f"LOCATION '{store.as_uri()}/topics/{name}/'" in create
    spark.sql(create)
    assert rest == [f"MSCK REPAIR TABLE `{table}`"]
    spark.sql(rest[0])
    partitions = {r[0] for r in spark.sql(f"SHOW PARTITIONS {table}").collect()}
    if partitioner == "default":
        assert partitions == {f"partition={p}" for p in range(PARTITIONS)}
        table_cols = ["partition"]

        def in_table(i: int) -> tuple[Any, ...]:
            return (i % PARTITIONS,)
    else:
        table_cols = ["dt", "hour"]

        def in_table(i: int) -> tuple[Any, ...]:
            d = _hour(_timestamp(base, i))
            return (d.strftime("%Y-%m-%d"), d.strftime("%H"))

        assert partitions == {"dt={}/hour={}".format(*in_table(i)) for i in range(N)}
    table_df = spark.table(table)
    table_types = {f.name: f.dataType.simpleString() for f in table_df.schema.fields}
    assert [table_types[c] for c in table_cols] == (
        ["int"] if partitioner == "default" else ["string", "string"]
    )
    _check_records(_rows(table_df, table_cols), in_table, f"table {table}")
    if metadata:
        _check_metadata(table_df, base, f"table {table}")
    print(
        f"[figures] spark avro {partitioner}/{codec}{'/metadata' if metadata else ''}: "
        f"{len(files)} files, {N} records, {len(partitions)} partitions read exactly",
        flush=True,
    )


def test_spark_reads_a_backup_through_the_ddl(
    spark: Any,
    topic: tuple[str, int],
    kafka_bootstrap: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``format.class=backup`` files through the table of ``s3sink ddl --engine spark``: every
    record once, with its topic, partition, offset, timestamp and value bytes."""
    name, base = topic
    store = tmp_path / "store"
    raw = _config(kafka_bootstrap, name, store, "default", "deflate", False)
    raw["format.class"] = "backup"
    raw.pop("store.kafka.metadata")
    summary = Sink(parse(raw, environ={})).run(catchup=True)
    assert summary.bad_records == 0
    config = tmp_path / "sink.json"
    config.write_text(json.dumps(raw))
    assert cli.main(["ddl", "-c", str(config), "--engine", "spark", "--table", "backup_t"]) == 0
    out = capsys.readouterr().out
    assert "backup files are Avro with a fixed schema" in out
    create, *rest = statements(out)
    assert "USING avro" in create
    spark.sql(create)
    for statement in rest:
        spark.sql(statement)
    df = spark.table("backup_t")
    types = {f.name: f.dataType.simpleString() for f in df.schema.fields}
    assert types["value"] == "binary"
    assert types["offset"] == "bigint"
    rows = df.selectExpr(
        "topic", "`partition`", "offset", "timestamp", "timestamp_type", "value"
    ).collect()
    got = {(r[1], r[2]): (r[0], r[3], r[4], bytes(r[5])) for r in rows}
    assert len(rows) == N == len(got)
    want = {
        (i % PARTITIONS, i // PARTITIONS): (
            name,
            _timestamp(base, i),
            "CreateTime",
            json.dumps(_record(i)).encode(),
        )
        for i in range(N)
    }
    assert got == want
