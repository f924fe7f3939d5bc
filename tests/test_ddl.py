"""``s3sink ddl``: columns from committed output, partitions and projection, three dialects.

* Every Athena statement parses with sqlglot (``athena`` and ``hive`` dialects), every Trino
  statement with the ``trino`` dialect; the parsed partition columns, table properties, SerDe
  and location are compared with what ``terraform/modules/table-layout`` computes for the same
  sink config (:func:`tests.test_terraform.terraform_table_layout`, evaluated with ``terraform
  console``), so a table made by ``s3sink ddl`` and the Glue table made by Terraform agree.
* Columns come from the newest committed file (Parquet footer, Avro header, JSON lines), found
  through the commit log; end to end against a real broker and S3 (moto) after a catch-up.
* The Spark variant is run in pyspark by ``tests/test_spark_compat.py``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from s3sink import cli
from s3sink.clock import ManualClock
from s3sink.commitlog import FileEntry, PartitionLog, staging_prefix
from s3sink.config import SinkConfig, parse
from s3sink.ddl import (
    ProjectionOptions,
    avro_header_schema,
    generate,
    hive_type,
    parse_columns,
    trino_type,
)
from s3sink.errors import ConfigError, FatalError
from s3sink.storage.base import Storage
from s3sink.storage.memory import MemoryStorage

sqlglot = pytest.importorskip("sqlglot", reason="sqlglot is a dev dependency")
exp = pytest.importorskip("sqlglot.expressions")

TOPIC = "orders"
COLUMNS = "id bigint, name string, n bigint"


def _config(**extra: str) -> SinkConfig:
    raw = {
        "name": "ddl-test",
        "topics": TOPIC,
        "bootstrap.servers": "127.0.0.1:9",
        "s3.bucket.name": "bucket",
        "format.class": "parquet",
    }
    raw.update(extra)
    return parse(raw, environ={})


# ---------------------------------------------------------------------------------------------
# Parsing helpers


def _statements(text: str, dialect: str) -> list[Any]:
    return [s for s in sqlglot.parse(text, read=dialect) if s is not None]


def _create(text: str, dialect: str) -> Any:
    creates = [s for s in _statements(text, dialect) if isinstance(s, exp.Create)]
    assert len(creates) == 1, text
    return creates[0]


def _props(create: Any) -> list[Any]:
    props = create.args.get("properties")
    return list(props.expressions) if props is not None else []


def _columns(create: Any) -> list[tuple[str, str]]:
    return [(c.name, c.args["kind"].sql("hive")) for c in create.this.expressions]


def _partition_columns(create: Any) -> list[tuple[str, str]]:
    for p in _props(create):
        if isinstance(p, exp.PartitionedByProperty):
            return [(c.name, c.args["kind"].sql("hive").lower()) for c in p.this.expressions]
    return []


def _tblproperties(create: Any) -> dict[str, str]:
    return {
        p.this.this: p.args["value"].this
        for p in _props(create)
        if type(p) is exp.Property and isinstance(p.this, exp.Literal)
    }


def _location(create: Any) -> str:
    return str(next(p.this.this for p in _props(create) if isinstance(p, exp.LocationProperty)))


def _serde(create: Any) -> str | None:
    for p in _props(create):
        if isinstance(p, exp.RowFormatSerdeProperty):
            return str(p.this.this)
    return None


def _file_format(create: Any) -> Any:
    return next(p for p in _props(create) if isinstance(p, exp.FileFormatProperty))


def _trino_with(create: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in _props(create):
        if isinstance(p, exp.FileFormatProperty):
            out["format"] = p.this.this
        elif isinstance(p, exp.PartitionedByProperty):
            out["partitioned_by"] = [e.this for e in p.this.expressions]
        elif type(p) is exp.Property:
            out[p.this.name] = p.args["value"].this
    return out


# ---------------------------------------------------------------------------------------------
# Committed output made through the commit log (no broker needed)


def commit_file(
    storage: Storage,
    topic: str,
    partition: int,
    ext: str,
    data: bytes,
    *,
    records: int,
    created_ms: int,
    fence_after: int = 0,
    topics_dir: str = "topics",
) -> str:
    """Commit and publish one data file (``<topic>+<partition>+<offset><ext>``) as the sink
    does; returns its final key."""
    clock = ManualClock(created_ms)
    plog = PartitionLog(storage, topic, partition, "w", uuid.uuid4().hex, clock)
    start = plog.takeover(None, lambda: 0).fence.end
    name = f"{topic}+{partition}+{start:010d}{ext}"
    epoch = plog.latest.epoch if plog.latest else 0
    staging = f"{staging_prefix(topic, partition)}e{epoch}/{plog.attempt_id}/{name}"
    info = storage.put(staging, data)
    key = f"{topics_dir}/{topic}/partition={partition}/{name}"
    entry = FileEntry(
        staging, key, info.etag, info.size, records, start, start + records - 1, created_ms
    )
    marker = plog.commit([entry], start + records)
    plog.publish(marker)
    for _ in range(fence_after):  # later takeovers that found nothing to commit
        PartitionLog(storage, topic, partition, "w2", uuid.uuid4().hex, clock).takeover(
            None, lambda: 0
        )
    return key


def _parquet(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return bytes(sink.getvalue().to_pybytes())


def _avro(schema: Any, rows: list[dict[str, Any] | None]) -> bytes:
    import io

    import fastavro

    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(schema), rows, codec="deflate")
    return buf.getvalue()


ROWS = pa.table(
    {
        "id": pa.array([1, 2], pa.int64()),
        "name": ["a", "b"],
        "price": pa.array([1.5, 2.5], pa.float64()),
        "qty": pa.array([1, 2], pa.int32()),
        "ok": [True, False],
        "at": pa.array([1_700_000_000_000, None], pa.timestamp("ms", "UTC")),
        "local": pa.array([1_700_000_000_000_000, None], pa.timestamp("us")),
        "day": pa.array([19000, 19001], pa.date32()),
        "amount": pa.array([None, None], pa.decimal128(12, 2)),
        "raw": pa.array([b"x", None], pa.binary()),
        "tags": pa.array([["a"], []], pa.list_(pa.string())),
        "attrs": pa.array([[("k", 1)], []], pa.map_(pa.string(), pa.int64())),
        "addr": pa.array(
            [{"city": "Paris", "zip": 75001}, None],
            pa.struct([("city", pa.string()), ("zip", pa.int32())]),
        ),
    }
)


# ---------------------------------------------------------------------------------------------
# Types


@pytest.mark.parametrize(
    ("arrow", "athena", "spark", "trino"),
    [
        (pa.bool_(), "boolean", "boolean", "boolean"),
        (pa.int8(), "tinyint", "tinyint", "tinyint"),
        (pa.int16(), "smallint", "smallint", "smallint"),
        (pa.int32(), "int", "int", "integer"),
        (pa.int64(), "bigint", "bigint", "bigint"),
        (pa.uint32(), "bigint", "bigint", "bigint"),
        (pa.uint64(), "decimal(20,0)", "decimal(20,0)", "decimal(20,0)"),
        (pa.float32(), "float", "float", "real"),
        (pa.float64(), "double", "double", "double"),
        (pa.decimal128(12, 2), "decimal(12,2)", "decimal(12,2)", "decimal(12,2)"),
        (pa.string(), "string", "string", "varchar"),
        (pa.large_string(), "string", "string", "varchar"),
        (pa.binary(), "binary", "binary", "varbinary"),
        (pa.date32(), "date", "date", "date"),
        (pa.timestamp("ms", "UTC"), "timestamp", "timestamp", "timestamp(3)"),
        (pa.timestamp("us"), "timestamp", "timestamp_ntz", "timestamp(3)"),
        (pa.timestamp("ns", "UTC"), "timestamp", "timestamp", "timestamp(3)"),
        (pa.null(), "string", "string", "varchar"),
        (pa.dictionary(pa.int32(), pa.string()), "string", "string", "varchar"),
        (pa.list_(pa.int64()), "array<bigint>", "array<bigint>", "array(bigint)"),
        (
            pa.map_(pa.string(), pa.float64()),
            "map<string,double>",
            "map<string,double>",
            "map(varchar, double)",
        ),
        (
            pa.struct([("a", pa.int32()), ("b-c", pa.list_(pa.string()))]),
            "struct<a:int,`b-c`:array<string>>",
            "struct<a: int,`b-c`: array<string>>",
            'row("a" integer, "b-c" array(varchar))',
        ),
    ],
)
def test_arrow_types_per_engine(arrow: pa.DataType, athena: str, spark: str, trino: str) -> None:
    assert hive_type(arrow, "athena") == athena
    assert hive_type(arrow, "spark") == spark
    assert trino_type(arrow) == trino


def test_columns_option_reads_hive_types() -> None:
    fields = parse_columns(
        "id bigint, `order-no` string, tags array<string>, "
        "addr struct<city:string, geo:struct<lat:double,lon:double>>, "
        "m map<string,int>, amount decimal(10, 2), at timestamp, v varchar(20)"
    )
    assert [f.name for f in fields] == [
        "id",
        "order-no",
        "tags",
        "addr",
        "m",
        "amount",
        "at",
        "v",
    ]
    assert [hive_type(f.type, "athena") for f in fields] == [
        "bigint",
        "string",
        "array<string>",
        "struct<city:string,geo:struct<lat:double,lon:double>>",
        "map<string,int>",
        "decimal(10,2)",
        "timestamp",
        "string",
    ]
    for bad in ("id", "id bigint,", "id blob", "id array<string", "id bigint name string"):
        with pytest.raises(ConfigError, match="--columns"):
            parse_columns(bad)


# ---------------------------------------------------------------------------------------------
# Columns from the newest committed file


def test_parquet_columns_come_from_the_newest_committed_file() -> None:
    storage = MemoryStorage()
    old = pa.table({"id": pa.array([1], pa.int64()), "gone": ["x"]})
    commit_file(storage, TOPIC, 0, ".parquet", _parquet(old), records=1, created_ms=1000)
    key = commit_file(storage, TOPIC, 1, ".parquet", _parquet(ROWS), records=2, created_ms=2000)
    ddl = generate(_config(), storage=storage)
    create = _create(ddl, "athena")
    assert _columns(create) == [
        ("id", "BIGINT"),
        ("name", "STRING"),
        ("price", "DOUBLE"),
        ("qty", "INT"),
        ("ok", "BOOLEAN"),
        ("at", "TIMESTAMP"),
        ("local", "TIMESTAMP"),
        ("day", "DATE"),
        ("amount", "DECIMAL(12, 2)"),
        ("raw", "BINARY"),
        ("tags", "ARRAY<STRING>"),
        ("attrs", "MAP<STRING, BIGINT>"),
        ("addr", "STRUCT<city: STRING, zip: INT>"),
    ]
    assert key in ddl  # the comment names the sampled file
    assert isinstance(_file_format(create).this, exp.Var)
    assert _file_format(create).this.name.upper() == "PARQUET"
    trino = _create(generate(_config(), storage=storage, engine="trino"), "trino")
    cols = dict(_columns(trino))
    assert cols["local"].startswith("TIMESTAMP")
    assert list(cols)[-1] == "partition"


def test_newest_commit_is_found_behind_later_fences() -> None:
    storage = MemoryStorage()
    commit_file(
        storage,
        TOPIC,
        0,
        ".parquet",
        _parquet(pa.table({"only": [1]})),
        records=1,
        created_ms=5000,
        fence_after=3,
    )
    create = _create(generate(_config(), storage=storage), "athena")
    assert _columns(create) == [("only", "BIGINT")]


def test_json_columns_are_inferred_from_the_lines() -> None:
    storage = MemoryStorage()
    lines = [
        {"id": 1, "name": "a", "price": 1, "tags": ["x"], "addr": {"city": "Paris"}},
        {"id": 2, "name": "b", "price": 2.5, "tags": [], "at": "2024-05-03T07:00:00Z"},
        None,
    ]
    body = b"\n".join(json.dumps(x).encode() for x in lines) + b"\n"
    commit_file(storage, TOPIC, 0, ".json", body, records=3, created_ms=1000)
    ddl = generate(_config(**{"format.class": "json"}), storage=storage)
    create = _create(ddl, "athena")
    assert _columns(create) == [
        ("id", "BIGINT"),
        ("name", "STRING"),
        ("price", "DOUBLE"),
        ("tags", "ARRAY<STRING>"),
        ("addr", "STRUCT<city: STRING>"),
        ("at", "STRING"),
    ]
    assert _serde(create) == "org.apache.hive.hcatalog.data.JsonSerDe"
    io_format = _file_format(create).this
    assert io_format.args["input_format"].this == "org.apache.hadoop.mapred.TextInputFormat"


def test_compressed_json_is_read(tmp_path: Path) -> None:
    import gzip

    storage = MemoryStorage()
    body = gzip.compress(b'{"a":1}\n{"a":2,"b":"x"}\n')
    commit_file(storage, TOPIC, 0, ".json.gz", body, records=2, created_ms=1)
    cfg = _config(**{"format.class": "json", "s3.compression.type": "gzip"})
    assert _columns(_create(generate(cfg, storage=storage), "hive")) == [
        ("a", "BIGINT"),
        ("b", "STRING"),
    ]


def test_json_lines_that_are_not_objects_are_refused() -> None:
    storage = MemoryStorage()
    commit_file(storage, TOPIC, 0, ".json", b'"text"\n"more"\n', records=2, created_ms=1)
    with pytest.raises(FatalError, match="not objects"):
        generate(_config(**{"format.class": "json"}), storage=storage)


AVRO_SCHEMA = {
    "type": "record",
    "name": "Order",
    "namespace": "shop",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "name", "type": ["null", "string"], "default": None},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
    ],
}


def test_avro_columns_and_schema_literal_come_from_the_header() -> None:
    storage = MemoryStorage()
    data = _avro(AVRO_SCHEMA, [{"id": 1, "name": "a", "at": 0, "tags": []}])
    text = avro_header_schema(data)
    assert json.loads(text)["name"] in ("shop.Order", "Order")
    commit_file(storage, TOPIC, 0, ".avro", data, records=1, created_ms=1)
    ddl = generate(_config(**{"format.class": "avro"}), storage=storage)
    create = _create(ddl, "athena")
    assert _columns(create) == [
        ("id", "BIGINT"),
        ("name", "STRING"),
        ("at", "TIMESTAMP"),
        ("tags", "ARRAY<STRING>"),
    ]
    assert _serde(create) == "org.apache.hadoop.hive.serde2.avro.AvroSerDe"
    serde_props = {
        p.this.this: p.args["value"].this
        for sp in create.find_all(exp.SerdeProperties)
        for p in sp.expressions
    }
    assert json.loads(serde_props["avro.schema.literal"]) == json.loads(text)
    trino = _trino_with(
        _create(
            generate(_config(**{"format.class": "avro"}), storage=storage, engine="trino"), "trino"
        )
    )
    assert trino["format"] == "AVRO"


def test_avro_with_tombstones_reads_the_record_branch() -> None:
    storage = MemoryStorage()
    data = _avro(["null", AVRO_SCHEMA], [{"id": 1, "name": None, "at": 0, "tags": []}, None])
    commit_file(storage, TOPIC, 0, ".avro", data, records=2, created_ms=1)
    ddl = generate(_config(**{"format.class": "avro"}), storage=storage)
    create = _create(ddl, "athena")
    assert [c for c, _ in _columns(create)] == ["id", "name", "at", "tags"]
    literal = next(
        p.args["value"].this for sp in create.find_all(exp.SerdeProperties) for p in sp.expressions
    )
    assert json.loads(literal)["type"] == "record"
    assert "note: the files' schema is a union with null" in ddl


def test_keys_headers_and_error_files_are_not_sampled() -> None:
    storage = MemoryStorage()
    clock = ManualClock(10_000)
    plog = PartitionLog(storage, TOPIC, 0, "w", "a1", clock)
    plog.takeover(None, lambda: 0)
    name = f"{TOPIC}+0+0000000000"
    files = [
        (f"topics/{TOPIC}/partition=0/{name}.snappy.parquet", _parquet(ROWS.select(["id"])), 2),
        (
            f"topics/{TOPIC}/partition=0/{name}.keys.snappy.parquet",
            _parquet(pa.table({"key": [b"k"] * 9})),
            9,
        ),
        (f"_s3sink/errors/{TOPIC}/0/{name}.json", b'{"error":"bad"}\n', 9),
    ]
    entries = []
    for i, (key, data, records) in enumerate(files):
        staging = f"_s3sink/staging/{TOPIC}/0/e1/a1/{i}"
        info = storage.put(staging, data)
        # the sidecar and the error file claim the higher offsets: only the name tells
        entries.append(FileEntry(staging, key, info.etag, info.size, records, 0, records))
    plog.publish(plog.commit(entries, 10))
    cfg = _config(**{"store.kafka.keys": "true"})
    assert _columns(_create(generate(cfg, storage=storage), "athena")) == [("id", "BIGINT")]


def test_keys_and_headers_files_live_outside_the_table(tmp_path: Path) -> None:
    cfg = _config(**{"store.kafka.keys": "true", "store.kafka.headers": "true"})
    for engine in ("athena", "trino", "spark"):
        text = generate(cfg, columns=COLUMNS, engine=engine)
        assert "-- note: store.kafka.keys files are under" in text
        assert "/_keys/ (a sibling tree outside this table)" in text
        assert "warning" not in text
    assert "_keys" not in generate(_config(), columns=COLUMNS)


def test_without_output_it_says_to_run_catchup_or_pass_columns() -> None:
    with pytest.raises(FatalError, match=r"catchup.*--columns"):
        generate(_config(), storage=MemoryStorage())


def test_cli_prints_ddl_and_reports_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    config = tmp_path / "sink.json"
    config.write_text(
        json.dumps(
            {
                "name": "cli",
                "config": {
                    "topics": TOPIC,
                    "bootstrap.servers": "127.0.0.1:9",
                    "storage.url": store.as_uri(),
                    "format.class": "io.confluent.connect.s3.format.parquet.ParquetFormat",
                },
            }
        )
    )
    assert cli.main(["ddl", "-c", str(config)]) == 2
    err = capsys.readouterr().err
    assert "s3sink catchup" in err and "--columns" in err
    code = cli.main(
        ["ddl", "-c", str(config), "--engine", "spark", "--columns", COLUMNS, "--table", "db.t"]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert f"LOCATION '{store.as_uri()}/topics/{TOPIC}/'" in out
    assert "CREATE TABLE `db`.`t`" in out and "USING parquet" in out
    assert "MSCK REPAIR TABLE `db`.`t`;" in out


# ---------------------------------------------------------------------------------------------
# Partition columns, rejections


def test_nested_partition_fields_are_rejected() -> None:
    cfg = _config(**{"partitioner.class": "field", "partition.field.name": "address.city"})
    with pytest.raises(ConfigError, match="top-level field"):
        generate(cfg, columns=COLUMNS)


def test_bytearray_output_has_no_table() -> None:
    with pytest.raises(ConfigError, match="parquet, json, avro and backup"):
        generate(_config(**{"format.class": "bytearray"}), columns=COLUMNS)


def test_a_data_column_named_like_a_partition_column_gives_way() -> None:
    cfg = _config(**{"partitioner.class": "field", "partition.field.name": "Country"})
    ddl = generate(cfg, columns="id bigint, country string")
    create = _create(ddl, "athena")
    assert _columns(create) == [("id", "BIGINT")]
    assert _partition_columns(create) == [("country", "string")]
    assert "note: column 'country'" in ddl
    trino = _create(generate(cfg, columns="id bigint, country string", engine="trino"), "trino")
    assert [c for c, _ in _columns(trino)] == ["id", "country"]


def test_columns_differing_only_in_case_are_refused() -> None:
    with pytest.raises(FatalError, match="differ only in case"):
        generate(_config(), columns="id bigint, ID string")


def test_unprojectable_time_segment_falls_back_to_repair() -> None:
    cfg = _config(**{"partitioner.class": "time", "path.format": "'week'=xxxx-ww"})
    ddl = generate(cfg, columns=COLUMNS)
    create = _create(ddl, "athena")
    assert _partition_columns(create) == [("week", "string")]
    assert not any(k.startswith("projection.") for k in _tblproperties(create))
    assert "MSCK REPAIR TABLE `orders`;" in ddl


def test_several_topics_give_several_tables() -> None:
    cfg = _config(topics="a.b,c-d")
    ddl = generate(cfg, columns=COLUMNS, engine="trino")
    names = [c.this.this.name for c in _statements(ddl, "trino") if isinstance(c, exp.Create)]
    assert names == ["a_b", "c_d"]
    with pytest.raises(ConfigError, match="one topic"):
        generate(cfg, columns=COLUMNS, table="x")


# ---------------------------------------------------------------------------------------------
# The same layout as Terraform's Glue table

LAYOUT_CASES: list[tuple[str, dict[str, str], dict[str, Any]]] = [
    ("default", {"partitioner.class": "default"}, {"kafka_partition_count": 12}),
    (
        "hourly-prefix",
        {
            "storage.url": "s3://archive/prod/eu",
            "topics.dir": "kafka",
            "partitioner.class": "io.confluent.connect.storage.partitioner.HourlyPartitioner",
        },
        {},
    ),
    (
        "time-joda",
        {"partitioner.class": "time", "path.format": "'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH"},
        {"projection_start_year": 2021, "projection_end_year": 2031},
    ),
    ("daily", {"partitioner.class": "daily", "path.format": "'x'=HH"}, {}),
    (
        "date-segment",
        {"partitioner.class": "time", "path.format": "'dt'=YYYY-MM-dd/'hour'=HH"},
        {"projection_start_year": 2023},
    ),
    ("hour-segment", {"partitioner.class": "time", "path.format": "'ts'=yyyyMMddHH"}, {}),
    ("unpadded", {"partitioner.class": "time", "path.format": "'y'=yy/'m'=M/'d'=d/'min'=mm"}, {}),
    (
        "field",
        {"partitioner.class": "field", "partition.field.name": "country,customerTier"},
        {"partition_field_values": {"country": ["FR", "DE", "US"]}},
    ),
    (
        "field-time-json",
        {
            "partitioner.class": "field_time",
            "partition.field.name": "Region",
            "path.format": "'year'=YYYY/'month'=MM",
            "format.class": "json",
        },
        {},
    ),
    ("avro", {"format.class": "io.confluent.connect.s3.format.avro.AvroFormat"}, {}),
]


@pytest.fixture(scope="module")
def terraform_layout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    try:
        from tests.test_terraform import terraform_bin, terraform_table_layout
    except pytest.skip.Exception as exc:  # python-hcl2 missing
        pytest.skip(str(exc))
    terraform_bin()
    workdir = tmp_path_factory.mktemp("ddl-table-layout")

    def layout(config: Mapping[str, str], **kwargs: Any) -> Any:
        return terraform_table_layout(config, topic=TOPIC, workdir=workdir, **kwargs)

    yield layout


def _options(kwargs: Mapping[str, Any]) -> ProjectionOptions:
    return ProjectionOptions(
        kafka_partitions=kwargs.get("kafka_partition_count", 100),
        start_year=kwargs.get("projection_start_year", 2020),
        end_year=kwargs.get("projection_end_year", 2050),
        field_values=kwargs.get("partition_field_values", {}),
    )


@pytest.mark.parametrize(
    ("case", "extra", "kwargs"), LAYOUT_CASES, ids=[c[0] for c in LAYOUT_CASES]
)
def test_athena_ddl_matches_the_terraform_glue_table(
    terraform_layout: Any, case: str, extra: dict[str, str], kwargs: dict[str, Any]
) -> None:
    raw = {"s3.bucket.name": "bucket", "format.class": "parquet", **extra}
    cfg = _config(**raw)
    avro_literal = json.dumps(
        {
            "type": "record",
            "name": "orders",
            "namespace": "s3sink",
            "fields": [{"name": "id", "type": ["null", "long"], "default": None}],
        },
        separators=(",", ":"),
    )
    if "avro" in raw["format.class"].lower():
        kwargs = {**kwargs, "avro_schema_literal": avro_literal}
    columns = "id bigint"
    ddl = generate(cfg, columns=columns, options=_options(kwargs))
    layout = terraform_layout(raw, **kwargs)

    for dialect in ("athena", "hive"):
        create = _create(ddl, dialect)
        assert _partition_columns(create) == [(n, t) for n, t in layout.partition_keys]
        props = _tblproperties(create)
        assert {k: v for k, v in props.items() if k != "classification"} == layout.projection
        assert {**props, "EXTERNAL": "TRUE"} == layout.table_parameters
        assert create.args["properties"].find(exp.ExternalProperty) is not None
        assert _location(create) == layout.location
        if layout.format == "parquet":
            assert _file_format(create).this.name.upper() == "PARQUET"
            assert layout.serde.endswith("ParquetHiveSerDe")
        else:
            assert _serde(create) == layout.serde
        if layout.format == "json":
            io_format = _file_format(create).this
            assert io_format.args["input_format"].this == layout.input_format
            assert io_format.args["output_format"].this == layout.output_format
        if layout.format == "avro":
            assert _file_format(create).this.name.upper() == "AVRO"
            assert "avro.schema.literal" in ddl
            assert layout.serde_parameters == {"avro.schema.literal": avro_literal}

    trino = _create(
        generate(cfg, columns=columns, engine="trino", options=_options(kwargs)), "trino"
    )
    with_ = _trino_with(trino)
    names = [n for n, _ in layout.partition_keys]
    assert with_["partitioned_by"] == names
    assert with_["format"] == layout.format.upper()
    assert with_["external_location"] == layout.location
    cols = [c for c, _ in _columns(trino)]
    assert cols[len(cols) - len(names) :] == names  # partition columns last


def test_glue_table_takes_what_ddl_is_compared_with() -> None:
    try:
        from tests.test_terraform import glue_table_wiring
    except pytest.skip.Exception as exc:
        pytest.skip(str(exc))
    wiring = glue_table_wiring()
    for key in ("parameters", "partition_keys", "location", "serde"):
        assert "module.table_layout" in wiring[key], wiring


def _column_lines(ddl: str) -> list[tuple[str, str]]:
    """``(name, type)`` of the data columns, as the statement prints them."""
    body = ddl.split("CREATE EXTERNAL TABLE", 1)[1].split("\n)", 1)[0]
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^  `([^`]+)` (.+?),?$", body, re.M)]


@pytest.mark.parametrize("fmt", ["parquet", "avro"])
def test_athena_column_types_pass_the_terraform_tables_validation(fmt: str, tmp_path: Path) -> None:
    """What ``s3sink ddl --engine athena`` prints for a sample output can be given to the
    Terraform module's ``tables`` as is: its validation accepts every column type."""
    try:
        from tests.test_terraform import tables_validation_error, terraform_bin
    except pytest.skip.Exception as exc:  # python-hcl2 missing
        pytest.skip(str(exc))
    terraform_bin()
    storage = MemoryStorage()
    if fmt == "parquet":
        data, names = _parquet(ROWS), ROWS.column_names
    else:
        data = _avro(AVRO_SCHEMA, [{"id": 1, "name": "a", "at": 0, "tags": []}])
        names = ["id", "name", "at", "tags"]
    commit_file(storage, TOPIC, 0, f".{fmt}", data, records=1, created_ms=1000)
    ddl = generate(_config(**{"format.class": fmt}), storage=storage, engine="athena")
    columns = _column_lines(ddl)
    assert [n for n, _ in columns] == names, ddl
    tables = {TOPIC: {"columns": [{"name": n, "type": t} for n, t in columns]}}
    assert tables_validation_error(tables, tmp_path) is None


# ---------------------------------------------------------------------------------------------
# End to end: real broker, real S3 (moto), real sink output


@pytest.mark.parametrize("fmt", ["parquet", "json", "avro"])
def test_ddl_from_sink_output_on_s3(
    fmt: str,
    kafka_bootstrap: str,
    s3_endpoint: Any,
    s3_bucket: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from s3sink.sink import Sink
    from tests.rig.kafka import create_topic, produce_n, unique_name

    topic = create_topic(kafka_bootstrap, 2)
    produce_n(
        kafka_bootstrap,
        topic,
        200,
        value=lambda i: json.dumps(
            {"id": i, "name": f"user-{i}", "score": i / 2, "tags": ["a"], "geo": {"lat": 1.5}}
        ).encode(),
    )
    raw = {
        "name": unique_name("ddl"),
        "topics": topic,
        "bootstrap.servers": kafka_bootstrap,
        "value.converter": "json",
        "format.class": fmt,
        "flush.size": "50",
        "http.listen": "none",
        "partitioner.class": "time",
        "timestamp.extractor": "Record",
        "path.format": "'dt'=YYYY-MM-dd/'hour'=HH",
        "s3.bucket.name": s3_bucket,
        "store.url": s3_endpoint.url,
        "s3.region": s3_endpoint.region,
        "s3.path.style.access.enabled": "true",
        "aws.access.key.id": s3_endpoint.access_key,
        "aws.secret.access.key": s3_endpoint.secret_key,
    }
    summary = Sink(parse(raw, environ={})).run(catchup=True)
    assert summary.records == 200
    config = tmp_path / "sink.json"
    config.write_text(json.dumps(raw))

    assert cli.main(["ddl", "-c", str(config), "--table", "archive.orders"]) == 0
    athena = capsys.readouterr().out
    create = _create(athena, "athena")
    types = dict(_columns(create))
    assert types["id"] == "BIGINT" and types["name"] == "STRING"
    assert types["score"] == "DOUBLE"
    assert types["tags"] == "ARRAY<STRING>"
    assert types["geo"] == "STRUCT<lat: DOUBLE>"
    assert _partition_columns(create) == [("dt", "string"), ("hour", "string")]
    assert _location(create) == f"s3://{s3_bucket}/topics/{topic}/"
    props = _tblproperties(create)
    assert props["projection.dt.type"] == "date"
    assert props["storage.location.template"] == (
        f"s3://{s3_bucket}/topics/{topic}/dt=${{dt}}/hour=${{hour}}/"
    )

    assert cli.main(["ddl", "-c", str(config), "--engine", "trino"]) == 0
    trino = _create(capsys.readouterr().out, "trino")
    assert [c for c, _ in _columns(trino)][-2:] == ["dt", "hour"]
    assert _trino_with(trino)["format"] == fmt.upper()


# ---------------------------------------------------------------------------------------------
# --schema-from-registry


@pytest.fixture
def registry() -> Iterator[Any]:
    from tests.rig.schema_registry import SchemaRegistryServer

    with SchemaRegistryServer() as server:
        yield server


ORDER_V1 = {
    "type": "record",
    "name": "Order",
    "fields": [{"name": "id", "type": "long"}],
}
ORDER_V2 = {
    "type": "record",
    "name": "Order",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "raw", "type": ["null", "bytes"], "default": None},
        {
            "name": "amount",
            "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2},
        },
    ],
}


def _registry_config(url: str, **extra: str) -> SinkConfig:
    return _config(
        **{
            "value.converter": "io.confluent.connect.avro.AvroConverter",
            "value.converter.schema.registry.url": url,
            **extra,
        }
    )


def test_columns_from_the_latest_registry_schema(registry: Any) -> None:
    registry.register(f"{TOPIC}-value", json.dumps(ORDER_V1))
    registry.register(f"{TOPIC}-value", json.dumps(ORDER_V2))
    parquet = generate(_registry_config(registry.url), from_registry=True)
    assert "orders-value version 2" in parquet
    assert _columns(_create(parquet, "athena")) == [
        ("id", "BIGINT"),
        ("at", "TIMESTAMP"),
        ("raw", "BINARY"),
        ("amount", "DECIMAL(9, 2)"),
    ]
    # JSON lines hold binary as base64, times and decimals as text
    cfg = _registry_config(registry.url, **{"format.class": "json"})
    assert _columns(_create(generate(cfg, from_registry=True), "hive")) == [
        ("id", "BIGINT"),
        ("at", "STRING"),
        ("raw", "STRING"),
        ("amount", "STRING"),
    ]
    # Avro files carry the registry schema; with _kafka appended when metadata is stored
    cfg = _registry_config(registry.url, **{"format.class": "avro", "store.kafka.metadata": "true"})
    create = _create(generate(cfg, from_registry=True), "athena")
    assert [c for c, _ in _columns(create)] == ["id", "at", "raw", "amount", "_kafka"]
    literal = next(
        p.args["value"].this for sp in create.find_all(exp.SerdeProperties) for p in sp.expressions
    )
    assert [f["name"] for f in json.loads(literal)["fields"]][-1] == "_kafka"


def test_registry_needs_a_registry_converter(registry: Any) -> None:
    with pytest.raises(ConfigError, match="schema-from-registry"):
        generate(_config(**{"value.converter": "json"}), from_registry=True)
    with pytest.raises(FatalError, match="orders-value"):
        generate(_registry_config(registry.url), from_registry=True)


def test_backup_output_is_an_avro_table_of_the_fixed_schema() -> None:
    from formats.backup import SCHEMA

    ddl = generate(_config(**{"format.class": "backup"}), storage=MemoryStorage())
    create = _create(ddl, "athena")
    # the default partitioner's `partition` path column takes the place of the field
    assert _partition_columns(create) == [("partition", "int")]
    assert _columns(create) == [
        ("topic", "STRING"),
        ("offset", "BIGINT"),
        ("timestamp", "BIGINT"),
        ("timestamp_type", "STRING"),
        ("key", "BINARY"),
        ("value", "BINARY"),
        ("headers", "ARRAY<STRUCT<name: STRING, value: BINARY>>"),
    ]
    assert _serde(create) == "org.apache.hadoop.hive.serde2.avro.AvroSerDe"
    assert "byte for byte" in ddl
    literal = next(
        p.args["value"].this
        for sp in create.find_all(exp.SerdeProperties)
        for p in sp.expressions
        if p.this.this == "avro.schema.literal"
    )
    fields = json.loads(literal)["fields"]
    assert [f["name"] for f in fields] == [
        f["name"] for f in SCHEMA["fields"] if f["name"] != "partition"
    ]
    trino = _trino_with(
        _create(generate(_config(**{"format.class": "backup"}), engine="trino"), "trino")
    )
    assert trino["format"] == "AVRO"
    with pytest.raises(ConfigError, match="fixed schema"):
        generate(_config(**{"format.class": "backup"}), columns=COLUMNS)
