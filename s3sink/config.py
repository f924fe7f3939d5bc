"""Typed, frozen configuration, validated once at start-up.

One flat key space with the Confluent S3 sink's names wherever they exist. Every key is one
field of :class:`SinkConfig`; its metadata carries the key name, the parser, the doc text and
whether it is a secret. ``s3sink config docs`` and the README reference are generated from it.

Sources, lowest precedence first: the file (Kafka Connect JSON ``{"name", "config"}``, a flat
JSON object, ``.properties`` or YAML), environment variables (``S3SINK_`` + key upper-cased with
``.`` and ``-`` as ``_``), then explicit overrides (CLI flags).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from s3sink.errors import ConfigError

# ---------------------------------------------------------------------------------------------
# Parsers: str -> typed value, raising ValueError with a message that says what is expected.


def _str(v: str) -> str:
    return v


def _opt_str(v: str) -> str | None:
    return v if v.strip() != "" else None


def _int(v: str) -> int:
    try:
        return int(v.strip())
    except ValueError:
        raise ValueError(f"expected a whole number, got {v!r}") from None


def _bool(v: str) -> bool:
    s = v.strip().lower()
    if s in ("true", "1", "yes", "on"):
        return True
    if s in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {v!r}")


def _list(v: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in v.split(",") if x.strip())


def _size(v: str) -> int:
    """Bytes, as a number or with a unit: 64MiB, 64MB, 512KiB, 1GiB."""
    m = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]i?[bB]?|[bB])?\s*", v)
    if not m:
        raise ValueError(f"expected a size in bytes such as 67108864 or 64MiB, got {v!r}")
    n = int(m.group(1))
    unit = (m.group(2) or "b").lower()
    mult = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit[0]]
    if unit[0] != "b" and "i" not in unit and unit.endswith("b"):
        mult = {"k": 1000, "m": 1000**2, "g": 1000**3}[unit[0]]
    return n * mult


def _choice(*choices: str, fold: bool = True) -> Callable[[str], str]:
    def parse(v: str) -> str:
        s = v.strip()
        for c in choices:
            if (s.lower() if fold else s) == (c.lower() if fold else c):
                return c
        raise ValueError(f"expected one of {', '.join(choices)}, got {v!r}")

    return parse


def _timezone(v: str) -> str:
    try:
        ZoneInfo(v.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {v!r}; use an IANA name such as UTC or Europe/Paris"
        ) from None
    return v.strip()


_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|x([0-9a-fA-F]{2})|(.)|$)", re.S)
_SIMPLE_ESCAPES = {
    "n": b"\n",
    "r": b"\r",
    "t": b"\t",
    "0": b"\0",
    "a": b"\a",
    "b": b"\b",
    "f": b"\f",
    "v": b"\v",
    "\\": b"\\",
    "'": b"'",
    '"': b'"',
}


def _separator(v: str) -> bytes:
    """Text with escapes -> bytes: ``\\n \\r \\t \\0 \\\\`` and the like, ``\\xNN`` one byte,
    ``\\uXXXX`` / ``\\UXXXXXXXX`` a character as UTF-8; other text as UTF-8."""
    out = bytearray()
    pos = 0
    for m in _ESCAPE.finditer(v):
        out += v[pos : m.start()].encode("utf-8")
        pos = m.end()
        u4, u8, hex2, other = m.groups()
        if u4 or u8:
            code = int(u4 or u8, 16)
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise ValueError(f"{m.group(0)!r} is not a character")
            out += chr(code).encode("utf-8")
        elif hex2:
            out += bytes([int(hex2, 16)])
        elif other is None:
            raise ValueError(f"a lone backslash at the end of {v!r}; write \\\\ for a backslash")
        elif other in _SIMPLE_ESCAPES:
            out += _SIMPLE_ESCAPES[other]
        else:
            out += ("\\" + other).encode("utf-8")  # unknown escape: kept as written
    out += v[pos:].encode("utf-8")
    return bytes(out)


def _value_converter(v: str) -> str:
    """Checked like ``key.converter`` when the config is read; kept as written."""
    _key_converter(v)
    return v.strip()


def _key_converter(v: str) -> str:
    """A converter name the decoders know (short or Kafka Connect class name) -> its short name."""
    from formats.decoders import ALIASES

    s = v.strip()
    name = ALIASES.get(s) or ALIASES.get(s.lower())
    if name is not None:
        return name
    by_fold = {a.lower(): a for a in ALIASES}
    hint = difflib.get_close_matches(s.lower(), list(by_fold), n=1, cutoff=0.75)
    mean = f" (did you mean {by_fold[hint[0]]}?)" if hint else ""
    shorts = sorted(set(ALIASES.values()), key=list(ALIASES.values()).index)
    classes = [a for a in ALIASES if "." in a]
    raise ValueError(
        f"unknown converter {v!r}{mean}; use one of {', '.join(shorts)} or a Kafka Connect "
        f"class name: {', '.join(classes)}"
    )


# ---------------------------------------------------------------------------------------------


def key(
    name: str,
    default: Any,
    doc: str,
    parse: Callable[[str], Any] = _str,
    *,
    secret: bool = False,
    group: str = "general",
) -> Any:
    """A field of :class:`SinkConfig` bound to one configuration key."""
    meta = {"key": name, "parse": parse, "doc": doc, "secret": secret, "group": group}
    if isinstance(default, (list, dict, set)):
        raise TypeError("mutable default")
    return field(default=default, metadata=meta)


REQUIRED: Any = object()

#: Kafka Connect keys accepted for compatibility that have no effect here.
CONNECT_ONLY_KEYS: Mapping[str, str] = MappingProxyType(
    {
        "connector.class": "s3sink is the connector; the class name is not needed",
        "storage.class": "storage is chosen by storage.url or s3.bucket.name",
        "schema.generator.class": "schemas come from the converter or are inferred",
        "s3.credentials.provider.class": "credentials come from the default AWS chain",
        "errors.log.enable": "bad records are always logged with topic, partition and offset",
        "errors.log.include.messages": "record contents are never logged",
        "errors.retry.timeout": "storage retries are governed by s3.part.retries",
        "errors.retry.delay.max.ms": "storage retries are governed by s3.retry.backoff.ms",
        "value.converter.enhanced.avro.schema.support": "Avro schemas are kept as written",
        "key.converter.enhanced.avro.schema.support": "Avro schemas are kept as written",
        "enhanced.avro.schema.support": "Avro schemas are kept as written",
        "connect.meta.data": "use store.kafka.metadata=true for a _kafka column",
        "value.converter.connect.meta.data": "use store.kafka.metadata=true",
        "retry.backoff.ms": "storage retries are governed by s3.retry.backoff.ms",
        "directory.delim": "paths always use /",
        "file.delim": "file names always use +",
        "s3.object.tagging": "not supported; tags would cost a request per object",
        "s3.http.send.expect.continue": "handled by the AWS SDK",
        "s3.wan.mode": "use the AWS SDK's endpoint settings",
    }
)

#: Prefixes whose keys pass through to a client (librdkafka, the schema registry client).
PASSTHROUGH_PREFIXES = (
    "consumer.override.",
    "consumer.",
    "producer.override.",
    "producer.",
    "value.converter.",
    "key.converter.",
    "plugin.",
)

_SECRET_RE = re.compile(r"(password|secret|sasl\.|user\.info|\.key$|token|credentials)", re.I)


def is_secret(key_name: str) -> bool:
    if key_name in ("s3.sse.kms.key.id", "key.converter", "ssl.key.location"):
        return False
    return bool(_SECRET_RE.search(key_name))


@dataclass(frozen=True)
class SinkConfig:
    """The whole effective configuration. Build it with :func:`load_config` or :func:`parse`."""

    # -- what to read ------------------------------------------------------------------------
    name: str = key("name", "s3sink", "Connector name; used in the default group.id.")
    topics: tuple[str, ...] = key("topics", (), "Comma-separated topics to archive.", _list)
    topics_regex: str | None = key(
        "topics.regex", None, "Regex of topics to archive (instead of topics).", _opt_str
    )
    bootstrap_servers: str = key(
        "bootstrap.servers",
        REQUIRED,
        "Kafka bootstrap servers. Falls back to the KAFKA_BOOTSTRAP_SERVERS environment variable.",
        group="kafka",
    )
    group_id: str | None = key(
        "group.id", None, "Consumer group id (default s3sink-<name>).", _opt_str, group="kafka"
    )
    # -- where to write ----------------------------------------------------------------------
    storage_url: str | None = key(
        "storage.url",
        None,
        "Where to write: s3://bucket/prefix or file:///path. Default: s3://<s3.bucket.name>.",
        _opt_str,
        group="storage",
    )
    topics_dir: str = key(
        "topics.dir", "topics", "Top-level directory of the data files.", group="storage"
    )
    s3_bucket_name: str | None = key(
        "s3.bucket.name",
        None,
        "S3 bucket (when storage.url is not set).",
        _opt_str,
        group="storage",
    )
    s3_region: str | None = key(
        "s3.region",
        None,
        "AWS region (default: the AWS chain, else us-east-1).",
        _opt_str,
        group="storage",
    )
    store_url: str | None = key(
        "store.url",
        None,
        "S3 endpoint override, e.g. http://127.0.0.1:9000.",
        _opt_str,
        group="storage",
    )
    s3_path_style_access_enabled: bool = key(
        "s3.path.style.access.enabled", False, "Path-style S3 addressing.", _bool, group="storage"
    )
    s3_part_size: int = key(
        "s3.part.size",
        26214400,
        "Multipart upload part size in bytes (>= 5 MiB).",
        _size,
        group="storage",
    )
    s3_upload_concurrency: int = key(
        "s3.upload.concurrency",
        8,
        "Parts uploaded at once across all files.",
        _int,
        group="storage",
    )
    s3_part_retries: int = key(
        "s3.part.retries",
        8,
        "Retries of an S3 request on 5xx, throttling or resets.",
        _int,
        group="storage",
    )
    s3_retry_backoff_ms: int = key(
        "s3.retry.backoff.ms",
        200,
        "First retry backoff; doubles with full jitter.",
        _int,
        group="storage",
    )
    s3_ssea_name: str | None = key(
        "s3.ssea.name",
        None,
        "Server-side encryption: AES256 or aws:kms.",
        lambda v: _opt_str(_choice("", "AES256", "aws:kms")(v)),
        group="storage",
    )
    s3_sse_kms_key_id: str | None = key(
        "s3.sse.kms.key.id", None, "KMS key id or ARN for aws:kms.", _opt_str, group="storage"
    )
    s3_acl_canned: str | None = key(
        "s3.acl.canned",
        None,
        "Canned ACL, e.g. bucket-owner-full-control.",
        _opt_str,
        group="storage",
    )
    aws_access_key_id: str | None = key(
        "aws.access.key.id",
        None,
        "Access key (default: the AWS credential chain).",
        _opt_str,
        secret=True,
        group="storage",
    )
    aws_secret_access_key: str | None = key(
        "aws.secret.access.key",
        None,
        "Secret key (default: the AWS credential chain).",
        _opt_str,
        secret=True,
        group="storage",
    )
    # -- files -------------------------------------------------------------------------------
    format_class: str = key(
        "format.class",
        "json",
        "Output format: parquet, json, avro, bytearray, backup, a Confluent class name or a "
        "dotted path.",
        group="format",
    )
    s3_compression_type: str = key(
        "s3.compression.type",
        "none",
        "Compression of json/bytearray files: none, gzip, zstd.",
        _choice("none", "gzip", "zstd"),
        group="format",
    )
    s3_compression_level: int = key(
        "s3.compression.level",
        -1,
        "Compression level (-1: the codec's default).",
        _int,
        group="format",
    )
    parquet_codec: str = key(
        "parquet.codec",
        "snappy",
        "Parquet codec: none, snappy, gzip, zstd, lz4.",
        _choice("none", "snappy", "gzip", "zstd", "lz4", "uncompressed"),
        group="format",
    )
    parquet_row_group_bytes: int = key(
        "parquet.row.group.bytes",
        64 * 1024 * 1024,
        "Target Parquet row group size.",
        _size,
        group="format",
    )
    parquet_enable_dictionary: bool = key(
        "parquet.enable.dictionary",
        True,
        "Dictionary-encode Parquet columns (pyarrow falls back to plain pages when large).",
        _bool,
        group="format",
    )
    avro_codec: str = key(
        "avro.codec",
        "null",
        "Avro codec: null, deflate, snappy, zstd.",
        _choice("null", "deflate", "snappy", "zstd", "bzip2", "xz"),
        group="format",
    )
    format_bytearray_separator: bytes = key(
        "format.bytearray.separator",
        b"\n",
        "Separator between records of the bytearray format (escapes like \\n allowed).",
        _separator,
        group="format",
    )
    format_bytearray_extension: str = key(
        "format.bytearray.extension",
        ".bin",
        "File extension of the bytearray format.",
        group="format",
    )
    filename_offset_zero_pad_width: int = key(
        "filename.offset.zero.pad.width",
        10,
        "Zero padding of the start offset in file names.",
        _int,
        group="format",
    )
    # -- rotation ----------------------------------------------------------------------------
    flush_size: int = key(
        "flush.size",
        10000,
        "Records per Kafka partition after which files are committed.",
        _int,
        group="rotation",
    )
    file_max_bytes: int = key(
        "file.max.bytes",
        128 * 1024 * 1024,
        "Encoded bytes of a file after which it rolls (gzip/zstd json and bytearray: the codec "
        "is flushed every eighth of it, 16 KiB to 1 MiB of input, to know the size).",
        _size,
        group="rotation",
    )
    rotate_interval_ms: int = key(
        "rotate.interval.ms",
        -1,
        "Roll when record time moves this far past the file's first record (-1: off).",
        _int,
        group="rotation",
    )
    rotate_schedule_interval_ms: int = key(
        "rotate.schedule.interval.ms",
        -1,
        "Roll on the wall clock at multiples of this, aligned to timezone (-1: off).",
        _int,
        group="rotation",
    )
    buffer_memory_bytes: int = key(
        "buffer.memory.bytes",
        256 * 1024 * 1024,
        "Global budget for buffered records and open files; the largest roll early above it.",
        _size,
        group="rotation",
    )
    # -- partitioning ------------------------------------------------------------------------
    partitioner_class: str = key(
        "partitioner.class",
        "default",
        "default, field, time, hourly, daily, field_time, a Confluent class name or a dotted path.",
        group="partitioner",
    )
    partition_field_name: tuple[str, ...] = key(
        "partition.field.name",
        (),
        "Fields for the field partitioner (dots for nested).",
        _list,
        group="partitioner",
    )
    path_format: str | None = key(
        "path.format",
        None,
        "Joda-style time path, e.g. 'year'=YYYY/'month'=MM/'day'=dd.",
        _opt_str,
        group="partitioner",
    )
    partition_duration_ms: int = key(
        "partition.duration.ms",
        -1,
        "Time bucket width of the time partitioner.",
        _int,
        group="partitioner",
    )
    timestamp_extractor: str = key(
        "timestamp.extractor",
        "Wallclock",
        "Record, RecordField or Wallclock.",
        _choice("Record", "RecordField", "Wallclock"),
        group="partitioner",
    )
    timestamp_field: str | None = key(
        "timestamp.field",
        None,
        "Field with the record time for RecordField.",
        _opt_str,
        group="partitioner",
    )
    timestamp_field_unit: str = key(
        "timestamp.field.unit",
        "auto",
        "Unit of numeric timestamp.field values: ms, s, us, ns, or auto (by magnitude: below "
        "1e11 seconds, below 1e14 milliseconds, below 1e17 microseconds, else nanoseconds).",
        _choice("auto", "ms", "s", "us", "ns"),
        group="partitioner",
    )
    timezone: str = key(
        "timezone", "UTC", "Time zone of time paths and schedules.", _timezone, group="partitioner"
    )
    locale: str = key("locale", "en-US", "Locale of time paths.", group="partitioner")
    # -- record handling ---------------------------------------------------------------------
    key_converter: str = key(
        "key.converter",
        "bytes",
        "How store.kafka.keys and store.kafka.metadata write keys: string (StringConverter) as "
        "UTF-8 text; bytes, json, avro, jsonschema, protobuf (or their Kafka Connect class "
        "names) as the key's bytes, never decoded.",
        _key_converter,
        group="records",
    )
    value_converter: str = key(
        "value.converter",
        "bytes",
        "Value decoder: bytes, string, json, avro, jsonschema, protobuf (or a Confluent class).",
        _value_converter,
        group="records",
    )
    value_converter_schema_registry_url: str | None = key(
        "value.converter.schema.registry.url",
        None,
        "Schema Registry URL for value.converter.",
        _opt_str,
        group="records",
    )
    key_converter_schema_registry_url: str | None = key(
        "key.converter.schema.registry.url",
        None,
        "Schema Registry URL for key.converter.",
        _opt_str,
        group="records",
    )
    value_converter_schemas_enable: bool = key(
        "value.converter.schemas.enable",
        False,
        "JsonConverter: values are {schema, payload} envelopes.",
        _bool,
        group="records",
    )
    value_schema: str | None = key(
        "value.schema",
        None,
        "Schema of schemaless JSON values instead of inferring one: an Avro schema as JSON "
        "text, or @/path/to/schema.avsc.",
        _opt_str,
        group="records",
    )
    schema_compatibility: str = key(
        "schema.compatibility",
        "NONE",
        "NONE, BACKWARD, FORWARD or FULL.",
        _choice("NONE", "BACKWARD", "FORWARD", "FULL"),
        group="records",
    )
    behavior_on_null_values: str = key(
        "behavior.on.null.values",
        "fail",
        "Tombstones: fail, ignore or write.",
        _choice("fail", "ignore", "write"),
        group="records",
    )
    store_kafka_keys: bool = key(
        "store.kafka.keys",
        False,
        "Also write keys: .keys files in a sibling tree, <topics.dir>/_keys/.",
        _bool,
        group="records",
    )
    store_kafka_headers: bool = key(
        "store.kafka.headers",
        False,
        "Also write headers: .headers files in a sibling tree, <topics.dir>/_headers/.",
        _bool,
        group="records",
    )
    store_kafka_metadata: bool = key(
        "store.kafka.metadata",
        False,
        "Add a _kafka column: topic, partition, offset, timestamp, key, headers.",
        _bool,
        group="records",
    )
    errors_tolerance: str = key(
        "errors.tolerance",
        "none",
        "none: stop on a bad record; all: dead-letter it.",
        _choice("none", "all"),
        group="records",
    )
    errors_deadletterqueue_topic_name: str | None = key(
        "errors.deadletterqueue.topic.name",
        None,
        "Dead-letter topic; empty: bad records go under _s3sink/errors/ in the same commit.",
        _opt_str,
        group="records",
    )
    errors_deadletterqueue_context_headers_enable: bool = key(
        "errors.deadletterqueue.context.headers.enable",
        True,
        "Add __connect.errors.* headers to dead-lettered records.",
        _bool,
        group="records",
    )
    errors_deadletterqueue_topic_replication_factor: int = key(
        "errors.deadletterqueue.topic.replication.factor",
        3,
        "Replication factor when s3sink creates a missing dead-letter topic (1 partition; "
        "capped by the cluster's broker count, with a warning).",
        _int,
        group="records",
    )
    # -- running -----------------------------------------------------------------------------
    shutdown_timeout_ms: int = key(
        "shutdown.timeout.ms",
        30000,
        "How long a graceful stop may take to commit.",
        _int,
        group="running",
    )
    http_listen: str = key(
        "http.listen",
        "0.0.0.0:8080",
        "host:port of /metrics, /healthz, /readyz; none: off.",
        group="running",
    )
    log_format: str = key(
        "log.format",
        "auto",
        "auto (text on a terminal, else json), json or text.",
        _choice("auto", "json", "text"),
        group="running",
    )
    log_level: str = key(
        "log.level",
        "INFO",
        "DEBUG, INFO, WARNING or ERROR.",
        _choice("DEBUG", "INFO", "WARNING", "ERROR"),
        group="running",
    )
    consume_batch_size: int = key(
        "consume.batch.size",
        10000,
        "Records asked of Kafka per consume call.",
        _int,
        group="running",
    )
    tasks_max: int = key(
        "tasks.max",
        1,
        "Worker processes of run and catchup (as Kafka Connect's tasks): each a member of the "
        "consumer group with buffer.memory.bytes/N of the budget; the parent serves http.listen. "
        "1: the sink runs in the process itself.",
        _int,
        group="running",
    )
    # -- pass-through ------------------------------------------------------------------------
    consumer: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    producer: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    value_converter_props: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    key_converter_props: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    plugin: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: Notes for the operator (ignored Connect keys, changed meanings), logged at start-up.
    notes: tuple[str, ...] = ()

    # -- derived -----------------------------------------------------------------------------
    @property
    def effective_group_id(self) -> str:
        return self.group_id or f"s3sink-{self.name}"

    def redacted(self) -> dict[str, str]:
        """The effective configuration as key -> text, secrets replaced by ``[redacted]``."""
        out: dict[str, str] = {}
        for f in dataclasses.fields(self):
            meta = f.metadata
            if "key" not in meta:
                continue
            v = getattr(self, f.name)
            if v is None:
                continue
            out[meta["key"]] = "[redacted]" if meta["secret"] else _render(v)
        for prefix, attr in _PASSTHROUGH_FIELDS.items():
            for k, v in getattr(self, attr).items():
                full = prefix + k
                out[full] = "[redacted]" if is_secret(k) else v
        return dict(sorted(out.items()))


def _render(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple):
        return ",".join(str(x) for x in v)
    if isinstance(v, bytes):
        return v.decode("latin-1").encode("unicode_escape").decode("ascii")
    return str(v)


_PASSTHROUGH_FIELDS = {
    "consumer.": "consumer",
    "producer.": "producer",
    "value.converter.": "value_converter_props",
    "key.converter.": "key_converter_props",
    "plugin.": "plugin",
}

KEY_FIELDS: Mapping[str, dataclasses.Field[Any]] = MappingProxyType(
    {f.metadata["key"]: f for f in dataclasses.fields(SinkConfig) if "key" in f.metadata}
)

_ENV_TO_KEY = {k.upper().replace(".", "_").replace("-", "_"): k for k in KEY_FIELDS}
_ENV_PREFIXES = {
    "CONSUMER_": "consumer.",
    "PRODUCER_": "producer.",
    "VALUE_CONVERTER_": "value.converter.",
    "KEY_CONVERTER_": "key.converter.",
}


# ---------------------------------------------------------------------------------------------
# Reading files


def read_config_file(path: str | Path) -> dict[str, str]:
    """Flat key -> string map from a Connect JSON, flat JSON, ``.properties`` or YAML file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {p} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror}") from None
    suffix = p.suffix.lower()
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        return _flatten_document(data, p)
    if suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML ({exc})") from None
        return _flatten_document(data or {}, p)
    if suffix in (".properties", ".conf", ".cfg", ""):
        return parse_properties(text)
    raise ConfigError(f"{p}: unknown config file type; use .json, .properties, .yaml or .yml")


def _flatten_document(data: Any, p: Path) -> dict[str, str]:
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be an object of key: value pairs")
    if "config" in data and isinstance(data["config"], dict):
        # A Kafka Connect connector: {"name": ..., "config": {...}}
        inner = dict(data["config"])
        if "name" in data and "name" not in inner:
            inner["name"] = data["name"]
        data = inner
    out: dict[str, str] = {}
    _flatten_into(out, "", data, p)
    return out


def _flatten_into(out: dict[str, str], prefix: str, data: Mapping[str, Any], p: Path) -> None:
    for k, v in data.items():
        full = f"{prefix}{k}"
        if isinstance(v, dict):
            _flatten_into(out, full + ".", v, p)
        elif isinstance(v, list):
            out[full] = ",".join(str(x) for x in v)
        elif isinstance(v, bool):
            out[full] = "true" if v else "false"
        elif v is None:
            out[full] = ""
        else:
            out[full] = str(v)


def parse_properties(text: str) -> dict[str, str]:
    """Java ``.properties``: ``key=value`` or ``key: value``, ``#``/``!`` comments,
    backslash line continuations and escapes."""
    out: dict[str, str] = {}
    logical: list[str] = []
    for raw in text.splitlines():
        line = raw.lstrip() if not logical else raw.strip()
        if not logical and (not line or line[0] in "#!"):
            continue
        if line.endswith("\\") and not line.endswith("\\\\"):
            logical.append(line[:-1])
            continue
        logical.append(line)
        full = "".join(logical)
        logical = []
        m = re.match(r"((?:\\.|[^=:\s\\])+)\s*[=:\s]\s*(.*)$", full)
        if m:
            k, v = m.group(1), m.group(2)
        else:
            k, v = full, ""
        out[_unescape(k)] = _unescape(v)
    return out


def _unescape(s: str) -> str:
    if "\\" not in s:
        return s
    return re.sub(
        r"\\(u[0-9a-fA-F]{4}|.)",
        lambda m: (
            chr(int(m.group(1)[1:], 16))
            if m.group(1).startswith("u") and len(m.group(1)) == 5
            else {"n": "\n", "t": "\t", "r": "\r"}.get(m.group(1), m.group(1))
        ),
        s,
    )


# ---------------------------------------------------------------------------------------------
# Building the config


def env_overrides(environ: Mapping[str, str]) -> dict[str, str]:
    """``S3SINK_FLUSH_SIZE=5`` -> ``{"flush.size": "5"}``; client keys under their prefix."""
    out: dict[str, str] = {}
    for name, value in environ.items():
        if not name.startswith("S3SINK_"):
            continue
        rest = name[len("S3SINK_") :]
        if rest in _ENV_TO_KEY:
            out[_ENV_TO_KEY[rest]] = value
            continue
        for env_prefix, key_prefix in _ENV_PREFIXES.items():
            if rest.startswith(env_prefix):
                out[key_prefix + rest[len(env_prefix) :].lower().replace("_", ".")] = value
                break
    return out


def parse(
    raw: Mapping[str, str],
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> SinkConfig:
    """Validate ``raw`` (+ environment + overrides) into a :class:`SinkConfig`.

    All problems are collected and reported together, one line each.
    """
    env = os.environ if environ is None else environ
    merged: dict[str, str] = dict(raw)
    merged.update(env_overrides(env))
    if overrides:
        merged.update(overrides)
    if "bootstrap.servers" not in merged and env.get("KAFKA_BOOTSTRAP_SERVERS"):
        merged["bootstrap.servers"] = env["KAFKA_BOOTSTRAP_SERVERS"]

    errors: list[str] = []
    notes: list[str] = []
    values: dict[str, Any] = {}
    passthrough: dict[str, dict[str, str]] = {attr: {} for attr in _PASSTHROUGH_FIELDS.values()}

    for k, v in merged.items():
        if k in KEY_FIELDS:
            f = KEY_FIELDS[k]
            try:
                values[f.name] = f.metadata["parse"](v)
            except ValueError as exc:
                shown = "[redacted]" if f.metadata["secret"] else None
                msg = str(exc) if shown is None else "invalid value"
                errors.append(f"{k}: {msg}")
            continue
        if k in CONNECT_ONLY_KEYS:
            notes.append(f"{k} is a Kafka Connect key with no effect here: {CONNECT_ONLY_KEYS[k]}")
            continue
        if k == "transforms" or k.startswith("transforms."):
            if k == "transforms" and v.strip():
                errors.append(
                    "transforms: single message transforms are not supported; apply them "
                    "upstream (e.g. in a stream processor) and remove the transforms.* keys"
                )
            continue
        for prefix in PASSTHROUGH_PREFIXES:
            if k.startswith(prefix) and len(k) > len(prefix):
                short = prefix.split(".override.")[0] + "." if ".override." in prefix else prefix
                passthrough[_PASSTHROUGH_FIELDS[short]][k[len(prefix) :]] = v
                break
        else:
            hint = difflib.get_close_matches(k, list(KEY_FIELDS), n=1, cutoff=0.75)
            fix = f"did you mean {hint[0]}?" if hint else "remove it (see `s3sink config docs`)"
            errors.append(f"{k}: unknown key; {fix}")

    for f in dataclasses.fields(SinkConfig):
        if f.metadata.get("key") and f.default is REQUIRED and f.name not in values:
            errors.append(f"{f.metadata['key']}: required; {_REQUIRED_FIX[f.metadata['key']]}")

    for attr, props in passthrough.items():
        values[attr] = MappingProxyType(props)

    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors), key=None)
    if values.get("tasks_max", 1) > 1:
        n = values["tasks_max"]
        notes.append(
            f"tasks.max={n}: run and catchup start {n} worker processes in one consumer group, "
            f"each with buffer.memory.bytes/{n}"
        )
    values["notes"] = tuple(notes)
    cfg = SinkConfig(**values)
    _check(cfg)
    changed = changed_meanings(cfg, merged)
    return dataclasses.replace(cfg, notes=cfg.notes + changed) if changed else cfg


#: Partitioners without a time of their own: Kafka Connect ignores rotate.interval.ms with them.
_UNTIMED_PARTITIONERS = frozenset({"default", "field"})


def changed_meanings(cfg: SinkConfig, raw: Mapping[str, str]) -> tuple[str, ...]:
    """Notes on the keys set in ``raw`` that behave differently from Kafka Connect's S3 sink."""
    from partitioners import ALIASES as PARTITIONERS

    notes: list[str] = []
    if cfg.errors_tolerance == "all" and not cfg.errors_deadletterqueue_topic_name:
        notes.append(
            "errors.tolerance=all without errors.deadletterqueue.topic.name: bad records (values "
            "that do not decode or partition, tombstones with behavior.on.null.values=fail) are "
            "kept as JSON lines (key, value and headers in base64, with the reason) under "
            "_s3sink/errors/<topic>/<partition>/ in the same commit as the records around them; "
            "Kafka Connect drops them"
        )
    for kind, on in (("keys", cfg.store_kafka_keys), ("headers", cfg.store_kafka_headers)):
        if on:
            notes.append(
                f"store.kafka.{kind}=true: the .{kind} files go to a sibling tree, "
                f"{cfg.topics_dir}/_{kind}/<topic>/<partition path>/<data file name>.{kind}"
                f"<extension>, not next to the data files as in Kafka Connect, so that tables "
                f"over {cfg.topics_dir}/<topic> never read them as rows"
            )
    if cfg.key_converter not in ("bytes", "string"):
        unused = (
            "; key.converter.schema.registry.url is not used"
            if cfg.key_converter_schema_registry_url
            else ""
        )
        notes.append(
            f"key.converter={cfg.key_converter}: keys are never decoded (a key that would not "
            "convert is no error), and store.kafka.keys / store.kafka.metadata write each key "
            "as its bytes (base64 in JSON; for avro, jsonschema and protobuf with the 5-byte "
            "Schema Registry header), where Kafka Connect writes the converted key; only "
            f"key.converter=string (StringConverter) writes keys as UTF-8 text{unused}"
        )
    if (
        raw.get("value.converter", "").strip() == "org.apache.kafka.connect.json.JsonConverter"
        and "value.converter.schemas.enable" not in raw
    ):
        notes.append(
            "value.converter=JsonConverter without value.converter.schemas.enable: values are "
            "read as plain JSON (schema inferred, or value.schema), while Kafka Connect's "
            "JsonConverter defaults to schemas.enable=true ({schema, payload} envelopes); set "
            "value.converter.schemas.enable=true if the values are envelopes"
        )
    partitioner = PARTITIONERS.get(cfg.partitioner_class.strip(), cfg.partitioner_class.strip())
    if cfg.rotate_interval_ms > 0 and partitioner in _UNTIMED_PARTITIONERS:
        notes.append(
            f"rotate.interval.ms with partitioner.class={cfg.partitioner_class}: files roll when "
            "the Kafka record timestamp moves rotate.interval.ms past the file's first record; "
            "Kafka Connect ignores rotate.interval.ms unless the partitioner is time-based"
        )
    if cfg.rotate_schedule_interval_ms > 0:
        notes.append(
            "rotate.schedule.interval.ms: files roll on the wall clock as in Kafka Connect (idle "
            "partitions too), and the output stays exactly-once, which Kafka Connect does not "
            "guarantee with this key"
        )
    return tuple(notes)


_REQUIRED_FIX = {
    "bootstrap.servers": "set it in the file, or S3SINK_BOOTSTRAP_SERVERS / "
    "KAFKA_BOOTSTRAP_SERVERS in the environment",
}


def _check(cfg: SinkConfig) -> None:
    """Cross-field rules."""
    errors: list[str] = []
    if not cfg.topics and not cfg.topics_regex:
        errors.append("topics: required; set topics (comma-separated) or topics.regex")
    if cfg.topics and cfg.topics_regex:
        errors.append("topics.regex: set either topics or topics.regex, not both")
    if cfg.topics_regex:
        try:
            re.compile(cfg.topics_regex)
        except re.error as exc:
            errors.append(f"topics.regex: not a valid regular expression ({exc})")
    if cfg.storage_url is None and cfg.s3_bucket_name is None:
        errors.append(
            "storage.url: required; set storage.url (s3://bucket/prefix or file:///path) "
            "or s3.bucket.name"
        )
    if cfg.flush_size < 1:
        errors.append("flush.size: must be at least 1")
    if cfg.s3_part_size < 5 * 1024 * 1024:
        errors.append("s3.part.size: must be at least 5242880 (5 MiB), S3's minimum part size")
    if cfg.file_max_bytes < 1024:
        errors.append("file.max.bytes: must be at least 1024")
    if cfg.buffer_memory_bytes < 1024 * 1024:
        errors.append("buffer.memory.bytes: must be at least 1MiB")
    if cfg.tasks_max < 1:
        errors.append("tasks.max: must be at least 1 (the number of worker processes)")
    elif cfg.buffer_memory_bytes // cfg.tasks_max < 1024 * 1024:
        errors.append(
            f"tasks.max: each of the {cfg.tasks_max} tasks gets buffer.memory.bytes/"
            f"{cfg.tasks_max}, less than 1MiB; raise buffer.memory.bytes or lower tasks.max"
        )
    if cfg.s3_ssea_name == "aws:kms" and not cfg.s3_sse_kms_key_id:
        pass  # the bucket's default KMS key is used
    if cfg.s3_sse_kms_key_id and cfg.s3_ssea_name != "aws:kms":
        errors.append("s3.sse.kms.key.id: only applies with s3.ssea.name=aws:kms")
    if cfg.errors_deadletterqueue_topic_name and cfg.errors_tolerance != "all":
        errors.append(
            "errors.deadletterqueue.topic.name: only used with errors.tolerance=all; set it"
        )
    if cfg.timestamp_extractor == "RecordField" and not cfg.timestamp_field:
        errors.append("timestamp.field: required with timestamp.extractor=RecordField")
    if (cfg.aws_access_key_id is None) != (cfg.aws_secret_access_key is None):
        errors.append(
            "aws.secret.access.key: set both aws.access.key.id and aws.secret.access.key, "
            "or neither (then the default AWS credential chain is used)"
        )
    if cfg.http_listen != "none" and not re.fullmatch(r"[^:]*:\d+", cfg.http_listen):
        errors.append("http.listen: expected host:port such as 0.0.0.0:8080, or none")
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))


def load_config(
    path: str | Path | None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> SinkConfig:
    raw = read_config_file(path) if path is not None else {}
    return parse(raw, environ, overrides)


def docs_markdown() -> str:
    """The configuration reference, generated from :class:`SinkConfig`."""
    lines: list[str] = []
    current = None
    for f in dataclasses.fields(SinkConfig):
        meta = f.metadata
        if "key" not in meta:
            continue
        if meta["group"] != current:
            current = meta["group"]
            lines += ["", f"#### {current}", "", "| key | default | meaning |", "|---|---|---|"]
        default = f.default
        if default is REQUIRED:
            shown = "required"
        elif default is None or default == ():
            shown = ""
        else:
            shown = f"`{_render(default)}`"
        lines.append(f"| `{meta['key']}` | {shown} | {meta['doc']} |")
    lines += [
        "",
        "Client settings pass through under `consumer.` (librdkafka, e.g. "
        "`consumer.security.protocol`), `producer.` (dead-letter and restore producer) and "
        "`value.converter.` / `key.converter.` (Schema Registry client). Environment variables "
        "override the file: `S3SINK_` + the key upper-cased with `.` as `_` "
        "(`S3SINK_FLUSH_SIZE=1000`, `S3SINK_CONSUMER_SASL_PASSWORD=...`).",
        "",
        "Kafka Connect keys accepted and ignored: "
        + ", ".join(f"`{k}`" for k in CONNECT_ONLY_KEYS)
        + ".",
    ]
    return "\n".join(lines).lstrip("\n") + "\n"
