"""Proof that readers get it right: real Kafka -> ``Sink.run(catchup=True)`` -> files read back
as users read them (DuckDB with ``hive_partitioning``, pyarrow datasets with Hive partitioning,
fastavro), asserting the exact records, the partition columns and the column types.

The matrix (format x codec x partitioner x converter):

=========  ========  =====================================  ===========  =====================
format     codec     partitioner                            converter    reader
=========  ========  =====================================  ===========  =====================
parquet    snappy    field_time (country, hourly on field)  json         DuckDB, pyarrow
parquet    zstd      hourly (Record) + _kafka metadata      avro (SR)    DuckDB, pyarrow
parquet    gzip      field (user.name)                      jsonschema   DuckDB
parquet    none      time (RecordField, 'dt'=YYYY-MM-dd)    protobuf     pyarrow
parquet    snappy    field (country), on S3 (moto)          json         pyarrow S3FS
parquet    lz4       default                                json         DuckDB, pyarrow meta
parquet    snappy    default                                string       DuckDB
json       gzip      daily (RecordField)                    json         DuckDB read_json
json       zstd      field (country) + _kafka metadata      avro (SR)    DuckDB read_json
json       none      time (Record, 'dt'=.../'hour'=HH)      json         DuckDB read_json
json       zstd      field_time (user.name, daily)          json         DuckDB read_json
json       none      default                                string       raw lines, DuckDB
avro       deflate   field (country)                        avro (SR)    fastavro
avro       zstd      hourly (Record)                        json         fastavro
avro       null      daily (RecordField)                    json         fastavro
avro       null      field_time (country, hourly on field)  json         fastavro
avro       snappy    default                                bytes        fastavro
bytearray  none      default                                bytes        raw lines
bytearray  gzip      default                                bytes        gzip (as zcat)
=========  ========  =====================================  ===========  =====================

DuckDB reads Avro only through its ``avro`` extension, which it would download: the Avro files
are read with fastavro alone. Column types are asserted as each reader reports them (DuckDB's
``DESCRIBE``, pyarrow's schema, the Avro schema in the file).
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import duckdb
import fastavro
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from partitioners.hive import unescape
from s3sink.config import parse
from s3sink.sink import Sink
from tests.rig.kafka import Deliveries, ProducerRecord, create_topic, produce, unique_name
from tests.rig.s3 import S3Endpoint
from tests.rig.schema_registry import SchemaRegistryServer
from tests.test_decoders_registry import proto_class

N = 40
HOUR = 3_600_000
BASE = 1_767_225_600_000  # 2026-01-01T00:00:00Z
COUNTRIES = ["FR", "DE", "a/b=c%", "Zürich", ""]

AVRO_SCHEMA = {
    "type": "record",
    "name": "Order",
    "namespace": "shop",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "country", "type": "string"},
        {"name": "amount", "type": "double"},
        {"name": "created_at", "type": "long"},
        {
            "name": "user",
            "type": {
                "type": "record",
                "name": "User",
                "fields": [
                    {"name": "name", "type": "string"},
                    {"name": "tags", "type": {"type": "array", "items": "string"}},
                ],
            },
        },
    ],
}
JSON_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "country": {"type": "string"},
        "amount": {"type": "number"},
        "created_at": {"type": "integer"},
        "user": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "tags": {"type": "array", "items": {"type": "string"}},
            },
        },
    },
}


def record(i: int) -> dict[str, Any]:
    return {
        "id": i,
        "country": COUNTRIES[i % len(COUNTRIES)],
        "amount": i * 1.25,
        "created_at": BASE + (i % 4) * HOUR + i * 1000,
        "user": {"name": f"u{i % 3}", "tags": ["a"] * (i % 3)},
    }


RECORDS = [record(i) for i in range(N)]


def text(r: dict[str, Any]) -> bytes:
    """A record as the JSON topic holds it (UTF-8, non-ASCII characters unescaped)."""
    return json.dumps(r, ensure_ascii=False).encode()


def inferred_avro_fields(topic: str) -> list[dict[str, Any]]:
    """The Avro fields the sink infers from the JSON records: all nullable, the nested record
    named after the topic and the field."""

    def opt(t: Any) -> Any:
        return ["null", t]

    user = {
        "type": "record",
        "name": topic.replace("-", "_") + "_user",
        "namespace": "s3sink",
        "fields": [
            {"name": "name", "type": opt("string"), "default": None},
            {
                "name": "tags",
                "type": opt({"type": "array", "items": opt("string")}),
                "default": None,
            },
        ],
    }
    return [
        {"name": "id", "type": opt("long"), "default": None},
        {"name": "country", "type": opt("string"), "default": None},
        {"name": "amount", "type": opt("double"), "default": None},
        {"name": "created_at", "type": opt("long"), "default": None},
        {"name": "user", "type": opt(user), "default": None},
    ]


CTX_NAME = "orders"


@dataclass
class Topic:
    name: str
    deliveries: Deliveries


@dataclass
class Env:
    bootstrap: str
    registry: SchemaRegistryServer
    topics: dict[str, Topic]


@pytest.fixture(scope="module")
def env(kafka_bootstrap: str) -> Iterator[Env]:
    with SchemaRegistryServer() as registry:
        client = SchemaRegistryClient({"url": registry.url})
        topics: dict[str, Topic] = {}
        ctx_for = {}
        encoders: dict[str, Any] = {
            "json": lambda r, ctx: text(r),
            "avro": AvroSerializer(client, json.dumps(AVRO_SCHEMA)),
            "jsonschema": JSONSerializer(json.dumps(JSON_SCHEMA), client),
        }
        cls = proto_class()
        proto = ProtobufSerializer(cls, client, {"use.deprecated.format": False})

        def to_proto(r: dict[str, Any], ctx: SerializationContext) -> bytes:
            m = cls(id=r["id"], status=r["id"] % 2)
            m.at.FromMilliseconds(r["created_at"])
            m.lines.add(sku=r["country"], qty=r["id"])
            return bytes(proto(m, ctx))

        encoders["protobuf"] = to_proto
        for kind, encode in encoders.items():
            name = create_topic(kafka_bootstrap, 2, prefix=f"readers-{kind}")
            ctx = SerializationContext(name, MessageField.VALUE)
            ctx_for[kind] = ctx
            recs = [
                ProducerRecord(
                    value=encode(r, ctx),
                    key=f"k{r['id']}".encode(),
                    headers=[("h", b"%d" % r["id"])],
                    timestamp_ms=r["created_at"],
                    partition=r["id"] % 2,
                )
                for r in RECORDS
            ]
            topics[kind] = Topic(name, produce(kafka_bootstrap, name, recs))
        yield Env(kafka_bootstrap, registry, topics)


def catchup(env: Env, converter: str, root: Path | None, **extra: str) -> Path:
    topic = env.topics["json" if converter in ("bytes", "string") else converter].name
    raw = {
        "name": unique_name("readers"),
        "topics": topic,
        "bootstrap.servers": env.bootstrap,
        "http.listen": "none",
        "flush.size": "15",
        "value.converter": converter,
        "value.converter.schema.registry.url": env.registry.url,
        "key.converter": "string",
    }
    if root is not None:
        raw["storage.url"] = root.as_uri()
    raw.update(extra)
    summary = Sink(parse(raw, environ={})).run(catchup=True)
    assert summary.records == N
    assert summary.bad_records == 0
    return (root or Path("/")) / "topics" / topic


def files(base: Path, suffix: str) -> list[Path]:
    out = sorted(p for p in base.rglob(f"*{suffix}") if p.is_file())
    assert out, f"no {suffix} files under {base}"
    return out


def hive_values(path: Path, base: Path) -> dict[str, str | None]:
    rel = path.relative_to(base).parts[:-1]
    return {k: unescape(v) for k, v in (seg.split("=", 1) for seg in rel if "=" in seg)}


def hour_parts(ms: int) -> dict[str, int]:
    d = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return {"year": d.year, "month": d.month, "day": d.day, "hour": d.hour}


def duck(sql: str) -> list[tuple[Any, ...]]:
    rel = duckdb.sql(sql)
    assert rel is not None
    return rel.fetchall()


def duck_types(sql: str) -> dict[str, str]:
    return {row[0]: row[1] for row in duck(f"describe {sql}")}


# -- Parquet -----------------------------------------------------------------------------------


def test_parquet_field_time_from_json(env: Env, tmp_path: Path) -> None:
    base = catchup(
        env,
        "json",
        tmp_path,
        **{
            "format.class": "parquet",
            "parquet.codec": "snappy",
            "partitioner.class": "field_time",
            "partition.field.name": "country",
            "path.format": "'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH",
            "partition.duration.ms": str(HOUR),
            "timestamp.extractor": "RecordField",
            "timestamp.field": "created_at",
        },
    )
    paths = files(base, ".snappy.parquet")
    assert all(p.name.count("+") == 2 for p in paths)
    # DuckDB infers zero-padded values (month=01) as text; the declared types fix that
    auto = duck_types(f"select * from read_parquet('{base}/**/*.parquet', hive_partitioning=true)")
    assert auto["year"] == "BIGINT" and auto["hour"] == "VARCHAR"
    sql = (
        f"select * from read_parquet('{base}/**/*.parquet', hive_partitioning=true, "
        "hive_types={'year': BIGINT, 'month': BIGINT, 'day': BIGINT, 'hour': BIGINT})"
    )
    types = duck_types(sql)
    assert types["id"] == "BIGINT"
    assert types["amount"] == "DOUBLE"
    assert types["user"] == 'STRUCT("name" VARCHAR, tags VARCHAR[])'
    assert types["year"] == "BIGINT" and types["hour"] == "BIGINT"
    rows = duck(
        "select id, country, amount, created_at, user.name, user.tags, year, month, day, hour "
        f"from ({sql}) order by id"
    )
    expected = [
        (
            r["id"],
            r["country"] or None,
            r["amount"],
            r["created_at"],
            r["user"]["name"],
            r["user"]["tags"],
            *hour_parts(r["created_at"]).values(),
        )
        for r in RECORDS
    ]
    assert rows == expected
    # pyarrow's dataset discovery reads the same
    part = ds.partitioning(
        pa.schema(
            [
                ("country", pa.string()),
                ("year", pa.int32()),
                ("month", pa.int32()),
                ("day", pa.int32()),
                ("hour", pa.int32()),
            ]
        ),
        flavor="hive",
    )
    table = ds.dataset(base, format="parquet", partitioning=part).to_table()
    got = sorted(
        zip(
            table["id"].to_pylist(),
            table["country"].to_pylist(),
            table["hour"].to_pylist(),
            strict=True,
        )
    )
    assert got == [
        (r["id"], r["country"] or None, hour_parts(r["created_at"])["hour"]) for r in RECORDS
    ]


def test_parquet_hourly_avro_with_metadata(env: Env, tmp_path: Path) -> None:
    base = catchup(
        env,
        "avro",
        tmp_path,
        **{
            "format.class": "io.confluent.connect.s3.format.parquet.ParquetFormat",
            "parquet.codec": "zstd",
            "partitioner.class": "io.confluent.connect.storage.partitioner.HourlyPartitioner",
            "timestamp.extractor": "Record",
            "store.kafka.metadata": "true",
        },
    )
    files(base, ".zstd.parquet")
    sql = (
        f"select * from read_parquet('{base}/**/*.parquet', hive_partitioning=true, "
        "hive_types={'hour': INTEGER})"
    )
    rows = duck(
        "select id, user.tags, _kafka.partition, _kafka.offset, _kafka.key, "
        "epoch_ms(_kafka.timestamp), "
        f"_kafka.timestamp_type, _kafka.headers[1].value, hour from ({sql}) order by id"
    )
    where = {d.seq: d for d in env.topics["avro"].deliveries}
    assert rows == [
        (
            r["id"], r["user"]["tags"], where[r["id"]].partition, where[r["id"]].offset,
            f"k{r['id']}",
            r["created_at"], "CreateTime", b"%d" % r["id"], hour_parts(r["created_at"])["hour"],
        )
        for r in RECORDS
    ]  # fmt: skip
    types = duck_types(sql)
    assert types["id"] == "BIGINT"
    assert types["_kafka"].startswith(
        'STRUCT(topic VARCHAR, "partition" INTEGER, "offset" BIGINT, '
        '"timestamp" TIMESTAMP WITH TIME ZONE'
    )


def test_parquet_field_jsonschema(env: Env, tmp_path: Path) -> None:
    base = catchup(
        env,
        "jsonschema",
        tmp_path,
        **{
            "format.class": "parquet",
            "parquet.codec": "gzip",
            "partitioner.class": "field",
            "partition.field.name": "user.name",
        },
    )
    files(base, ".gz.parquet")
    assert sorted(p.name for p in base.iterdir()) == [
        "user.name=u0",
        "user.name=u1",
        "user.name=u2",
    ]
    sql = f"select * from read_parquet('{base}/**/*.parquet', hive_partitioning=true)"
    rows = duck(f'select id, "user.name", user.name, amount from ({sql}) order by id')
    assert rows == [(r["id"], r["user"]["name"], r["user"]["name"], r["amount"]) for r in RECORDS]
    # the registered JSON schema's types: integer -> BIGINT, number -> DOUBLE
    assert duck_types(sql) == {
        "id": "BIGINT",
        "country": "VARCHAR",
        "amount": "DOUBLE",
        "created_at": "BIGINT",
        "user": 'STRUCT("name" VARCHAR, tags VARCHAR[])',
        "user.name": "VARCHAR",
    }


def test_parquet_time_protobuf(env: Env, tmp_path: Path) -> None:
    base = catchup(
        env,
        "protobuf",
        tmp_path,
        **{
            "format.class": "parquet",
            "parquet.codec": "none",
            "partitioner.class": "time",
            "path.format": "'dt'=YYYY-MM-dd",
            "timestamp.extractor": "RecordField",
            "timestamp.field": "at",
        },
    )
    paths = files(base, ".parquet")
    assert all(".snappy" not in p.name for p in paths)
    table = ds.dataset(
        base,
        format="parquet",
        partitioning=ds.partitioning(pa.schema([("dt", pa.string())]), flavor="hive"),
    ).to_table()
    assert table.schema.field("at").type == pa.timestamp("us", "UTC")
    assert table.schema.field("status").type == pa.string()
    table = table.sort_by("id")
    assert table["id"].to_pylist() == [r["id"] for r in RECORDS]
    assert table["dt"].to_pylist() == ["2026-01-01"] * N
    assert table["status"].to_pylist() == ["DONE" if r["id"] % 2 else "NEW" for r in RECORDS]
    assert [x[0]["sku"] for x in table["lines"].to_pylist()] == [r["country"] for r in RECORDS]


def test_parquet_on_s3_read_by_pyarrow(env: Env, s3_endpoint: S3Endpoint, s3_bucket: str) -> None:
    """The same files through a real S3 endpoint, read by pyarrow's S3 filesystem."""
    from pyarrow import fs

    catchup(
        env,
        "json",
        None,
        **{
            "s3.bucket.name": s3_bucket,
            "store.url": s3_endpoint.url,
            "s3.region": s3_endpoint.region,
            "s3.path.style.access.enabled": "true",
            "aws.access.key.id": s3_endpoint.access_key,
            "aws.secret.access.key": s3_endpoint.secret_key,
            "format.class": "parquet",
            "partitioner.class": "field",
            "partition.field.name": "country",
        },
    )
    url = urlparse(s3_endpoint.url)
    s3 = fs.S3FileSystem(
        access_key=s3_endpoint.access_key,
        secret_key=s3_endpoint.secret_key,
        region=s3_endpoint.region,
        endpoint_override=url.netloc,
        scheme=url.scheme,
    )
    topic = env.topics["json"].name
    part = ds.partitioning(pa.schema([("country", pa.string())]), flavor="hive")
    table = ds.dataset(
        f"{s3_bucket}/topics/{topic}", filesystem=s3, format="parquet", partitioning=part
    ).to_table()
    got = sorted(zip(table["id"].to_pylist(), table["country"].to_pylist(), strict=True))
    assert got == [(r["id"], r["country"] or None) for r in RECORDS]
    listing = s3.get_file_info(fs.FileSelector(f"{s3_bucket}/_s3sink", recursive=True))
    assert any("/log/" in i.path for i in listing)  # the commit log, outside the table


def test_parquet_lz4_default(env: Env, tmp_path: Path) -> None:
    base = catchup(env, "json", tmp_path, **{"format.class": "parquet", "parquet.codec": "lz4"})
    paths = files(base, ".lz4.parquet")
    assert {p.parent.name for p in paths} == {"partition=0", "partition=1"}
    codecs = {pq.ParquetFile(p).metadata.row_group(0).column(0).compression for p in paths}
    assert codecs <= {"LZ4", "LZ4_RAW"} and codecs, codecs
    sql = f"select * from read_parquet('{base}/**/*.parquet', hive_partitioning=true)"
    assert duck_types(sql) == {
        "id": "BIGINT",
        "country": "VARCHAR",
        "amount": "DOUBLE",
        "created_at": "BIGINT",
        "user": 'STRUCT("name" VARCHAR, tags VARCHAR[])',
        "partition": "BIGINT",
    }
    rows = duck(
        "select id, country, amount, created_at, user.name, user.tags, partition "
        f"from ({sql}) order by id"
    )
    assert rows == [
        (
            r["id"], r["country"], r["amount"], r["created_at"], r["user"]["name"],
            r["user"]["tags"], r["id"] % 2,
        )
        for r in RECORDS
    ]  # fmt: skip


@pytest.mark.parametrize("fmt", ["parquet", "json"])
def test_string_converter(env: Env, tmp_path: Path, fmt: str) -> None:
    """``value.converter=string``: Parquet holds one text column ``value``; JSON lines hold the
    text as it was produced (here JSON documents, which DuckDB then reads as records)."""
    base = catchup(env, "string", tmp_path, **{"format.class": fmt})
    texts = [text(r).decode() for r in RECORDS]
    if fmt == "parquet":
        sql = f"select * from read_parquet('{base}/**/*.parquet', hive_partitioning=true)"
        assert duck_types(sql) == {"value": "VARCHAR", "partition": "BIGINT"}
        rows = duck(f"select value, partition from ({sql})")
        assert sorted(rows) == sorted((t, r["id"] % 2) for t, r in zip(texts, RECORDS, strict=True))
        assert any("Zürich" in v for v, _ in rows)  # decoded as UTF-8 text
    else:
        paths = files(base, ".json")
        lines = [line for p in paths for line in p.read_bytes().splitlines()]
        assert sorted(lines) == sorted(text(r) for r in RECORDS)
        sql = f"select * from read_json_auto('{base}/**/*.json', hive_partitioning=true)"
        types = duck_types(sql)
        assert (types["id"], types["amount"], types["partition"]) == ("BIGINT", "DOUBLE", "BIGINT")
        rows = duck(f"select id, country, partition from ({sql}) order by id")
        assert rows == [(r["id"], r["country"], r["id"] % 2) for r in RECORDS]


# -- JSON --------------------------------------------------------------------------------------


def test_json_daily_gzip(env: Env, tmp_path: Path) -> None:
    base = catchup(
        env,
        "json",
        tmp_path,
        **{
            "format.class": "io.confluent.connect.s3.format.json.JsonFormat",
            "s3.compression.type": "gzip",
            "partitioner.class": "daily",
            "timestamp.extractor": "RecordField",
            "timestamp.field": "created_at",
        },
    )
    paths = files(base, ".json.gz")
    assert {p.parent.relative_to(base).as_posix() for p in paths} == {"year=2026/month=01/day=01"}
    sql = (
        f"select * from read_json_auto('{base}/**/*.json.gz', hive_partitioning=true, "
        "hive_types={'year': BIGINT, 'month': BIGINT, 'day': BIGINT})"
    )
    types = duck_types(sql)
    assert types["id"] == "BIGINT" and types["amount"] == "DOUBLE" and types["day"] == "BIGINT"
    rows = duck(f"select id, country, amount, user.name, year, month, day from ({sql}) order by id")
    assert rows == [
        (r["id"], r["country"], r["amount"], r["user"]["name"], 2026, 1, 1) for r in RECORDS
    ]
    # original bytes, one record per line
    lines = [line for p in paths for line in gzip.decompress(p.read_bytes()).splitlines()]
    assert sorted(lines) == sorted(text(r) for r in RECORDS)


def test_json_field_from_avro_with_metadata(env: Env, tmp_path: Path) -> None:
    base = catchup(
        env,
        "avro",
        tmp_path,
        **{
            "format.class": "json",
            "s3.compression.type": "zstd",
            "partitioner.class": "field",
            "partition.field.name": "country",
            "store.kafka.metadata": "true",
        },
    )
    files(base, ".json.zst")
    sql = f"select * from read_json_auto('{base}/**/*.json.zst', hive_partitioning=true)"
    assert duck_types(sql) == {
        "value": (
            "STRUCT(id BIGINT, country VARCHAR, amount DOUBLE, created_at BIGINT, "
            '"user" STRUCT("name" VARCHAR, tags VARCHAR[]))'
        ),
        "_kafka": (
            'STRUCT(topic VARCHAR, "partition" BIGINT, "offset" BIGINT, "timestamp" BIGINT, '
            'timestamp_type VARCHAR, "key" VARCHAR, '
            'headers STRUCT("key" VARCHAR, "value" VARCHAR)[])'
        ),
        "country": "VARCHAR",
    }
    rows = duck(
        "select value.id, value.country, value.amount, value.created_at, value.user.name, "
        "value.user.tags, country, _kafka.partition, _kafka.offset, _kafka.key, "
        f"_kafka.timestamp, _kafka.headers[1].value from ({sql}) order by value.id"
    )
    where = {d.seq: d for d in env.topics["avro"].deliveries}
    assert rows == [
        (
            r["id"], r["country"], r["amount"], r["created_at"], r["user"]["name"],
            r["user"]["tags"], r["country"] or None, where[r["id"]].partition,
            where[r["id"]].offset, f"k{r['id']}", r["created_at"],
            base64.b64encode(b"%d" % r["id"]).decode(),
        )
        for r in RECORDS
    ]  # fmt: skip


def test_json_time_uncompressed(env: Env, tmp_path: Path) -> None:
    base = catchup(
        env,
        "json",
        tmp_path,
        **{
            "format.class": "json",
            "s3.compression.type": "none",
            "partitioner.class": "time",
            "path.format": "'dt'=YYYY-MM-dd/'hour'=HH",
            "partition.duration.ms": str(HOUR),
            "timestamp.extractor": "Record",
        },
    )
    paths = files(base, ".json")
    assert {p.parent.relative_to(base).as_posix() for p in paths} == {
        f"dt=2026-01-01/hour={h:02d}" for h in range(4)
    }
    sql = f"select * from read_json_auto('{base}/**/*.json', hive_partitioning=true)"
    types = duck_types(sql)
    assert types == {
        "id": "BIGINT",
        "country": "VARCHAR",
        "amount": "DOUBLE",
        "created_at": "BIGINT",
        "user": 'STRUCT("name" VARCHAR, tags VARCHAR[])',
        "dt": "DATE",
        "hour": "VARCHAR",  # zero-padded: text unless hive_types says otherwise
    }
    rows = duck(f"select id, country, amount, user.tags, dt, hour from ({sql}) order by id")
    assert rows == [
        (
            r["id"], r["country"], r["amount"], r["user"]["tags"], dt.date(2026, 1, 1),
            f"{hour_parts(r['created_at'])['hour']:02d}",
        )
        for r in RECORDS
    ]  # fmt: skip
    lines = [line for p in paths for line in p.read_bytes().splitlines()]
    assert sorted(lines) == sorted(text(r) for r in RECORDS)


def test_json_field_time_zstd(env: Env, tmp_path: Path) -> None:
    base = catchup(
        env,
        "json",
        tmp_path,
        **{
            "format.class": "json",
            "s3.compression.type": "zstd",
            "partitioner.class": "field_time",
            "partition.field.name": "user.name",
            "path.format": "'day'=YYYYMMdd",
            "partition.duration.ms": str(24 * HOUR),
            "timestamp.extractor": "RecordField",
            "timestamp.field": "created_at",
        },
    )
    paths = files(base, ".json.zst")
    assert {p.parent.relative_to(base).as_posix() for p in paths} == {
        f"user.name=u{i}/day=20260101" for i in range(3)
    }
    sql = (
        f"select * from read_json_auto('{base}/**/*.json.zst', hive_partitioning=true, "
        "hive_types={'day': INTEGER})"
    )
    types = duck_types(sql)
    assert types["id"] == "BIGINT" and types["user"] == 'STRUCT("name" VARCHAR, tags VARCHAR[])'
    assert types["user.name"] == "VARCHAR" and types["day"] == "INTEGER"
    rows = duck(f'select id, user.name, "user.name", day from ({sql}) order by id')
    assert rows == [(r["id"], r["user"]["name"], r["user"]["name"], 20260101) for r in RECORDS]


# -- Avro --------------------------------------------------------------------------------------


def avro_rows(base: Path, suffix: str = ".avro") -> list[tuple[Any, dict[str, str | None], Any]]:
    out = []
    for p in files(base, suffix):
        with p.open("rb") as f:
            reader: Any = fastavro.reader(f)
            for rec in reader:
                out.append((rec, hive_values(p, base), json.loads(reader.metadata["avro.schema"])))
    return out


def test_avro_field_from_registry(env: Env, tmp_path: Path) -> None:
    base = catchup(
        env,
        "avro",
        tmp_path,
        **{
            "format.class": "io.confluent.connect.s3.format.avro.AvroFormat",
            "avro.codec": "deflate",
            "partitioner.class": "field",
            "partition.field.name": "country",
        },
    )
    rows = sorted(avro_rows(base), key=lambda x: x[0]["id"])
    assert [r[0] for r in rows] == RECORDS
    assert [r[1]["country"] for r in rows] == [r["country"] or None for r in RECORDS]
    assert rows[0][2] == AVRO_SCHEMA  # the registry schema, as registered
    assert {p.read_bytes()[:4] for p in files(base, ".avro")} == {b"Obj\x01"}


def test_avro_hourly_from_json(env: Env, tmp_path: Path) -> None:
    base = catchup(
        env,
        "json",
        tmp_path,
        **{
            "format.class": "avro",
            "avro.codec": "zstd",
            "partitioner.class": "hourly",
            "timestamp.extractor": "Record",
        },
    )
    rows = sorted(avro_rows(base), key=lambda x: x[0]["id"])
    assert [r[0] for r in rows] == RECORDS
    assert [{k: int(v or 0) for k, v in r[1].items()} for r in rows] == [
        hour_parts(r["created_at"]) for r in RECORDS
    ]
    # the schema inferred from the JSON values: nullable fields, nested record, array
    assert rows[0][2]["fields"] == inferred_avro_fields(env.topics["json"].name)


@pytest.mark.parametrize("partitioner", ["daily", "field_time"])
def test_avro_null_codec(env: Env, tmp_path: Path, partitioner: str) -> None:
    """Uncompressed Avro (fastavro; DuckDB reads Avro only through an extension it would have
    to download, so it is not a reader here)."""
    extra = {
        "format.class": "avro",
        "avro.codec": "null",
        "partitioner.class": partitioner,
        "timestamp.extractor": "RecordField",
        "timestamp.field": "created_at",
    }
    if partitioner == "field_time":
        extra |= {
            "partition.field.name": "country",
            "path.format": "'hour'=HH",
            "partition.duration.ms": str(HOUR),
        }
    base = catchup(env, "json", tmp_path, **extra)
    for p in files(base, ".avro"):
        with p.open("rb") as f:
            assert fastavro.reader(f).codec == "null"
    rows = sorted(avro_rows(base), key=lambda x: x[0]["id"])
    assert [r[0] for r in rows] == RECORDS
    want: list[dict[str, str | None]]
    if partitioner == "daily":
        want = [{"year": "2026", "month": "01", "day": "01"}] * N
    else:
        want = [
            {"country": r["country"] or None, "hour": f"{hour_parts(r['created_at'])['hour']:02d}"}
            for r in RECORDS
        ]
    assert [r[1] for r in rows] == want
    assert {json.dumps(r[2]) for r in rows} == {json.dumps(rows[0][2])}  # one schema
    assert rows[0][2]["fields"] == inferred_avro_fields(env.topics["json"].name)


def test_avro_raw_bytes_snappy(env: Env, tmp_path: Path) -> None:
    base = catchup(env, "bytes", tmp_path, **{"format.class": "avro", "avro.codec": "snappy"})
    rows = avro_rows(base)
    assert rows[0][2] == "bytes"
    assert sorted(json.loads(r[0])["id"] for r in rows) == list(range(N))
    assert {r[1]["partition"] for r in rows} == {"0", "1"}


def test_bytearray(env: Env, tmp_path: Path) -> None:
    base = catchup(
        env, "bytes", tmp_path, **{"format.class": "bytearray", "format.bytearray.separator": "\\n"}
    )
    lines = [line for p in files(base, ".bin") for line in p.read_bytes().splitlines()]
    assert sorted(lines) == sorted(text(r) for r in RECORDS)


def test_bytearray_gzip(env: Env, tmp_path: Path) -> None:
    base = catchup(
        env,
        "bytes",
        tmp_path,
        **{"format.class": "bytearray", "s3.compression.type": "gzip", "flush.size": "7"},
    )
    paths = files(base, ".bin.gz")
    assert {p.parent.name for p in paths} == {"partition=0", "partition=1"}
    by_partition: dict[str, list[bytes]] = {}
    for p in paths:  # as zcat reads them: one gzip stream per file
        by_partition.setdefault(p.parent.name, []).extend(
            gzip.decompress(p.read_bytes()).splitlines()
        )
    for part, lines in by_partition.items():
        assert sorted(lines) == sorted(
            text(r) for r in RECORDS if f"partition={r['id'] % 2}" == part
        )


def test_partition_column_types_match_ddl(env: Env, tmp_path: Path) -> None:
    """What ``partition_columns()`` declares (for DDL) is what DuckDB infers from the paths."""
    from partitioners import load_partitioner

    config = {
        "format.class": "parquet",
        "partitioner.class": "field_time",
        "partition.field.name": "country",
        "path.format": "'year'=YYYY/'month'=MM/'dt'=YYYY-MM-dd",
        "timestamp.extractor": "RecordField",
        "timestamp.field": "created_at",
    }
    base = catchup(env, "json", tmp_path, **config)
    sql = (
        f"select * from read_parquet('{base}/**/*.parquet', hive_partitioning=true, "
        "hive_types={'year': BIGINT, 'month': BIGINT})"
    )
    types = duck_types(sql)
    cfg = parse(
        {"bootstrap.servers": "x", "topics": "t", "storage.url": "file:///x", **config}, environ={}
    )
    declared = {c.name: c.type for c in load_partitioner(cfg).partition_columns()}
    assert declared == {"country": "string", "year": "int", "month": "int", "dt": "string"}
    assert types["year"] == types["month"] == "BIGINT"
    assert types["dt"] in ("DATE", "VARCHAR")  # DuckDB may read ISO dates as DATE
    assert types["country"] == "VARCHAR"
    assert duck(f"select count(*), count(distinct dt), min(month) from ({sql})") == [(N, 1, 1)]
