"""``s3sink ddl``: CREATE TABLE statements for the sink's output (Athena, Spark, Trino).

A table is one topic's folder, ``<storage root>/<topics.dir>/<topic>/``, never ``_s3sink/``.

* Columns come from the output itself: the newest committed file of the topic, found through
  the commit log (the latest commit of each partition, from the checkpoint hint, so the cost
  does not grow with history): the Parquet footer, the Avro header, or JSON inference over the
  lines of a JSON file (the same rules as the sink's schemaless JSON decoder). Alternatively
  ``--schema-from-registry`` takes the latest schema of ``<topic>-value`` from the Schema
  Registry, or ``--columns`` gives them by hand (Hive type syntax).
* Partition columns and Athena partition projection come from the partitioner, with the same
  choices as the Terraform module ``terraform/modules/table-layout`` (so a Glue table made by
  Terraform and one made by this command agree): ``partition int`` (integer projection
  ``0..N-1``) for the default partitioner; ``string`` columns for field values (``enum`` when
  ``--field-values`` lists them, else ``injected``; names lower-cased, nested fields rejected)
  and for time segments (one-letter segments such as ``YYYY``/``MM``/``dd``/``HH``/``mm`` are
  ``integer`` projections with zero-padding ``digits``; combined segments such as
  ``'dt'=YYYY-MM-dd`` are ``date`` projections with the java.time format ``yyyy-MM-dd``).
* Storage: Parquet ``STORED AS PARQUET``; JSON lines with Hive's
  ``org.apache.hive.hcatalog.data.JsonSerDe`` (read alike by Athena, Spark and Trino); Avro
  ``STORED AS AVRO`` with ``avro.schema.literal``.

Spark gets ``CREATE TABLE ... USING parquet|json|avro PARTITIONED BY (...) LOCATION`` plus
``MSCK REPAIR TABLE`` (Spark has no projection); Trino gets the Hive connector's
``WITH (format, partitioned_by, external_location)`` with the partition columns last.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa

from s3sink.commitlog import FileEntry, Marker
from s3sink.config import SinkConfig
from s3sink.errors import ConfigError, FatalError, NotFoundError
from s3sink.storage.base import Storage

ENGINES = ("athena", "spark", "trino")
TABLE_FORMATS = ("parquet", "json", "avro", "backup")

JSON_SERDE = "org.apache.hive.hcatalog.data.JsonSerDe"
TEXT_INPUT = "org.apache.hadoop.mapred.TextInputFormat"
TEXT_OUTPUT = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"
AVRO_SERDE = "org.apache.hadoop.hive.serde2.avro.AvroSerDe"

#: Lines of a JSON file read to infer its columns.
JSON_SAMPLE_LINES = 10_000
JSON_SAMPLE_BYTES = 16 * 1024 * 1024
_TIME_PARTITIONERS = ("time", "hourly", "daily", "field_time")
_FIELD_PARTITIONERS = ("field", "field_time")
_FIXED_PATH_FORMATS = {
    "hourly": "'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH",
    "daily": "'year'=YYYY/'month'=MM/'day'=dd",
}
_SEGMENT_RE = re.compile(r"^'([A-Za-z_][A-Za-z0-9_]*)'=(.+)$")
_SIMPLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# ---------------------------------------------------------------------------------------------
# The layout of one table


@dataclass(frozen=True, slots=True)
class PartitionSpec:
    """One partition column: its directory label, column name, type and Athena projection."""

    #: The name in the path (``customerTier=...``).
    label: str
    #: The column name (lower-cased, as Glue stores it).
    name: str
    #: ``int`` or ``string`` (Hive spelling).
    type: str
    #: ``projection.<name>.*`` properties without the prefix; empty: no projection possible.
    projection: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Table:
    topic: str
    name: str
    #: ``parquet``, ``json`` or ``avro``.
    format: str
    #: Table LOCATION, ending in ``/``.
    location: str
    columns: tuple[pa.Field, ...]
    partitions: tuple[PartitionSpec, ...]
    #: Avro schema text for Athena's AvroSerDe (``avro.schema.literal``).
    avro_schema: str | None = None
    #: Where the columns came from (a comment in the output).
    source: str = ""
    notes: tuple[str, ...] = ()
    #: ``keys``/``headers`` files written next to the data files.
    sidecars: tuple[str, ...] = ()

    @property
    def projectable(self) -> bool:
        return all(p.projection for p in self.partitions)

    def projection_properties(self) -> dict[str, str]:
        """``projection.*`` and ``storage.location.template`` (as Terraform's layout)."""
        if not self.partitions or not self.projectable:
            return {}
        props = {"projection.enabled": "true"}
        for p in self.partitions:
            for k, v in p.projection.items():
                props[f"projection.{p.name}.{k}"] = v
        template = self.location.rstrip("/")
        for p in self.partitions:
            template += f"/{p.label}=${{{p.name}}}"
        props["storage.location.template"] = template + "/"
        return props


@dataclass(frozen=True, slots=True)
class ProjectionOptions:
    kafka_partitions: int = 100
    start_year: int = 2020
    end_year: int = 2050
    field_values: Mapping[str, Sequence[str]] = field(default_factory=dict)


def format_name(config: SinkConfig) -> str:
    from formats import load_format

    name = load_format(config).name
    if name not in TABLE_FORMATS:
        raise ConfigError(
            f"format.class: {name} files have no columns a table could read; s3sink ddl "
            "supports parquet, json, avro and backup",
            key="format.class",
        )
    return name


def storage_root(config: SinkConfig) -> str:
    """The storage root as readers address it: ``s3://bucket/prefix`` or ``file:///path``."""
    url = config.storage_url or f"s3://{config.s3_bucket_name}"
    if url.startswith("s3a://"):
        url = "s3://" + url[len("s3a://") :]
    return url.rstrip("/")


def default_location(config: SinkConfig, topic: str) -> str:
    return f"{storage_root(config)}/{config.topics_dir.strip('/')}/{topic}/"


def default_table_name(topic: str) -> str:
    """The topic lower-cased, anything but ``[a-z0-9_]`` as ``_`` (as Terraform names it)."""
    return re.sub(r"[^a-z0-9_]", "_", topic.lower())


def partition_specs(config: SinkConfig, options: ProjectionOptions) -> tuple[PartitionSpec, ...]:
    """The partition columns of the configured partitioner, in path order."""
    from partitioners import load_partitioner

    partitioner = load_partitioner(config)
    kind = partitioner.name
    if kind == "default":
        return (
            PartitionSpec(
                "partition",
                "partition",
                "int",
                {"type": "integer", "range": f"0,{options.kafka_partitions - 1}"},
            ),
        )
    specs: list[PartitionSpec] = []
    if kind in _FIELD_PARTITIONERS:
        for f in config.partition_field_name:
            if not _SIMPLE_NAME.match(f):
                raise ConfigError(
                    f"partition.field.name: {f!r} is not a top-level field name of letters, "
                    "digits and underscores; Glue, Athena and Hive cannot name a partition "
                    "column after it (partition by a top-level field)",
                    key="partition.field.name",
                )
            values = list(options.field_values.get(f, ()))
            projection = (
                {"type": "enum", "values": ",".join(values)} if values else {"type": "injected"}
            )
            specs.append(PartitionSpec(f, f.lower(), "string", projection))
    if kind in _TIME_PARTITIONERS:
        path_format = _FIXED_PATH_FORMATS.get(kind, config.path_format or "")
        specs.extend(_time_specs(path_format, config, options))
    if kind not in _FIELD_PARTITIONERS and kind not in _TIME_PARTITIONERS:
        # A plugin: its columns, no projection (Athena needs MSCK REPAIR TABLE).
        for c in partitioner.partition_columns():
            specs.append(PartitionSpec(c.name, c.name.lower(), c.type))
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(
            f"partitioner.class: partition column names must be unique (compared "
            f"case-insensitively, as Glue lower-cases them): {', '.join(dupes)}",
            key="partition.field.name",
        )
    return tuple(specs)


#: Single-field time segments -> (range, digits); ``None`` digits: no padding property.
def _integer_token(pattern: str, options: ProjectionOptions) -> tuple[str, str | None] | None:
    return {
        "yyyy": (f"{options.start_year},{options.end_year}", None),
        "yy": ("0,99", "2"),
        "MM": ("1,12", "2"),
        "M": ("1,12", None),
        "dd": ("1,31", "2"),
        "d": ("1,31", None),
        "HH": ("0,23", "2"),
        "H": ("0,23", None),
        "mm": ("0,59", "2"),
        "m": ("0,59", None),
    }.get(pattern)


_DATE_RUNS = frozenset({"yyyy", "yy", "MM", "M", "dd", "d", "HH", "H", "mm", "m"})


def _time_specs(
    path_format: str, config: SinkConfig, options: ProjectionOptions
) -> list[PartitionSpec]:
    from partitioners.joda import JodaPattern

    if not path_format:
        raise ConfigError("path.format: required with a time partitioner", key="path.format")
    out: list[PartitionSpec] = []
    for segment in path_format.strip("/").split("/"):
        m = _SEGMENT_RE.match(segment)
        if m is None:
            raise ConfigError(
                f"path.format: segment {segment!r} is not of the form 'name'=PATTERN; "
                "readers find partitions by name=value directories (e.g. 'year'=YYYY)",
                key="path.format",
            )
        label, raw = m.group(1), m.group(2)
        pattern = raw.replace("Y", "y")
        integer = _integer_token(pattern, options)
        projection: dict[str, str]
        if integer is not None:
            projection = {"type": "integer", "range": integer[0]}
            if integer[1] is not None:
                projection["digits"] = integer[1]
        elif re.fullmatch(r"[yMdHm][yMdHm_.:-]*", pattern) and all(
            run in _DATE_RUNS for run in _letter_runs(pattern)
        ):
            start = JodaPattern.compile(raw, config.locale).format(
                datetime(options.start_year, 1, 1)
            )
            unit = (
                "MINUTES"
                if "m" in pattern
                else "HOURS"
                if "H" in pattern
                else "DAYS"
                if "d" in pattern
                else "MONTHS"
                if "M" in pattern
                else "YEARS"
            )
            projection = {
                "type": "date",
                "format": pattern,
                "range": f"{start},NOW",
                "interval": "1",
                "interval.unit": unit,
            }
        else:
            projection = {}
        out.append(PartitionSpec(label, label.lower(), "string", projection))
    return out


def _letter_runs(pattern: str) -> list[str]:
    return [m.group(0) for m in re.finditer(r"y+|M+|d+|H+|m+", pattern)]


# ---------------------------------------------------------------------------------------------
# Columns from the output, the registry or the command line


def _columns_from_parquet(data: bytes) -> pa.Schema:
    import pyarrow.parquet as pq

    schema: pa.Schema = pq.read_schema(pa.BufferReader(data))
    return schema.remove_metadata()


def avro_header_schema(data: bytes) -> str:
    """The writer schema (``avro.schema``) from an Avro object container file's header."""
    if data[:4] != b"Obj\x01":
        raise FatalError("not an Avro object container file")
    pos = 4

    def long() -> int:
        nonlocal pos
        shift = result = 0
        while True:
            b = data[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
        return (result >> 1) ^ -(result & 1)

    def blob() -> bytes:
        nonlocal pos
        n = long()
        out = data[pos : pos + n]
        pos += n
        return out

    while True:
        count = long()
        if count == 0:
            break
        if count < 0:
            count = -count
            long()  # block size in bytes
        for _ in range(count):
            k = blob().decode()
            v = blob()
            if k == "avro.schema":
                return v.decode()
    raise FatalError("Avro file header has no avro.schema")


def _avro_fields(schema_text: str) -> list[pa.Field]:
    import fastavro

    from formats.decoders.avro_arrow import avro_to_arrow

    raw = json.loads(schema_text)
    if isinstance(raw, list):  # ["null", record] of behavior.on.null.values=write
        non_null = [s for s in raw if s != "null"]
        if len(non_null) == 1:
            raw = non_null[0]
    arrow, _ = avro_to_arrow(fastavro.parse_schema(raw))
    if pa.types.is_struct(arrow):
        return list(arrow)
    return [pa.field("value", arrow)]


def _columns_from_json(data: bytes, key: str) -> pa.Schema:
    from formats.compression import EXTENSIONS
    from formats.decoders.infer import infer_objects

    text = _head_text(data, key, EXTENSIONS, JSON_SAMPLE_BYTES)
    if len(text) >= JSON_SAMPLE_BYTES and b"\n" in text:
        text = text[: text.rindex(b"\n")]  # the last line may be cut short
    objs: list[dict[str, Any]] = []
    for raw in io.BytesIO(text):
        line = raw.strip()
        if not line or line == b"null":
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            raise FatalError(
                f"{key}: a line is not JSON; a table over JSON files needs one JSON object "
                "per line (value.converter=json, avro, jsonschema or protobuf)"
            ) from None
        if not isinstance(doc, dict):
            raise FatalError(
                f"{key}: lines are JSON {type(doc).__name__}s, not objects; a table needs "
                "one JSON object per line (pass --columns 'value string' to read it as text)"
            )
        objs.append(doc)
        if len(objs) >= JSON_SAMPLE_LINES:
            break
    if not objs:
        raise FatalError(f"{key}: no JSON object to take the columns from")
    schema: pa.Schema = infer_objects(objs)
    return schema


def _head_text(data: bytes, key: str, extensions: Mapping[str, str], limit: int) -> bytes:
    """Up to ``limit`` bytes of the file's text (decompressed by the file name's suffix)."""
    codec = next((c for c, ext in extensions.items() if ext and key.endswith(ext)), None)
    if codec is None:
        return data[:limit]
    with pa.input_stream(pa.BufferReader(data), compression=codec) as stream:
        out: bytes = stream.read(limit)
    return out


def json_table_type(t: pa.DataType) -> pa.DataType:
    """The type a JSON reader sees for a value the sink rendered as JSON (binary as base64
    text, times and decimals as text, durations as numbers)."""
    from formats.arrow_types import normalize_type

    t = normalize_type(t)
    if (
        pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_fixed_size_binary(t)
        or pa.types.is_timestamp(t)
        or pa.types.is_date(t)
        or pa.types.is_time(t)
        or pa.types.is_decimal(t)
    ):
        return pa.string()
    if pa.types.is_struct(t):
        return pa.struct([f.with_type(json_table_type(f.type)) for f in t])
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.list_(json_table_type(t.value_type))
    if pa.types.is_map(t):
        return pa.map_(pa.string(), json_table_type(t.item_type))
    return t


@dataclass(frozen=True)
class Sample:
    fields: tuple[pa.Field, ...]
    source: str
    avro_schema: str | None = None
    notes: tuple[str, ...] = ()


#: A data file's name: ``<topic>+<partition>+<offset><ext>``; keys and headers files next to it
#: (``store.kafka.keys``/``.headers``) have ``.keys``/``.headers`` before the extension.
_DATA_FILE = re.compile(r"\+\d+\+\d+\.(?!(?:keys|headers)\.)[^/]*$")

#: File name suffixes of each format's data files (every codec), as Hadoop glob alternatives.
DATA_SUFFIXES = {
    "parquet": ("parquet", "snappy.parquet", "gz.parquet", "zstd.parquet", "lz4.parquet"),
    "json": ("json", "json.gz", "json.zst"),
    "avro": ("avro",),
}


def data_file_glob(fmt: str) -> str:
    """A glob matching the data files of ``fmt`` and not the keys/headers files beside them.

    Data files end ``+<offset>.<suffix>``: the two characters before the suffix are digits (or
    ``+`` and a digit), which ``...keys.lz4.parquet`` (``z4``) and ``...headers.json`` are not."""
    return "*[+0-9][0-9].{" + ",".join(DATA_SUFFIXES[fmt]) + "}"


def sample_from_output(storage: Storage, config: SinkConfig, topic: str, fmt: str) -> Sample:
    """Columns of the newest committed data file of ``topic`` (found through the commit log)."""
    from s3sink.status import latest_commits

    prefix = config.topics_dir.strip("/") + "/"

    def is_data(f: FileEntry) -> bool:
        return f.key.startswith(prefix) and _DATA_FILE.search(f.key) is not None

    def with_data(m: Marker) -> bool:
        return m.kind == "commit" and any(is_data(f) for f in m.files)

    commits = latest_commits(storage, topic, with_data)
    if not commits:
        raise FatalError(
            f"{topic}: no committed output to take the columns from yet; run `s3sink catchup "
            "-c CONFIG` first, or pass --columns 'name type, ...' (or --schema-from-registry)"
        )
    newest = max(commits, key=lambda m: (m.created_ms, m.end))
    files = [f for f in newest.files if is_data(f)]
    chosen = max(files, key=lambda f: (f.records > 0, f.last_offset, -f.size))
    try:
        data, _ = storage.get(chosen.key)
        where = chosen.key
    except NotFoundError:
        # committed but not yet published: the staging copy holds the same bytes
        data, _ = storage.get(chosen.staging)
        where = chosen.staging
    source = f"{where} (newest committed file, commit {newest.seq})"
    if fmt == "parquet":
        return Sample(tuple(_columns_from_parquet(data)), source)
    if fmt == "avro":
        text = avro_header_schema(data)
        parsed = json.loads(text)
        notes: tuple[str, ...] = ()
        if isinstance(parsed, list):
            # ["null", record] (behavior.on.null.values=write): the SerDe wants the record
            text = json.dumps(next(s for s in parsed if s != "null"), separators=(",", ":"))
            notes = (
                "the files' schema is a union with null (tombstones are written); the table "
                "reads its record branch, so a reader fails on a tombstone",
            )
        return Sample(tuple(_avro_fields(text)), source, text, notes)
    return Sample(tuple(_columns_from_json(data, where)), source)


def backup_sample() -> Sample:
    """The ``backup`` format's fixed record schema: an Avro table of the Kafka records."""
    from formats.backup import SCHEMA

    def undocumented(node: Any) -> Any:  # docs are prose (with `;`), not needed to read
        if isinstance(node, dict):
            return {k: undocumented(v) for k, v in node.items() if k != "doc"}
        if isinstance(node, list):
            return [undocumented(v) for v in node]
        return node

    text = json.dumps(undocumented(SCHEMA), separators=(",", ":"))
    notes = (
        "backup files are Avro with a fixed schema: key, value and header values are binary "
        "(decode them in the query, e.g. from_utf8(value) in Athena/Trino, CAST(value AS "
        "STRING) in Spark); `s3sink restore` puts them back into Kafka byte for byte",
    )
    return Sample(tuple(_avro_fields(text)), "the backup format's fixed schema", text, notes)


def sample_from_registry(config: SinkConfig, topic: str, fmt: str) -> Sample:
    """Columns from the latest schema of ``<topic>-value`` in the Schema Registry, as the
    configured format writes them."""
    from formats import kafka_meta
    from formats.arrow_types import AvroSchemaBuilder, normalize_type
    from formats.decoders import REGISTRY_DECODERS, decoder_name, load_value_decoder

    name = decoder_name(config.value_converter)
    url = config.value_converter_schema_registry_url
    if name not in REGISTRY_DECODERS or not url:
        raise ConfigError(
            "--schema-from-registry: needs value.converter=avro, jsonschema or protobuf and "
            "value.converter.schema.registry.url",
            key="value.converter",
        )
    from confluent_kafka.schema_registry import SchemaRegistryClient

    from formats.decoders.registry import client_config

    subject = f"{topic}-value"
    try:
        latest = SchemaRegistryClient(
            client_config(url, config.value_converter_props)
        ).get_latest_version(subject)
    except Exception as exc:
        raise FatalError(f"schema registry: cannot read the latest {subject}: {exc}") from None
    schema_id = int(latest.schema_id or 0)
    decoder: Any = load_value_decoder(config)
    avro_text: str | None = None
    if name == "avro":
        avro_text = str(decoder._schema(schema_id).text)
        fields = _avro_fields(avro_text)
    else:
        fields = list(decoder._get(schema_id).schema)
    if config.store_kafka_metadata:
        fields = [f for f in fields if f.name != kafka_meta.COLUMN]
        fields.append(
            pa.field(kafka_meta.COLUMN, kafka_meta.arrow_type(kafka_meta.key_as_text(config)))
        )
    if fmt == "json":
        fields = [f.with_type(json_table_type(f.type)) for f in fields]
    else:
        fields = [f.with_type(normalize_type(f.type)) for f in fields]
    if fmt == "avro" and (avro_text is None or config.store_kafka_metadata):
        record, _ = AvroSchemaBuilder("s3sink").record(pa.schema(fields), default_table_name(topic))
        avro_text = json.dumps(record, separators=(",", ":"))
    return Sample(
        tuple(fields),
        f"schema registry: {subject} version {latest.version} (id {schema_id})",
        avro_text,
    )


# -- --columns: Hive type syntax ----------------------------------------------------------------

_PRIMITIVES: dict[str, pa.DataType] = {
    "boolean": pa.bool_(),
    "tinyint": pa.int8(),
    "smallint": pa.int16(),
    "int": pa.int32(),
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "float": pa.float32(),
    "real": pa.float32(),
    "double": pa.float64(),
    "string": pa.string(),
    "varchar": pa.string(),
    "char": pa.string(),
    "binary": pa.binary(),
    "varbinary": pa.binary(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("ms", "UTC"),
    "timestamp_ntz": pa.timestamp("ms"),
}


class _TypeParser:
    def __init__(self, text: str) -> None:
        self.tokens = re.findall(r"`[^`]*`|\"[^\"]*\"|[A-Za-z_][A-Za-z0-9_]*|\d+|[<>(),:]", text)
        rest = re.sub(r"`[^`]*`|\"[^\"]*\"|[A-Za-z_][A-Za-z0-9_]*|\d+|[<>(),:]|\s+", "", text)
        if rest:
            raise ConfigError(f"--columns: cannot read {rest!r} in {text!r}")
        self.pos = 0
        self.text = text

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok.lower() != expected):
            want = expected or "more"
            raise ConfigError(f"--columns: expected {want!r} at {tok!r} in {self.text!r}")
        self.pos += 1
        return tok

    def name(self) -> str:
        tok = self.take()
        return tok[1:-1] if tok[0] in '`"' else tok

    def type(self) -> pa.DataType:
        word = self.take().lower()
        if word in ("array", "list"):
            self.take("<")
            inner = self.type()
            self.take(">")
            return pa.list_(inner)
        if word == "map":
            self.take("<")
            k = self.type()
            self.take(",")
            v = self.type()
            self.take(">")
            return pa.map_(k, v)
        if word in ("struct", "row"):
            self.take("<")
            fields = []
            while True:
                n = self.name()
                if self.peek() == ":":
                    self.take(":")
                fields.append(pa.field(n, self.type()))
                if self.peek() == ",":
                    self.take(",")
                    continue
                self.take(">")
                return pa.struct(fields)
        if word in ("decimal", "numeric"):
            precision, scale = 10, 0
            if self.peek() == "(":
                self.take("(")
                precision = int(self.take())
                if self.peek() == ",":
                    self.take(",")
                    scale = int(self.take())
                self.take(")")
            return pa.decimal128(precision, scale)
        if word in _PRIMITIVES:
            if word in ("varchar", "char") and self.peek() == "(":
                self.take("(")
                self.take()
                self.take(")")
            return _PRIMITIVES[word]
        raise ConfigError(f"--columns: unknown type {word!r} in {self.text!r}")


def parse_columns(text: str) -> list[pa.Field]:
    """``"id bigint, name string, tags array<string>"`` (Hive type syntax) as Arrow fields."""
    if text.startswith("@"):
        from pathlib import Path

        text = Path(text[1:]).read_text(encoding="utf-8")
    p = _TypeParser(text)
    fields: list[pa.Field] = []
    while p.peek() is not None:
        name = p.name()
        fields.append(pa.field(name, p.type()))
        if p.peek() == ",":
            p.take(",")
            if p.peek() is None:
                raise ConfigError(f"--columns: a column is missing after the last ',' in {text!r}")
        elif p.peek() is not None:
            raise ConfigError(f"--columns: expected ',' at {p.peek()!r} in {text!r}")
    if not fields:
        raise ConfigError("--columns: no column given")
    return fields


# ---------------------------------------------------------------------------------------------
# Types per engine


#: Scalar types: (test, Hive/Athena/Spark spelling, Trino spelling), first match wins.
_SCALARS: tuple[tuple[Callable[[pa.DataType], bool], str, str], ...] = (
    (pa.types.is_boolean, "boolean", "boolean"),
    (pa.types.is_int8, "tinyint", "tinyint"),
    (lambda t: pa.types.is_int16(t) or pa.types.is_uint8(t), "smallint", "smallint"),
    (lambda t: pa.types.is_int32(t) or pa.types.is_uint16(t), "int", "integer"),
    (lambda t: pa.types.is_int64(t) or pa.types.is_uint32(t), "bigint", "bigint"),
    (pa.types.is_uint64, "decimal(20,0)", "decimal(20,0)"),
    (lambda t: pa.types.is_float16(t) or pa.types.is_float32(t), "float", "real"),
    (pa.types.is_floating, "double", "double"),
    (lambda t: pa.types.is_string(t) or pa.types.is_large_string(t), "string", "varchar"),
    (
        lambda t: (
            pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t)
        ),
        "binary",
        "varbinary",
    ),
    (pa.types.is_date, "date", "date"),
    (pa.types.is_time32, "int", "integer"),
    (pa.types.is_time64, "bigint", "bigint"),
)


def _scalar(t: pa.DataType, trino: bool) -> str | None:
    if pa.types.is_decimal(t):
        return f"decimal({t.precision},{t.scale})"
    for test, hive, trino_name in _SCALARS:
        if test(t):
            return trino_name if trino else hive
    return None


def hive_type(t: pa.DataType, engine: str) -> str:
    """An Arrow type in Athena/Hive (``engine='athena'``) or Spark SQL DDL spelling."""
    from formats.arrow_types import normalize_type

    t = normalize_type(t)
    if pa.types.is_timestamp(t):
        return "timestamp_ntz" if engine == "spark" and t.tz is None else "timestamp"
    scalar = _scalar(t, trino=False)
    if scalar is not None:
        return scalar
    if pa.types.is_struct(t):
        sep = ": " if engine == "spark" else ":"
        inner = ",".join(f"{_struct_name(f.name)}{sep}{hive_type(f.type, engine)}" for f in t)
        return f"struct<{inner}>"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"array<{hive_type(t.value_type, engine)}>"
    if pa.types.is_map(t):
        return f"map<{hive_type(t.key_type, engine)},{hive_type(t.item_type, engine)}>"
    return "string"


def trino_type(t: pa.DataType) -> str:
    from formats.arrow_types import normalize_type

    t = normalize_type(t)
    if pa.types.is_timestamp(t):
        # The Hive connector's default precision (hive.timestamp-precision=MILLISECONDS).
        return "timestamp(3)"
    scalar = _scalar(t, trino=True)
    if scalar is not None:
        return scalar
    if pa.types.is_struct(t):
        inner = ", ".join(f"{_dq(f.name)} {trino_type(f.type)}" for f in t)
        return f"row({inner})"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"array({trino_type(t.value_type)})"
    if pa.types.is_map(t):
        return f"map({trino_type(t.key_type)}, {trino_type(t.item_type)})"
    return "varchar"


def _struct_name(name: str) -> str:
    return name if _SIMPLE_NAME.match(name) else _bq(name)


def _bq(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _dq(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sq(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _sq_trino(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _qualified(name: str, quote: Any) -> str:
    return ".".join(quote(part) for part in name.split("."))


# ---------------------------------------------------------------------------------------------
# Rendering


def render(table: Table, engine: str) -> str:
    if engine == "athena":
        return _render_athena(table)
    if engine == "spark":
        return _render_spark(table)
    if engine == "trino":
        return _render_trino(table)
    raise ConfigError(f"--engine: expected one of {', '.join(ENGINES)}, got {engine!r}")


def _header(table: Table, engine: str) -> list[str]:
    lines = [f"-- s3sink ddl --engine {engine}: topic {table.topic}"]
    if table.source:
        lines.append(f"-- columns from {table.source}")
    lines += [f"-- note: {n}" for n in table.notes]
    for kind in table.sidecars:
        lines.append(
            f"-- note: store.kafka.{kind} files are under {table.location.rstrip('/')}/../_{kind}/ "
            "(a sibling tree outside this table); query them with a table of their own"
        )
    return lines


def _render_athena(table: Table) -> str:
    lines = _header(table, "athena")
    lines.append(f"CREATE EXTERNAL TABLE {_qualified(table.name, _bq)} (")
    cols = [f"  {_bq(f.name)} {hive_type(f.type, 'athena')}" for f in table.columns]
    lines.append(",\n".join(cols))
    lines.append(")")
    if table.partitions:
        parts = ", ".join(f"{_bq(p.name)} {p.type}" for p in table.partitions)
        lines.append(f"PARTITIONED BY ({parts})")
    if table.format == "parquet":
        lines.append("STORED AS PARQUET")
    elif table.format == "json":
        lines.append(f"ROW FORMAT SERDE {_sq(JSON_SERDE)}")
        lines.append(f"STORED AS INPUTFORMAT {_sq(TEXT_INPUT)} OUTPUTFORMAT {_sq(TEXT_OUTPUT)}")
    else:
        lines.append(f"ROW FORMAT SERDE {_sq(AVRO_SERDE)}")
        if table.avro_schema:
            lines.append(f"WITH SERDEPROPERTIES ('avro.schema.literal'={_sq(table.avro_schema)})")
        lines.append("STORED AS AVRO")
    lines.append(f"LOCATION {_sq(table.location)}")
    props = {"classification": table.format, **table.projection_properties()}
    body = ",\n".join(f"  {_sq(k)}={_sq(v)}" for k, v in props.items())
    lines.append(f"TBLPROPERTIES (\n{body}\n);")
    if table.partitions and not table.projectable:
        bad = ", ".join(p.label for p in table.partitions if not p.projection)
        lines.append(
            f"-- note: no partition projection: {bad} cannot be projected (path.format "
            "segments built from YYYY, yy, MM, M, dd, d, HH, H, mm, m and - _ . : can);"
        )
        lines.append("-- register the partitions that exist (again after new ones appear):")
        lines.append(f"MSCK REPAIR TABLE {_qualified(table.name, _bq)};")
    return "\n".join(lines) + "\n"


def _render_spark(table: Table) -> str:
    lines = _header(table, "spark")
    lines.append(f"CREATE TABLE {_qualified(table.name, _bq)} (")
    cols = [f"  {_bq(f.name)} {hive_type(f.type, 'spark')}" for f in table.columns]
    cols += [f"  {_bq(p.name)} {p.type}" for p in table.partitions]
    lines.append(",\n".join(cols))
    lines.append(")")
    lines.append(f"USING {table.format}")
    if table.format == "avro" and table.avro_schema:
        lines.append(f"OPTIONS (avroSchema {_sq(table.avro_schema)})")
    if table.partitions:
        lines.append(f"PARTITIONED BY ({', '.join(_bq(p.name) for p in table.partitions)})")
    lines.append(f"LOCATION {_sq(table.location)};")
    if table.partitions:
        lines.append("-- register the partitions that exist (again after new ones appear):")
        lines.append(f"MSCK REPAIR TABLE {_qualified(table.name, _bq)};")
    return "\n".join(lines) + "\n"


def _render_trino(table: Table) -> str:
    lines = _header(table, "trino")
    lines.append(f"CREATE TABLE {_qualified(table.name, _dq)} (")
    cols = [f"  {_dq(f.name)} {trino_type(f.type)}" for f in table.columns]
    # The Hive connector wants the partition columns last, in partitioned_by order.
    cols += [
        f"  {_dq(p.name)} {'integer' if p.type == 'int' else 'varchar'}" for p in table.partitions
    ]
    lines.append(",\n".join(cols))
    lines.append(")")
    with_ = [f"  format = {_sq_trino(table.format.upper())}"]
    if table.partitions:
        names = ", ".join(_sq_trino(p.name) for p in table.partitions)
        with_.append(f"  partitioned_by = ARRAY[{names}]")
    with_.append(f"  external_location = {_sq_trino(table.location)}")
    lines.append("WITH (\n" + ",\n".join(with_) + "\n);")
    if table.partitions:
        schema, _, name = table.name.rpartition(".")
        lines.append("-- register the partitions that exist (again after new ones appear):")
        lines.append(
            f"-- CALL system.sync_partition_metadata({_sq_trino(schema or '<schema>')}, "
            f"{_sq_trino(name)}, 'ADD');"
        )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Putting it together


def build_table(
    config: SinkConfig,
    topic: str,
    sample: Sample,
    *,
    name: str | None = None,
    location: str | None = None,
    options: ProjectionOptions | None = None,
) -> Table:
    fmt = format_name(config)
    specs = partition_specs(config, options or ProjectionOptions())
    notes: list[str] = list(sample.notes)
    part_names = {p.name for p in specs}
    columns: list[pa.Field] = []
    seen: dict[str, str] = {}
    for f in sample.fields:
        low = f.name.lower()
        if low in part_names:
            notes.append(
                f"column {f.name!r} has the name of a partition column: the partition (from "
                "the path) takes its place"
            )
            continue
        if low in seen:
            raise FatalError(
                f"{topic}: columns {seen[low]!r} and {f.name!r} differ only in case; Athena, "
                "Hive and Spark compare column names case-insensitively (pass --columns)"
            )
        seen[low] = f.name
        columns.append(f)
    if not columns:
        raise FatalError(f"{topic}: no data column besides the partition columns")
    avro_schema = sample.avro_schema
    if avro_schema and len(columns) < len(sample.fields):
        avro_schema = _without_fields(avro_schema, part_names)
    loc = location or default_location(config, topic)
    if not loc.endswith("/"):
        loc += "/"
    return Table(
        topic=topic,
        name=name or default_table_name(topic),
        # backup files are plain Avro container files: readers see an Avro table
        format="avro" if fmt == "backup" else fmt,
        location=loc,
        columns=tuple(columns),
        partitions=specs,
        avro_schema=avro_schema,
        source=sample.source,
        notes=tuple(notes),
        sidecars=tuple(
            kind
            for kind, on in (
                ("keys", config.store_kafka_keys),
                ("headers", config.store_kafka_headers),
            )
            if on
        ),
    )


def _without_fields(schema_text: str, names: set[str]) -> str:
    """The Avro record schema without the top-level fields named like partition columns (the
    reader schema skips them; the partition column from the path takes their place)."""
    raw = json.loads(schema_text)
    if not isinstance(raw, dict) or raw.get("type") != "record":
        return schema_text
    raw["fields"] = [f for f in raw["fields"] if str(f.get("name", "")).lower() not in names]
    return json.dumps(raw, separators=(",", ":"))


def topics_for(config: SinkConfig, storage: Storage, wanted: Sequence[str]) -> list[str]:
    """``--topic`` values, else ``topics``, else the topics with a log matching ``topics.regex``."""
    if wanted:
        return list(wanted)
    if config.topics:
        return list(config.topics)
    from s3sink.status import logged_topics

    regex = re.compile(config.topics_regex or ".*")
    found = [t for t in logged_topics(storage) if regex.fullmatch(t)]
    if not found:
        raise FatalError(
            f"topics.regex={config.topics_regex}: no topic with a commit log yet; pass --topic"
        )
    return found


def generate(
    config: SinkConfig,
    *,
    engine: str = "athena",
    topics: Sequence[str] = (),
    table: str | None = None,
    location: str | None = None,
    columns: str | None = None,
    from_registry: bool = False,
    options: ProjectionOptions | None = None,
    storage: Storage | None = None,
) -> str:
    """The DDL of every selected topic, statements separated by a blank line."""
    if engine not in ENGINES:
        raise ConfigError(f"--engine: expected one of {', '.join(ENGINES)}, got {engine!r}")
    fmt = format_name(config)
    names = list(topics) or list(config.topics)
    own_storage = storage is None
    if fmt == "backup" and (columns is not None or from_registry):
        raise ConfigError(
            "--columns/--schema-from-registry: backup files have a fixed schema; drop the option"
        )
    if storage is None and (
        (columns is None and not from_registry and fmt != "backup") or not names
    ):
        from s3sink.sink import storage_from_config

        storage = storage_from_config(config)
    try:
        if not names:
            assert storage is not None
            names = topics_for(config, storage, ())
        if (table or location) and len(names) != 1:
            raise ConfigError(
                "--table/--location: name one topic (--topic T) when the config has several"
            )
        out: list[str] = []
        for topic in names:
            if fmt == "backup":
                sample = backup_sample()
            elif columns is not None:
                sample = Sample(tuple(parse_columns(columns)), "--columns")
                if fmt == "avro":
                    from formats.arrow_types import AvroSchemaBuilder

                    record, _ = AvroSchemaBuilder("s3sink").record(
                        pa.schema(sample.fields), default_table_name(topic)
                    )
                    sample = Sample(sample.fields, sample.source, json.dumps(record))
            elif from_registry:
                sample = sample_from_registry(config, topic, fmt)
            else:
                assert storage is not None
                sample = sample_from_output(storage, config, topic, fmt)
            t = build_table(config, topic, sample, name=table, location=location, options=options)
            out.append(render(t, engine))
        return "\n".join(out)
    finally:
        if own_storage and storage is not None:
            storage.close()


# ---------------------------------------------------------------------------------------------
# The command


def add_parser(sub: Any, with_config: Callable[[argparse.ArgumentParser], Any]) -> None:
    p = with_config(
        sub.add_parser(
            "ddl",
            help="print CREATE TABLE statements for the output (Athena, Spark, Trino)",
            description="CREATE TABLE for each topic's output: columns from the newest "
            "committed file (or the registry, or --columns), partition columns and Athena "
            "partition projection from the partitioner, the SerDe or format of format.class.",
        )
    )
    p.add_argument("--engine", choices=ENGINES, default="athena", help="SQL dialect")
    p.add_argument("--topic", action="append", default=[], help="only these topics")
    p.add_argument("--table", help="table name, optionally database.table (one topic)")
    p.add_argument("--location", help="table LOCATION (one topic); default from storage.url")
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--columns",
        metavar="'NAME TYPE, ...'",
        help="the columns by hand, Hive types (or @FILE); no output needed",
    )
    src.add_argument(
        "--schema-from-registry",
        action="store_true",
        help="columns from the latest <topic>-value schema in the Schema Registry",
    )
    p.add_argument(
        "--kafka-partitions",
        type=int,
        default=100,
        metavar="N",
        help="default partitioner: project partition=0..N-1 (default 100)",
    )
    p.add_argument(
        "--projection-start-year", type=int, default=2020, metavar="YEAR", help="(default 2020)"
    )
    p.add_argument(
        "--projection-end-year",
        type=int,
        default=2050,
        metavar="YEAR",
        help="last year of integer year projections (default 2050)",
    )
    p.add_argument(
        "--field-values",
        action="append",
        default=[],
        metavar="FIELD=V1,V2",
        help="known values of a partition field: an enum projection (default: injected)",
    )
    p.set_defaults(handler=cmd_ddl)


def cmd_ddl(args: argparse.Namespace) -> int:
    from s3sink.commands import _load
    from s3sink.logs import setup_logging

    cfg = _load(args)
    setup_logging(cfg.log_format, "WARNING")
    values: dict[str, list[str]] = {}
    for item in args.field_values:
        name, sep, rest = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--field-values {item!r}: expected FIELD=V1,V2")
        values[name.strip()] = [v.strip() for v in rest.split(",") if v.strip()]
    if args.kafka_partitions < 1:
        raise ConfigError("--kafka-partitions: must be at least 1")
    if args.projection_start_year > args.projection_end_year:
        raise ConfigError("--projection-start-year: must not be after --projection-end-year")
    options = ProjectionOptions(
        kafka_partitions=args.kafka_partitions,
        start_year=args.projection_start_year,
        end_year=args.projection_end_year,
        field_values=values,
    )
    text = generate(
        cfg,
        engine=args.engine,
        topics=args.topic,
        table=args.table,
        location=args.location,
        columns=args.columns,
        from_registry=args.schema_from_registry,
        options=options,
    )
    for line in text.splitlines():
        if line.startswith("-- warning:"):
            sys.stderr.write(f"s3sink: {line[3:]}\n")
    sys.stdout.write(text)
    return 0
