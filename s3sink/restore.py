"""``s3sink restore``: replay an archive back into Kafka, exactly once and resumable.

What is read
    Only committed files: the commit markers under ``_s3sink/log/<topic>/<partition>/`` name
    them (never the listing of ``topics.dir``), per source partition in marker order, which is
    offset order. A committed file that is not published yet is read from its staging key.
    Files of one commit (several with a field or time partitioner) are merged by offset when
    their records carry offsets. Bad records (``errors.tolerance=all``) are not replayed:
    neither the error files under ``_s3sink/errors/`` nor the records a dead-letter topic got
    instead, whose offsets lie inside a commit's range with no file row; the summary counts
    both (a marker's range is contiguous with the next, so such offsets are never a gap).

What is written
    Key, value (tombstones included), headers (order and duplicates kept) and the timestamp,
    as CreateTime (a target topic with ``message.timestamp.type=LogAppendTime`` overwrites it).
    Partitions map 1:1 when the target has at least as many partitions as the source
    (``--keep-partitions``, the default then), else by key: the producer's ``murmur2_random``
    partitioner, the Java client's murmur2 hash, so per-key order is kept; records without a
    key go to random partitions. The restore never talks to the source cluster.

Exactly once across kill -9
    The producer is transactional, ``transactional.id = s3sink-restore-<job>``. Every
    transaction holds a chunk of records *and* one progress record per source partition it
    touched, ``{next_offset: N}`` keyed ``<job>/<topic>/<partition>``, written to a small
    compacted progress topic on the target cluster (``--progress-topic``). Kafka commits both
    atomically. On start, ``init_transactions`` fences any older process of the same job and
    aborts its open transaction, then the progress topic is read (``read_committed``) to its
    end: records below ``next_offset`` are in the target, none above. A restart after a crash
    neither skips nor repeats a record for ``read_committed`` consumers; the aborted records
    of the killed run stay in the log, invisible to them (a ``read_uncommitted`` consumer sees
    them, so read a restored topic with ``isolation.level=read_committed``). The job is derived
    from the config name, source and target topics and the time window; ``--job`` names it.

Formats
    ``backup`` is byte-exact for everything. ``json`` and ``bytearray`` restore values as
    stored (byte-exact for raw values on one line / without the separator); keys, headers,
    timestamps and offsets only with ``store.kafka.metadata=true`` (json). ``parquet`` and
    ``avro`` restore raw ``value`` columns as they are and records re-encoded as JSON, or with
    ``--value-format avro`` as Confluent wire-format Avro whose schema (from the Avro file's
    header, or derived from the Parquet schema) is registered under ``<target>-value`` (not
    byte-exact either way). Files without per-record offsets are committed a whole commit at a time.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import gzip
import hashlib
import heapq
import io
import itertools
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from collections.abc import Mapping as StrMapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from operator import itemgetter
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal

from s3sink.commitlog import ROOT, FileEntry, Marker, seq_of
from s3sink.errors import FatalError, NotFoundError
from s3sink.logs import PartitionName

if TYPE_CHECKING:
    from s3sink.config import SinkConfig
    from s3sink.storage.base import Storage

log = logging.getLogger("s3sink.restore")

DEFAULT_PROGRESS_TOPIC = "_s3sink-restore-progress"
#: Test hook: SIGKILL this process after producing this many records (inside a transaction).
KILL_ENV = "S3SINK_RESTORE_KILL_AFTER"
TRANSACTION_TIMEOUT_MS = 60_000
PREFETCH_FILES = 4

Mapping = Literal["auto", "keep", "key"]
#: One record to produce: (source offset or -1, timestamp ms or -1, key, value, headers).
Rec = tuple[int, int, bytes | None, bytes | None, list[tuple[str, bytes | None]] | None]


class RestoreError(FatalError):
    """The restore cannot go on; the message says why and what to do."""


# ---------------------------------------------------------------------------------------------
# Options


@dataclass(frozen=True)
class RestoreOptions:
    to_topic: str
    source_topic: str | None = None
    bootstrap: str | None = None
    from_ms: int | None = None
    to_ms: int | None = None
    partitions: tuple[int, ...] | None = None
    mapping: Mapping = "auto"
    job: str | None = None
    progress_topic: str = DEFAULT_PROGRESS_TOPIC
    transaction_records: int = 10_000
    transaction_bytes: int = 16 * 1024 * 1024
    dry_run: bool = False
    #: How values of parquet/avro records are re-encoded: ``json``, or ``avro`` (Confluent
    #: wire format, the schema registered in ``schema_registry_url`` under ``value_subject``).
    value_format: str = "json"
    schema_registry_url: str | None = None
    value_subject: str | None = None


def parse_time(text: str) -> int:
    """Epoch milliseconds, or ISO 8601 (``2024-05-01``, ``2024-05-01T10:00:00Z``; no zone: UTC)."""
    s = text.strip()
    if re.fullmatch(r"-?\d+", s):
        return int(s)
    try:
        d = dt.datetime.fromisoformat(s)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected epoch milliseconds or ISO 8601 such as 2024-05-01T10:00:00Z"
        ) from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.UTC)
    return (d - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)


def parse_partitions(text: str) -> tuple[int, ...]:
    """``0,1,5-7`` -> (0, 1, 5, 6, 7)."""
    out: set[int] = set()
    for part in text.split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part.strip())
        if not m:
            raise argparse.ArgumentTypeError(f"{text!r}: expected partitions like 0,1,5-7")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        out.update(range(lo, hi + 1))
    return tuple(sorted(out))


def job_name(config: SinkConfig, source: str, opts: RestoreOptions) -> str:
    raw = opts.job or f"{config.name}.{source}.to.{opts.to_topic}"
    if opts.job is None and (opts.from_ms is not None or opts.to_ms is not None):
        window = f"{opts.from_ms}-{opts.to_ms}".encode()
        raw += "." + hashlib.sha1(window, usedforsecurity=False).hexdigest()[:8]
    return re.sub(r"[^A-Za-z0-9._-]", "_", raw)


# ---------------------------------------------------------------------------------------------
# Reading the archive


@dataclass
class PartitionPlan:
    partition: int
    #: Commit markers with files, in seq (= offset) order.
    markers: list[Marker]
    next_offset: int = 0
    resumed: bool = False

    @property
    def end(self) -> int:
        return self.markers[-1].end if self.markers else 0


SIDECAR_KINDS = ("keys", "headers")


def sidecar_of(topics_dir: str, key: str) -> tuple[str, str] | None:
    """For a keys/headers file (``store.kafka.keys``/``.headers``): its kind and the key of the
    data file it belongs to; None for any other file."""
    for kind in SIDECAR_KINDS:
        prefix = f"{topics_dir}/_{kind}/"
        if key.startswith(prefix):
            directory, _, name = key[len(prefix) :].rpartition("/")
            m = re.fullmatch(rf"(.*\+\d+\+\d+)\.{kind}(\..*)?", name)
            if m:
                return kind, f"{topics_dir}/{directory}/{m.group(1)}{m.group(2) or ''}"
    return None


@dataclass(frozen=True)
class Unit:
    """A data file of a commit and its keys/headers files."""

    data: FileEntry
    sidecars: dict[str, FileEntry]

    def files(self) -> list[FileEntry]:
        return [self.data, *(self.sidecars[k] for k in SIDECAR_KINDS if k in self.sidecars)]


def data_units(marker: Marker, topics_dir: str) -> list[Unit]:
    """The data files of a commit with their keys/headers files (error files left out)."""
    data: list[FileEntry] = []
    side: dict[str, dict[str, FileEntry]] = {}
    for f in marker.files:
        if f.key.startswith(f"{ROOT}/"):
            continue
        of = sidecar_of(topics_dir, f.key)
        if of is None:
            data.append(f)
        else:
            side.setdefault(of[1], {})[of[0]] = f
    return [Unit(f, side.get(f.key, {})) for f in data]


def _data_files(marker: Marker, topics_dir: str) -> list[FileEntry]:
    return [u.data for u in data_units(marker, topics_dir)]


def read_plan(
    storage: Storage, topic: str, partitions: Sequence[int] | None, workers: int = 16
) -> tuple[dict[int, PartitionPlan], int]:
    """The commit markers of ``topic`` per partition, and the partition count of the source
    (one more than the highest partition with a log)."""
    prefix = f"{ROOT}/log/{topic}/"
    keys: dict[int, list[tuple[int, str]]] = {}
    for info in storage.list(prefix):
        head, _, _ = info.key[len(prefix) :].partition("/")
        seq = seq_of(info.key)
        if head.isdigit() and seq is not None:
            keys.setdefault(int(head), []).append((seq, info.key))
    if not keys:
        raise RestoreError(
            f"no commit log for topic {topic} under {prefix} in {storage.describe()}: check "
            "--source-topic, storage.url / s3.bucket.name and topics.dir of the config"
        )
    count = max(keys) + 1
    wanted = sorted(keys) if partitions is None else list(partitions)
    missing = [p for p in wanted if p not in keys]
    if missing:
        raise RestoreError(
            f"--partitions: no commit log for partition(s) {missing} of {topic} "
            f"(the log has {sorted(keys)})"
        )

    def get(key: str) -> Marker:
        data, _ = storage.get(key)
        return Marker.decode(data, key)

    plans: dict[int, PartitionPlan] = {}
    with ThreadPoolExecutor(workers, thread_name_prefix="restore-log") as pool:
        for p in wanted:
            ordered = sorted(keys[p])
            markers = list(pool.map(get, [k for _, k in ordered]))
            commits = [m for m in markers if m.kind == "commit" and m.files]
            plans[p] = PartitionPlan(p, commits)
    return plans, count


def fetch_file(storage: Storage, f: FileEntry) -> bytes:
    """A committed file's bytes: the final key, or the staging key if not yet published."""
    try:
        data, _ = storage.get(f.key)
    except NotFoundError:
        try:
            data, _ = storage.get(f.staging)
        except NotFoundError:
            raise RestoreError(
                f"committed file {f.key} is missing (and so is its staging copy); run "
                "`s3sink verify` to inspect the archive"
            ) from None
    if len(data) != f.size:
        raise RestoreError(f"{f.key} has {len(data)} bytes, its commit marker says {f.size}")
    return data


@dataclass
class Decoded:
    """The records of one file (lazily) and what they carry."""

    kind: str
    records: Iterator[Rec]
    #: Every record carries its source offset (merge and resume inside a commit are possible).
    offsets: bool
    exact: bool
    #: Records carry their Kafka timestamps.
    timestamps: bool = True


def _decompress(key: str, data: bytes) -> tuple[str, bytes]:
    if key.endswith(".gz"):
        return key[:-3], gzip.decompress(data)
    if key.endswith(".zst"):
        import pyarrow as pa

        return key[:-4], pa.input_stream(pa.py_buffer(data), compression="zstd").read()
    return key, data


class AvroReencoder:
    """Re-encodes record values as Confluent wire-format Avro: each distinct value schema is
    registered once under ``subject`` (``<target topic>-value`` by default, the
    TopicNameStrategy of Confluent's serializers) and every value is ``0x00``, the 4-byte
    schema id, the Avro body."""

    def __init__(self, url: str, props: StrMapping[str, str], subject: str) -> None:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        from formats.decoders.registry import client_config as registry_client_config

        self.url = url
        self.subject = subject
        self._client = SchemaRegistryClient(registry_client_config(url, props))
        self._ids: dict[str, int] = {}

    @property
    def ids(self) -> list[int]:
        return sorted(set(self._ids.values()))

    def _register(self, text: str) -> int:
        sid = self._ids.get(text)
        if sid is not None:
            return sid
        from confluent_kafka.schema_registry import Schema
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            sid = int(self._client.register_schema(self.subject, Schema(text, "AVRO")))
        except SchemaRegistryError as exc:
            raise RestoreError(
                f"schema registry {self.url}: registering the value schema under subject "
                f"{self.subject}: {exc.error_message} (HTTP {exc.http_status_code}); the "
                "subject's compatibility rules may refuse it (use --value-subject)"
            ) from None
        except Exception as exc:  # connection errors: requests/httpx raise their own types
            raise RestoreError(f"schema registry {self.url}: {exc}") from None
        self._ids[text] = sid
        return sid

    def encoder(self, schema: Any) -> Callable[[Any], bytes]:
        """A function from a value (as fastavro reads it) to wire-format bytes."""
        import fastavro

        text = json.dumps(schema, separators=(",", ":"))
        header = b"\x00" + self._register(text).to_bytes(4, "big")
        parsed = fastavro.parse_schema(schema)
        write = fastavro.schemaless_writer

        def encode(value: Any) -> bytes:
            buf = io.BytesIO()
            buf.write(header)
            write(buf, parsed, value)
            return buf.getvalue()

        return encode


def decode_file(
    config: SinkConfig,
    key: str,
    data: bytes,
    expected: int | None = None,
    *,
    reencode: AvroReencoder | None = None,
) -> Decoded:
    """Records of an archived file, by its name (and Avro header): backup, json, bytearray,
    parquet or avro. ``expected`` (the marker's record count) checks that bytearray values
    split back into as many records. ``reencode``: parquet and avro records become
    wire-format Avro values instead of JSON."""
    if key.endswith(".parquet"):
        return _parquet(config, data, reencode)
    if key.endswith(".avro"):
        import fastavro

        reader = fastavro.reader(io.BytesIO(data))
        if reader.metadata.get("s3sink.format") == "backup":
            return Decoded("backup", _backup(reader), offsets=True, exact=True)
        return _avro(config, reader, reencode)
    name, raw = _decompress(key, data)
    if name.endswith(".json"):
        return _json_lines(config, raw)
    if name.endswith(config.format_bytearray_extension):
        values = _bytearray(config, raw)
        if expected is not None and len(values) != expected:
            raise RestoreError(
                f"{key}: splitting on format.bytearray.separator gives {len(values)} values, "
                f"the commit says {expected} records: some values contain the separator, so "
                "this archive cannot be restored record by record (the backup format can)"
            )
        return Decoded(
            "bytearray",
            iter([(-1, -1, None, v, None) for v in values]),
            offsets=False,
            exact=True,
            timestamps=False,
        )
    raise RestoreError(f"{key}: unknown file type; restore reads backup, json, bytearray, "
                       "parquet and avro files")  # fmt: skip


def _backup(reader: Iterable[Any]) -> Iterator[Rec]:
    for r in reader:
        h = r["headers"]
        yield (
            r["offset"],
            r["timestamp"] if r["timestamp_type"] != "NoTimestampType" else -1,
            r["key"],
            r["value"],
            [(x["name"], x["value"]) for x in h] if h else None,
        )


def key_as_text(config: SinkConfig) -> bool:
    from formats.kafka_meta import key_as_text as text_key

    return text_key(config)


def _b64(v: str | None) -> bytes | None:
    return None if v is None else base64.b64decode(v)


_KAFKA_JSON = b',"_kafka":{"topic":'


def _json_lines(config: SinkConfig, raw: bytes) -> Decoded:
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    text_key = key_as_text(config)
    with_meta = bool(lines) and all(
        line.startswith(b'{"value":') and line.rfind(_KAFKA_JSON) > 0 for line in lines[:1]
    )

    def plain() -> Iterator[Rec]:
        for line in lines:
            yield (-1, -1, None, None if line == b"null" else line, None)

    def meta() -> Iterator[Rec]:
        for line in lines:
            cut = line.rfind(_KAFKA_JSON)
            if not line.startswith(b'{"value":') or cut < 0:
                raise RestoreError("a json line without _kafka metadata in a file that has it")
            value = line[9:cut]
            m = json.loads(line[cut + 10 : -1])
            k = m.get("key")
            key = None if k is None else (k.encode() if text_key else base64.b64decode(k))
            ts = m.get("timestamp")
            headers = [(h["key"], _b64(h.get("value"))) for h in m.get("headers") or ()]
            yield (
                int(m["offset"]),
                -1 if ts is None else int(ts),
                key,
                None if value == b"null" else value,
                headers or None,
            )

    if with_meta:
        return Decoded("json", meta(), offsets=True, exact=True)
    return Decoded("json", plain(), offsets=False, exact=True, timestamps=False)


def _bytearray(config: SinkConfig, raw: bytes) -> list[bytes]:
    values = raw.split(config.format_bytearray_separator)
    if values and values[-1] == b"":
        values.pop()
    return values


Headers = list[tuple[str, bytes | None]]


def decode_sidecar(
    config: SinkConfig, key: str, data: bytes, kind: str, expected: int
) -> list[Any]:
    """The keys (``bytes | None``) or headers (``list | None``) of a keys/headers file, one per
    record of its data file, in order."""
    text_key = key_as_text(config)
    out: list[Any]
    if key.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        col = pq.read_table(pa.BufferReader(data)).column(0).to_pylist()
        out = col if kind == "keys" else [[(h["key"], h["value"]) for h in x or ()] for x in col]
    elif key.endswith(".avro"):
        import fastavro

        rows: list[Any] = list(fastavro.reader(io.BytesIO(data)))
        out = rows if kind == "keys" else [[(h["key"], h["value"]) for h in x or ()] for x in rows]
    else:
        name, raw = _decompress(key, data)
        if name.endswith(".json"):
            docs = [json.loads(line) for line in raw.split(b"\n") if line]
            if kind == "keys":
                out = [d if d is None or text_key else base64.b64decode(d) for d in docs]
            else:
                out = [[(h["key"], _b64(h.get("value"))) for h in d or ()] for d in docs]
        else:  # bytearray keys: a null key was written as an empty one
            out = [k or None for k in _bytearray(config, raw)]
    if kind == "keys":
        out = [k.encode() if isinstance(k, str) else k for k in out]
    else:
        out = [h or None for h in out]
    if len(out) != expected:
        raise RestoreError(
            f"{key}: {len(out)} {kind} for the {expected} records of its data file (bytearray "
            "keys containing format.bytearray.separator cannot be split back)"
        )
    return out


def _with_sidecars(
    records: Iterator[Rec], keys: list[bytes | None] | None, headers: list[Headers | None] | None
) -> Iterator[Rec]:
    for i, (offset, ts, key, value, hdrs) in enumerate(records):
        yield (
            offset,
            ts,
            key if keys is None else keys[i],
            value,
            hdrs if headers is None else headers[i],
        )


def _json_value(v: Any) -> bytes | None:
    from formats.arrow_types import json_default

    if v is None:
        return None
    if isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode()
    return json.dumps(v, default=json_default, separators=(",", ":"), ensure_ascii=False).encode()


def _kafka_fields(m: dict[str, Any], text_key: bool) -> tuple[int, int, bytes | None, Any]:
    ts = m.get("timestamp")
    if isinstance(ts, dt.datetime):
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=dt.UTC)
        ts = (ts - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)
    k = m.get("key")
    key = k.encode() if isinstance(k, str) else k
    headers = [(h["key"], h.get("value")) for h in m.get("headers") or ()]
    return int(m["offset"]), -1 if ts is None else int(ts), key, headers or None


def _avro(config: SinkConfig, reader: Any, reencode: AvroReencoder | None = None) -> Decoded:
    schema = reader.writer_schema
    branches = [b for b in schema if b != "null"] if isinstance(schema, list) else [schema]
    inner = branches[0] if len(branches) == 1 else None
    names = (
        [f["name"] for f in inner["fields"]]
        if isinstance(inner, dict) and inner.get("type") == "record"
        else []
    )
    has_meta = "_kafka" in names
    wrapped = names == ["value", "_kafka"]
    text_key = key_as_text(config)
    # the value's own schema (the file's record without _kafka), from the header's JSON
    declared = json.loads(reader.metadata["avro.schema"])
    if isinstance(declared, list):
        declared = next(b for b in declared if b != "null")
    if has_meta and isinstance(declared, dict):
        fields = [f for f in declared["fields"] if f["name"] != "_kafka"]
        declared = fields[0]["type"] if wrapped else {**declared, "fields": fields}
    raw_value = (declared in ("bytes", "string")) if wrapped else False
    to_value: Callable[[Any], bytes | None] = _json_value
    if reencode is not None and not raw_value:
        to_value = reencode.encoder(declared)

    def records() -> Iterator[Rec]:
        last = -1
        for datum in reader:
            if datum is None:
                yield (last, -1, None, None, None)
                continue
            if has_meta:
                offset, ts, key, headers = _kafka_fields(datum["_kafka"], text_key)
                last = offset
                value = (
                    datum["value"] if wrapped else {k: v for k, v in datum.items() if k != "_kafka"}
                )
                yield (offset, ts, key, to_value(value), headers)
            else:
                yield (-1, -1, None, to_value(datum), None)

    # tombstones carry no _kafka: offsets are only complete in files without null branch
    complete = has_meta and not isinstance(schema, list)
    value_type = (
        next(f["type"] for f in inner["fields"] if f["name"] == "value")
        if wrapped and isinstance(inner, dict)
        else inner
    )
    exact = value_type in ("bytes", "string") and not (has_meta and not wrapped)
    return Decoded("avro", records(), offsets=complete, exact=exact, timestamps=has_meta)


def _parquet(config: SinkConfig, data: bytes, reencode: AvroReencoder | None = None) -> Decoded:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from formats.arrow_types import rows_as_json

    pf = pq.ParquetFile(pa.BufferReader(data))
    names = pf.schema_arrow.names
    has_meta = "_kafka" in names
    text_key = key_as_text(config)
    value_names = [n for n in names if n != "_kafka"]
    raw_type = pf.schema_arrow.field("value").type if value_names == ["value"] else None
    raw = raw_type is not None and (
        pa.types.is_binary(raw_type)
        or pa.types.is_large_binary(raw_type)
        or pa.types.is_string(raw_type)
        or pa.types.is_large_string(raw_type)
    )

    wrapped = value_names == ["value"]
    avro_encode: Callable[[Any], bytes] | None = None
    convert: Callable[[Any], Any] | None = None
    if reencode is not None and not raw:
        from formats.arrow_types import AvroSchemaBuilder

        builder = AvroSchemaBuilder("s3sink")
        value_schema = pa.schema([f for f in pf.schema_arrow if f.name != "_kafka"])
        if wrapped:
            avro_schema, convert = builder.type(value_schema.field("value").type, "value")
        else:
            avro_schema, convert = builder.record(value_schema, "Value")
        avro_encode = reencode.encoder(avro_schema)

    def encoded(values_t: pa.Table) -> list[bytes]:
        assert avro_encode is not None
        out = []
        for row in values_t.to_pylist():
            datum = row["value"] if wrapped else row
            if convert is not None and datum is not None:
                datum = convert(datum)
            out.append(avro_encode(datum))
        return out

    def records() -> Iterator[Rec]:
        for i in range(pf.num_row_groups):
            t = pf.read_row_group(i)
            n = t.num_rows
            values_t = t.select(value_names)
            values: list[bytes | None]
            if raw:
                col = values_t.column(0).to_pylist()
                values = [v.encode() if isinstance(v, str) else v for v in col]
            else:
                docs = (
                    rows_as_json(values_t, wrapped=wrapped)
                    if avro_encode is None
                    else encoded(values_t)
                )
                nulls = None
                for c in values_t.columns:
                    isn = pc.is_null(c)
                    nulls = isn if nulls is None else pc.and_(nulls, isn)
                mask = nulls.to_pylist() if nulls is not None else [False] * n
                values = [None if m else d for d, m in zip(docs, mask, strict=True)]
            if has_meta:
                k = t.column("_kafka").combine_chunks()
                offsets = k.field("offset").to_pylist()
                stamps = k.field("timestamp").cast(pa.int64()).fill_null(-1).to_pylist()
                keys = k.field("key").to_pylist()
                headers = k.field("headers").to_pylist()
                for j in range(n):
                    key = keys[j]
                    h = headers[j]
                    yield (
                        offsets[j],
                        stamps[j],
                        key.encode() if text_key and isinstance(key, str) else key,
                        values[j],
                        [(x["key"], x["value"]) for x in h] if h else None,
                    )
            else:
                for v in values:
                    yield (-1, -1, None, v, None)

    return Decoded("parquet", records(), offsets=has_meta, exact=raw, timestamps=has_meta)


class Prefetcher:
    """Fetches files ahead of use, in order, a few at a time."""

    def __init__(self, storage: Storage, files: Sequence[FileEntry], depth: int) -> None:
        self._storage = storage
        self._files = iter(files)
        self._pool = ThreadPoolExecutor(max(1, depth), thread_name_prefix="restore-get")
        self._queue: deque[tuple[FileEntry, Future[bytes]]] = deque()
        for _ in range(depth):
            self._submit()

    def _submit(self) -> None:
        f = next(self._files, None)
        if f is not None:
            self._queue.append((f, self._pool.submit(fetch_file, self._storage, f)))

    def get(self, f: FileEntry) -> bytes:
        expected, fut = self._queue.popleft()
        if expected is not f:
            raise AssertionError("files fetched out of order")
        self._submit()
        return fut.result()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


# ---------------------------------------------------------------------------------------------
# Kafka


def _security(conf: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in conf.items() if k.startswith(("security.", "ssl.", "sasl."))}


def client_config(config: SinkConfig, bootstrap: str | None) -> dict[str, Any]:
    """Connection settings of the target cluster: its bootstrap servers plus the security
    settings of ``producer.*`` (and of ``consumer.*`` when the target is the source cluster)."""
    conf: dict[str, Any] = {"bootstrap.servers": bootstrap or config.bootstrap_servers}
    if bootstrap is None:
        conf.update(_security(dict(config.consumer)))
    conf.update(_security(dict(config.producer)))
    return conf


@dataclass
class Summary:
    source: str = ""
    target: str = ""
    job: str = ""
    mapping: str = ""
    records: int = 0
    outside_window: int = 0
    files: int = 0
    transactions: int = 0
    partitions: int = 0
    seconds: float = 0.0
    error_records: int = 0
    #: Offsets inside the committed ranges that hold no archived record.
    no_record: int = 0
    #: The config's errors.deadletterqueue.topic.name (where bad records went instead).
    dead_letter_topic: str | None = None
    resumed: dict[int, int] = field(default_factory=dict)
    kinds: set[str] = field(default_factory=set)
    inexact: set[str] = field(default_factory=set)
    #: What inexact values became: JSON, or wire-format Avro (with the subject and ids).
    reencoded_as: str = "JSON"
    unordered: bool = False
    stopped: bool = False

    def text(self) -> str:
        rate = self.records / self.seconds if self.seconds > 0 else 0.0
        head = "restore stopped (rerun to continue)" if self.stopped else "restore done"
        parts = [
            f"{head}: {self.records:,} records from {self.source} into {self.target}, "
            f"{self.partitions} partitions, {self.files} files, {self.transactions} "
            f"transactions, {self.seconds:.1f} s ({rate:,.0f} records/s); {self.mapping}"
        ]
        if self.outside_window:
            parts.append(f"{self.outside_window:,} records outside the time window skipped")
        if self.resumed:
            parts.append(
                "resumed "
                + ", ".join(f"partition {p} at offset {o}" for p, o in sorted(self.resumed.items()))
            )
        if self.error_records:
            parts.append(f"{self.error_records:,} bad records in error files not replayed")
        if self.no_record:
            why = (
                f"records sent to the dead-letter topic {self.dead_letter_topic}, "
                if self.dead_letter_topic
                else ""
            )
            parts.append(
                f"{self.no_record:,} offsets without a record in the archive ({why}removed by "
                "retention or compaction, or transaction markers) not replayed"
            )
        if self.inexact:
            parts.append(
                f"values from {', '.join(sorted(self.inexact))} files re-encoded as "
                f"{self.reencoded_as} (not byte-exact)"
            )
        if self.unordered:
            parts.append("order across the files of one commit unknown (no offsets stored)")
        parts.append(f"job {self.job}")
        return "; ".join(parts)


class Restorer:
    """One restore run. ``run()`` plans, fences older runs of the job, reads the progress and
    replays what is left, a transaction at a time."""

    def __init__(
        self,
        config: SinkConfig,
        opts: RestoreOptions,
        *,
        storage: Storage | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.config = config
        self.opts = opts
        if storage is None:
            from s3sink.sink import storage_from_config

            storage = storage_from_config(config)
        self.storage = storage
        self.progress = progress
        self.source = self._source_topic()
        self.job = job_name(config, self.source, opts)
        self.conf = client_config(config, opts.bootstrap)
        self.summary = Summary(
            source=self.source, target=f"{opts.to_topic} ({self.conf['bootstrap.servers']})"
        )
        self.summary.job = self.job
        self.summary.dead_letter_topic = config.errors_deadletterqueue_topic_name
        self._stop = threading.Event()
        self._producer: Any = None
        self._delivery_errors: list[str] = []
        self._kill_after = int(os.environ.get(KILL_ENV, "0") or "0")
        self._produced = 0
        #: Progress committed in Kafka, and progress of the open transaction.
        self.committed: dict[int, int] = {}
        self.pending: dict[int, int] = {}
        self._in_txn = False
        self._txn_records = 0
        self._txn_bytes = 0
        self._done = 0
        self._total = 0
        self._target_partition: Callable[[int], int] = lambda p: p
        self.plans: dict[int, PartitionPlan] = {}
        self.source_count = 0
        self.reencode = self._reencoder()

    def _reencoder(self) -> AvroReencoder | None:
        opts = self.opts
        if opts.value_format == "json":
            return None
        if opts.value_format != "avro":
            raise RestoreError(f"--value-format: json or avro, not {opts.value_format!r}")
        url = opts.schema_registry_url or self.config.value_converter_schema_registry_url
        if not url:
            raise RestoreError(
                "--value-format avro: name the schema registry with --schema-registry URL (or "
                "value.converter.schema.registry.url in the config)"
            )
        subject = opts.value_subject or f"{opts.to_topic}-value"
        return AvroReencoder(url, self.config.value_converter_props, subject)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        """Stop after the current transaction commits."""
        self._stop.set()

    # -- set-up ------------------------------------------------------------------------------
    def _source_topic(self) -> str:
        if self.opts.source_topic:
            return self.opts.source_topic
        topics = self.config.topics
        if len(topics) == 1:
            return topics[0]
        choices = ", ".join(topics) if topics else f"topics matching {self.config.topics_regex}"
        raise RestoreError(f"--source-topic: required, the config archives {choices}")

    def _admin(self) -> Any:
        from confluent_kafka.admin import AdminClient

        return AdminClient(dict(self.conf))

    def _target_partitions(self, admin: Any) -> int:
        topics = admin.list_topics(timeout=30).topics
        meta = topics.get(self.opts.to_topic)
        if meta is None or meta.error is not None:
            raise RestoreError(
                f"--to-topic {self.opts.to_topic} does not exist on "
                f"{self.conf['bootstrap.servers']}; create it first, e.g. with as many "
                f"partitions as the source to keep them 1:1: kafka-topics.sh --create --topic "
                f"{self.opts.to_topic} --partitions {self.source_count}"
            )
        return len(meta.partitions)

    def _choose_mapping(self, source_count: int, target_count: int) -> str:
        top = max(self.plans) if self.plans else 0
        mode = self.opts.mapping
        if mode == "keep" and target_count <= top:
            raise RestoreError(
                f"--keep-partitions: {self.opts.to_topic} has {target_count} partitions, the "
                f"source has partition {top}; use --by-key or add partitions to the target"
            )
        if mode == "auto":
            mode = "keep" if target_count >= source_count else "key"
        if mode == "keep":
            self._target_partition = lambda p: p
            return f"partitions kept 1:1 (source {source_count}, target {target_count} partitions)"
        self._target_partition = lambda p: -1
        why = (
            f"the target has {target_count} partitions, the source {source_count}"
            if self.opts.mapping == "auto"
            else "--by-key"
        )
        return (
            f"partitions by key hash (murmur2, as the Java client) because {why}; per-key order "
            "kept, records without a key spread at random"
        )

    def _ensure_progress_topic(self, admin: Any) -> None:
        from confluent_kafka import KafkaError, KafkaException
        from confluent_kafka.cimpl import NewTopic

        name = self.opts.progress_topic
        if name in admin.list_topics(timeout=30).topics:
            return
        fut = admin.create_topics(
            [NewTopic(name, 1, -1, config={"cleanup.policy": "compact"})], request_timeout=30
        )[name]
        try:
            fut.result(timeout=60)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise RestoreError(
                    f"cannot create the progress topic {name}: {exc.args[0].str()}; create it "
                    "(compacted, 1 partition) or point --progress-topic at one"
                ) from None
        log.info("created the progress topic %s", name)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            meta = admin.list_topics(topic=name, timeout=10).topics.get(name)
            if (
                meta is not None
                and meta.error is None
                and meta.partitions
                and all(p.leader >= 0 for p in meta.partitions.values())
            ):
                return
            time.sleep(0.1)

    def _progress_key(self, partition: int) -> bytes:
        return f"{self.job}/{self.source}/{partition}".encode()

    def _read_progress(self) -> dict[int, int]:
        """Committed progress of this job: partition -> next source offset."""
        from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

        name = self.opts.progress_topic
        consumer = Consumer(
            {
                **self.conf,
                "group.id": f"s3sink-restore-reader-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
            }
        )
        wanted = {self._progress_key(p): p for p in self.plans}
        out: dict[int, int] = {}
        try:
            meta = consumer.list_topics(topic=name, timeout=30).topics[name]
            parts = sorted(meta.partitions)
            highs = self._high_watermarks(name, parts)
            pending = {p for p in parts if highs[p] > 0}
            consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in parts])
            deadline = time.monotonic() + TRANSACTION_TIMEOUT_MS / 1000 + 60
            while pending:
                for m in consumer.consume(1000, 0.5):
                    err = m.error()
                    if err is not None:
                        if err.code() != KafkaError._PARTITION_EOF:
                            raise RestoreError(f"reading {name}: {err.str()}")
                        continue
                    p = wanted.get(m.key() or b"")
                    value = m.value()
                    if p is not None and value is not None:
                        out[p] = int(json.loads(value)["next_offset"])
                for tp in consumer.position([TopicPartition(name, p) for p in list(pending)]):
                    if tp.offset >= highs[tp.partition]:
                        pending.discard(tp.partition)
                if pending and time.monotonic() > deadline:
                    raise RestoreError(
                        f"could not read {name} to its end: another job holds a transaction "
                        "open on it; retry when it finished"
                    )
        finally:
            consumer.close()
        return out

    def _high_watermarks(self, topic: str, parts: Sequence[int]) -> dict[int, int]:
        """The log end offsets, open transactions included (a ``read_committed`` client is told
        the last stable offset instead, which stops before any open transaction)."""
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer(
            {
                **self.conf,
                "group.id": f"s3sink-restore-reader-{uuid.uuid4().hex[:8]}",
                "isolation.level": "read_uncommitted",
            }
        )
        try:
            return {
                p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
                for p in parts
            }
        finally:
            consumer.close()

    def _make_producer(self, mapping_key: bool) -> Any:
        from confluent_kafka import Producer

        conf: dict[str, Any] = {
            **self.conf,
            "client.id": f"s3sink-restore-{self.config.name}",
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 20,
            "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
        }
        conf.update(self.config.producer)
        conf["transactional.id"] = f"s3sink-restore-{self.job}"
        if mapping_key:
            conf.setdefault("partitioner", "murmur2_random")
        conf["on_delivery"] = self._on_delivery
        conf["delivery.report.only.error"] = True
        return Producer(conf, logger=logging.getLogger("s3sink.kafka"))

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._delivery_errors.append(f"{msg.topic()}: {err.str()}")

    # -- running -----------------------------------------------------------------------------
    def plan(self) -> dict[int, PartitionPlan]:
        self.plans, self.source_count = read_plan(self.storage, self.source, self.opts.partitions)
        return self.plans

    def run(self) -> Summary:
        started = time.monotonic()
        self.plan()
        admin = self._admin()
        try:
            target_count = self._target_partitions(admin)
        except RestoreError:
            if not self.opts.dry_run:
                raise
            target_count = self.source_count
            print(f"note: --to-topic {self.opts.to_topic} does not exist yet")
        self.summary.mapping = self._choose_mapping(self.source_count, target_count)
        self.summary.partitions = len(self.plans)
        log.info(
            "restore job %s: %s partitions %s -> %s on %s; %s",
            self.job,
            self.source,
            ",".join(map(str, sorted(self.plans))),
            self.opts.to_topic,
            self.conf["bootstrap.servers"],
            self.summary.mapping,
        )
        if self.opts.dry_run:
            for p, plan in sorted(self.plans.items()):
                tdir = self.config.topics_dir
                files = sum(len(_data_files(m, tdir)) for m in plan.markers)
                records = sum(f.records for m in plan.markers for f in _data_files(m, tdir))
                print(
                    f"partition {p}: {len(plan.markers)} commits, {files} files, {records:,} "
                    f"records, offsets up to {plan.end}"
                )
            print(f"mapping: {self.summary.mapping}; job {self.job}")
            return self.summary
        self._ensure_progress_topic(admin)
        self._producer = self._make_producer(self._target_partition(0) < 0)
        try:
            self._producer.init_transactions(60)
        except Exception as exc:
            raise RestoreError(
                f"the target cluster refused a transactional producer ({exc}); restore needs "
                "transactions (Kafka >= 0.11, and the idempotent-write / transactional ACLs)"
            ) from None
        stored = self._read_progress()
        for p, plan in self.plans.items():
            if p in stored:
                plan.next_offset = stored[p]
                plan.resumed = True
                self.summary.resumed[p] = stored[p]
                log.info("%s: resuming at offset %d", PartitionName(self.source, p), stored[p])
        self.committed = dict(stored)
        self.pending = dict(stored)
        self._total = sum(
            f.records
            for plan in self.plans.values()
            for m in plan.markers
            if m.end > plan.next_offset
            for f in _data_files(m, self.config.topics_dir)
        )
        try:
            for attempt in range(1, 4):
                try:
                    self._replay()
                    break
                except _Abortable as exc:
                    log.warning("transaction aborted (%s); replaying from the last commit", exc)
                    self._abort()
                    for p, plan in self.plans.items():
                        plan.next_offset = self.committed.get(p, 0)
                    self.pending = dict(self.committed)
                    if attempt == 3:
                        raise RestoreError(f"transactions keep failing: {exc}") from None
        finally:
            if self._in_txn:
                self._abort()
            self._producer.flush(30)
        self.summary.seconds = time.monotonic() - started
        return self.summary

    def _abort(self) -> None:
        try:
            self._producer.abort_transaction(60)
        except Exception as exc:
            log.warning("aborting the transaction: %s", exc)
        self._in_txn = False
        self._txn_records = self._txn_bytes = 0
        self._delivery_errors.clear()

    def _window(self, ts: int) -> bool:
        lo, hi = self.opts.from_ms, self.opts.to_ms
        return (lo is None or ts >= lo) and (hi is None or ts < hi) and ts >= 0

    def _prunable(self) -> bool:
        """Whether the markers' min/max timestamps are record timestamps (prune files by them)."""
        try:
            from partitioners import load_partitioner
            from s3sink.records import RecordBatch

            part = load_partitioner(self.config)
            return part.record_times(RecordBatch(self.source, 0), None, 0) is None
        except Exception:
            return False

    def _replay(self) -> None:
        windowed = self.opts.from_ms is not None or self.opts.to_ms is not None
        prune = windowed and self._prunable()
        work: list[tuple[PartitionPlan, Marker, list[Unit]]] = []
        for plan in sorted(self.plans.values(), key=lambda pl: pl.partition):
            for m in plan.markers:
                if m.end <= plan.next_offset:
                    continue
                units = []
                every = data_units(m, self.config.topics_dir)
                errors = sum(f.records for f in m.files if f.key.startswith(f"{ROOT}/"))
                # offsets the commit covers without an archived record: dead-lettered to a
                # topic, removed by retention or compaction, or transaction markers (never a
                # gap: the log is contiguous in offsets)
                self.summary.no_record += max(
                    0, m.end - m.start - errors - sum(u.data.records for u in every)
                )
                for u in every:
                    f = u.data
                    if prune and f.min_timestamp is not None and f.max_timestamp is not None:
                        lo, hi = self.opts.from_ms, self.opts.to_ms
                        if (hi is not None and f.min_timestamp >= hi) or (
                            lo is not None and f.max_timestamp < lo
                        ):
                            self.summary.outside_window += f.records
                            self._done += f.records
                            continue
                    units.append(u)
                self.summary.error_records += errors
                work.append((plan, m, units))
        fetcher = Prefetcher(
            self.storage, [f for _, _, us in work for u in us for f in u.files()], PREFETCH_FILES
        )
        try:
            for plan, marker, units in work:
                if self._stop.is_set():
                    break
                self._replay_marker(plan, marker, units, fetcher, windowed)
            self._commit()
        finally:
            fetcher.close()

    def _replay_marker(
        self,
        plan: PartitionPlan,
        marker: Marker,
        units: list[Unit],
        fetcher: Prefetcher,
        windowed: bool,
    ) -> None:
        p = plan.partition
        decoded = []
        for u in units:
            f = u.data
            d = decode_file(self.config, f.key, fetcher.get(f), f.records, reencode=self.reencode)
            if u.sidecars:
                found = {
                    kind: decode_sidecar(self.config, sf.key, fetcher.get(sf), kind, f.records)
                    for kind, sf in ((k, u.sidecars[k]) for k in SIDECAR_KINDS if k in u.sidecars)
                }
                d.records = _with_sidecars(d.records, found.get("keys"), found.get("headers"))
            if windowed and not d.timestamps:
                raise RestoreError(
                    f"{f.key}: --from-time/--to-time need record timestamps, which {d.kind} "
                    "files hold only with store.kafka.metadata=true (or use the backup format)"
                )
            decoded.append(d)
            self.summary.files += 1
            self.summary.kinds.add(d.kind)
            if not d.exact:
                self.summary.inexact.add(d.kind)
                if self.reencode is not None and self.reencode.ids:
                    self.summary.reencoded_as = (
                        f"Confluent wire-format Avro (subject {self.reencode.subject}, schema "
                        f"id {', '.join(map(str, self.reencode.ids))})"
                    )
        with_offsets = all(d.offsets for d in decoded)
        nxt = plan.next_offset
        if marker.start < nxt and not with_offsets:
            raise RestoreError(
                f"{PartitionName(self.source, p)}: the progress (offset {nxt}) points inside a "
                f"commit whose files have no offsets; restore it again under a new --job"
            )
        records: Iterator[Rec]
        if len(decoded) > 1 and with_offsets:
            records = heapq.merge(*(d.records for d in decoded), key=itemgetter(0))
        else:
            records = itertools.chain.from_iterable(d.records for d in decoded)
            if len(decoded) > 1:
                self.summary.unordered = True
        producer = self._producer
        topic = self.opts.to_topic
        target = self._target_partition(p)
        limit_records, limit_bytes = self.opts.transaction_records, self.opts.transaction_bytes
        for offset, ts, key, value, headers in records:
            self._done += 1
            if with_offsets and offset < nxt:
                continue
            if windowed and not self._window(ts):
                self.summary.outside_window += 1
            else:
                if not self._in_txn:
                    self._begin()
                while True:
                    try:
                        producer.produce(
                            topic,
                            value=value,
                            key=key,
                            partition=target,
                            timestamp=ts if ts > 0 else 0,
                            headers=headers,
                        )
                        break
                    except BufferError:
                        producer.poll(0.05)
                    except Exception as exc:
                        raise RestoreError(
                            f"{PartitionName(self.source, p)} offset {offset}: cannot produce "
                            f"to {topic}: {exc}"
                        ) from None
                self._txn_records += 1
                self._txn_bytes += (0 if value is None else len(value)) + (
                    0 if key is None else len(key)
                )
                self._produced += 1
                if self._kill_after and self._produced >= self._kill_after:
                    self._kill()
            if with_offsets:
                self.pending[p] = offset + 1
                if self._txn_records >= limit_records or self._txn_bytes >= limit_bytes:
                    self._commit()
                    if self._stop.is_set():
                        return
        self.pending[p] = max(self.pending.get(p, 0), marker.end)
        plan.next_offset = self.pending[p]
        if self._txn_records >= limit_records or self._txn_bytes >= limit_bytes:
            self._commit()

    def _kill(self) -> None:
        self._producer.flush(30)
        sys.stderr.write(f"s3sink: {KILL_ENV} reached after {self._produced} records, killing\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    def _begin(self) -> None:
        self._producer.begin_transaction()
        self._in_txn = True

    def _commit(self) -> None:
        """Write the progress of the open transaction and commit it (data + progress)."""
        from confluent_kafka import KafkaException

        changed = {p: n for p, n in self.pending.items() if self.committed.get(p) != n}
        if not changed and not self._in_txn:
            return
        if not self._in_txn:
            self._begin()
        now = int(time.time() * 1000)
        for p, n in sorted(changed.items()):
            value = {
                "job": self.job,
                "source_topic": self.source,
                "partition": p,
                "next_offset": n,
                "target_topic": self.opts.to_topic,
                "time_ms": now,
            }
            self._producer.produce(
                self.opts.progress_topic,
                key=self._progress_key(p),
                value=json.dumps(value, separators=(",", ":")).encode(),
            )
        while True:
            try:
                self._producer.commit_transaction(TRANSACTION_TIMEOUT_MS / 1000)
                break
            except KafkaException as exc:
                err = exc.args[0]
                if err.retriable():
                    continue
                if err.txn_requires_abort():
                    raise _Abortable(err.str()) from None
                raise RestoreError(
                    f"committing a transaction failed: {err.str()}"
                    + (
                        "; another restore with the same job took over (fenced)"
                        if err.fatal()
                        else ""
                    )
                ) from None
        if self._delivery_errors:  # pragma: no cover - the commit fails first
            raise _Abortable(self._delivery_errors[0])
        self._in_txn = False
        self.committed.update(changed)
        self.summary.transactions += 1
        self.summary.records += self._txn_records
        self._txn_records = self._txn_bytes = 0
        if self.progress is not None:
            self.progress(self._done, self._total)


class _Abortable(Exception):
    """The open transaction must be aborted; replay from the committed progress."""


# ---------------------------------------------------------------------------------------------
# CLI


def add_parser(sub: Any, with_config: Callable[[argparse.ArgumentParser], Any]) -> None:
    p = with_config(
        sub.add_parser(
            "restore",
            help="replay committed archive files into a Kafka topic (exactly once, resumable)",
            description=(
                "Replay the records of the commit log's files back into Kafka: keys, values, "
                "headers and timestamps; byte-exact from the backup format. Runs are "
                "resumable: rerun the same command after a crash."
            ),
        )
    )
    p.add_argument("--to-topic", required=True, help="target topic (must exist)")
    p.add_argument("--source-topic", help="archived topic to restore (default: the config's)")
    p.add_argument("--bootstrap", help="target cluster (default: bootstrap.servers of the config)")
    p.add_argument(
        "--from-time",
        type=parse_time,
        metavar="TIME",
        help="only records with a timestamp at or after TIME (ISO 8601 or epoch ms)",
    )
    p.add_argument(
        "--to-time",
        type=parse_time,
        metavar="TIME",
        help="only records with a timestamp before TIME (ISO 8601 or epoch ms)",
    )
    p.add_argument(
        "--partitions", type=parse_partitions, help="source partitions, e.g. 0,1,4-7 (default all)"
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--keep-partitions",
        dest="mapping",
        action="store_const",
        const="keep",
        help="source partition p -> target partition p (default when the target has as many)",
    )
    g.add_argument(
        "--by-key",
        dest="mapping",
        action="store_const",
        const="key",
        help="target partition by key hash (murmur2, as the Java client)",
    )
    p.add_argument("--job", help="job name: its progress and transactional.id (default derived)")
    p.add_argument(
        "--progress-topic",
        default=DEFAULT_PROGRESS_TOPIC,
        help=f"compacted topic on the target holding progress (default {DEFAULT_PROGRESS_TOPIC})",
    )
    p.add_argument(
        "--transaction-records",
        type=int,
        default=10_000,
        metavar="N",
        help="records per Kafka transaction (default 10000)",
    )
    p.add_argument(
        "--value-format",
        choices=("json", "avro"),
        default="json",
        help="parquet/avro records are produced as JSON (default) or as Confluent wire-format "
        "Avro with the schema registered in --schema-registry",
    )
    p.add_argument(
        "--schema-registry",
        metavar="URL",
        help="registry for --value-format avro (default value.converter.schema.registry.url; "
        "its value.converter.* client settings apply)",
    )
    p.add_argument(
        "--value-subject",
        metavar="SUBJECT",
        help="subject the value schema is registered under (default <to-topic>-value)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan, produce nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--progress-interval",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="seconds between progress log lines when stderr is not a terminal (default 10; "
        "0: after every transaction)",
    )
    p.set_defaults(handler=cmd_restore, mapping="auto")


def progress_bar(stream: Any = sys.stderr) -> Callable[[int, int], None]:
    last = [0.0]

    def show(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] < 0.5 and done < total:
            return
        last[0] = now
        pct = 100.0 * done / total if total else 100.0
        stream.write(f"\r[{'#' * int(pct / 5):<20}] {pct:5.1f}% records {done:,}/{total:,}")
        stream.flush()

    return show


def progress_log(every_s: float = 10.0) -> Callable[[int, int], None]:
    last = [time.monotonic()]

    def show(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= every_s:
            last[0] = now
            pct = 100.0 * done / total if total else 100.0
            log.info("restore progress: %d/%d records (%.0f%%)", done, total, pct)

    return show


def cmd_restore(args: argparse.Namespace) -> int:
    from s3sink.commands import _load
    from s3sink.logs import secret_values, setup_logging

    cfg = _load(args)
    setup_logging(cfg.log_format, cfg.log_level, secret_values(cfg))
    if args.transaction_records < 1:
        raise RestoreError("--transaction-records: must be at least 1")
    if args.progress_interval < 0:
        raise RestoreError("--progress-interval: must be 0 or more seconds")
    opts = RestoreOptions(
        to_topic=args.to_topic,
        source_topic=args.source_topic,
        bootstrap=args.bootstrap,
        from_ms=args.from_time,
        to_ms=args.to_time,
        partitions=args.partitions,
        mapping=args.mapping,
        job=args.job,
        progress_topic=args.progress_topic,
        transaction_records=args.transaction_records,
        dry_run=args.dry_run,
        value_format=args.value_format,
        schema_registry_url=args.schema_registry,
        value_subject=args.value_subject,
    )
    tty = sys.stderr.isatty() and not args.no_progress
    show = (
        progress_bar()
        if tty
        else (None if args.no_progress else progress_log(args.progress_interval))
    )
    from confluent_kafka import KafkaException

    restorer = Restorer(cfg, opts, progress=show)
    _install_signals(restorer)
    try:
        summary = restorer.run()
    except KafkaException as exc:
        err: Any = exc.args[0] if exc.args else exc
        raise RestoreError(f"Kafka: {err.str() if hasattr(err, 'str') else err}") from None
    if tty:
        sys.stderr.write("\n")
    if not opts.dry_run:
        summary.stopped = restorer.stopped
        print(summary.text())
    return 0


def _install_signals(restorer: Restorer) -> None:
    count = [0]

    def handler(signum: int, frame: FrameType | None) -> None:
        count[0] += 1
        if count[0] > 1:
            raise KeyboardInterrupt
        sys.stderr.write(
            f"s3sink: {signal.Signals(signum).name}: stopping after the current transaction; "
            "send it again to stop at once (the open transaction is then aborted)\n"
        )
        restorer.stop()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
