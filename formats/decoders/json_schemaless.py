"""``json`` (``org.apache.kafka.connect.json.JsonConverter`` with schemas off): plain JSON.

Values are parsed in bulk (:mod:`formats.decoders.jsonutil`) and typed by inference
(:mod:`formats.decoders.infer`: one widening schema per topic), or by an explicit
``value.schema`` (an Avro schema: its fields fix the columns and types; unknown fields are
dropped, values that do not convert are bad records). A value that is not a JSON object, is
not valid JSON, or is nested deeper than 64 levels is a bad record with a reason.

Part schema ids: ``inferred:<fingerprint>`` or ``schema:<fingerprint>``.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fastavro
import pyarrow as pa

from formats.decoders import infer, jsonutil
from formats.decoders.avro_arrow import avro_to_arrow
from formats.decoders.base import (
    META_ENCODING,
    META_LAZY,
    META_RAW_OFFSET,
    Decoded,
    DecodedPart,
    lazy_table,
)
from s3sink.errors import ConfigError

if TYPE_CHECKING:
    from s3sink.records import RecordBatch

_META = {META_ENCODING: b"json", META_RAW_OFFSET: b"0"}


def fingerprint(schema: pa.Schema) -> str:
    text = str(schema.remove_metadata()).encode()
    return hashlib.sha256(text).hexdigest()[:16]


def load_value_schema(text: str) -> pa.Schema:
    """``value.schema``: an Avro record schema (JSON text or ``@path``) as an Arrow schema."""
    try:
        if text.startswith("@"):
            text = Path(text[1:]).read_text(encoding="utf-8")
        parsed = fastavro.parse_schema(json.loads(text))
        arrow, _ = avro_to_arrow(parsed)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ConfigError(
            f"value.schema: not a usable Avro schema ({exc})", key="value.schema"
        ) from None
    if not pa.types.is_struct(arrow):
        raise ConfigError("value.schema: must be an Avro record schema", key="value.schema")
    return pa.schema(list(arrow))


class SchemalessJsonDecoder:
    """``columns=False`` (nothing reads the decoded columns, e.g. JSON lines with a partitioner
    that does not read fields): a clean batch is only checked to be valid JSON objects, as
    written, and returned as a column-less table (``META_LAZY``) without a schema id."""

    def __init__(self, explicit: pa.Schema | None = None, *, columns: bool = True) -> None:
        self._explicit = explicit
        self._columns = columns
        self._explicit_id = None if explicit is None else "schema:" + fingerprint(explicit)
        self._schemas: dict[str, tuple[pa.Schema, str]] = {}
        self._lock = threading.Lock()

    def inferred_schema(self, topic: str) -> pa.Schema | None:
        with self._lock:
            hit = self._schemas.get(topic)
        return None if hit is None else hit[0]

    def decode(self, batch: RecordBatch) -> Decoded:
        if self._explicit is None and None not in batch.values:
            joined = jsonutil.joined_if_clean(batch.values)  # type: ignore[arg-type]
            if joined is not None and not self._columns:
                checked = self._check_clean(batch, joined)
                if checked is not None:
                    return checked
            if joined is not None:
                fast = self._decode_clean(batch, joined)
                if fast is not None:
                    return fast
        errors: dict[int, str] = {}
        rows: list[int] = []
        docs: list[bytes] = []
        tombstones: list[int] = []
        for i, v in enumerate(batch.values):
            if v is None:
                tombstones.append(i)
                continue
            doc, reason = jsonutil.precheck(v)
            if doc is None:
                errors[i] = reason or "bad value"
                continue
            rows.append(i)
            docs.append(doc)
        if self._explicit is not None:
            table, bad = self._parse_explicit(docs, self._explicit)
            schema_id = self._explicit_id
        else:
            table, bad, schema_id = self._parse_inferred(batch.topic, docs)
        for j, reason in bad.items():
            errors[rows[j]] = reason
        good = [r for j, r in enumerate(rows) if j not in bad]
        if table is None:
            current = self._current(batch.topic)
            if not good and not tombstones:
                return Decoded((), errors)
            if not len(current):
                # nothing to type the rows with (only {} or tombstones so far): raw values
                keep = sorted(good + tombstones)
                rows_or_all = None if len(keep) == len(batch) else keep
                return Decoded((DecodedPart(rows_or_all, None, schema_id),), errors)
            for r in good:  # pragma: no cover - the parsers return a table for good rows
                errors[r] = "the value could not be parsed"
            good = []
            table = pa.table({f.name: pa.nulls(0, f.type) for f in current}, schema=current)
            schema_id = self._current_id(batch.topic)
        if tombstones:
            table, good = _with_tombstones(table, good, tombstones)
        all_rows = None if len(good) == len(batch) else good
        return Decoded(
            (DecodedPart(all_rows, table.replace_schema_metadata(_META), schema_id),), errors
        )

    def _current_id(self, topic: str) -> str | None:
        if self._explicit is not None:
            return self._explicit_id
        with self._lock:
            hit = self._schemas.get(topic)
        return None if hit is None else hit[1]

    def _current(self, topic: str) -> pa.Schema:
        if self._explicit is not None:
            return self._explicit
        return self.inferred_schema(topic) or pa.schema([])

    def _check_clean(self, batch: RecordBatch, joined: bytes) -> Decoded | None:
        """Validation only (``columns=False``): ``None`` if some value may be bad or nested too
        deeply (the caller decodes the batch in full, which finds them)."""
        values: list[bytes] = batch.values  # type: ignore[assignment]
        if not jsonutil.shallow(joined):
            return None
        if not jsonutil.valid_objects(joined, len(values), max(map(len, values))):
            return None
        table = lazy_table(len(values)).replace_schema_metadata({**_META, META_LAZY: b"1"})
        return Decoded((DecodedPart(None, table, None),), {})

    def _decode_clean(self, batch: RecordBatch, joined: bytes) -> Decoded | None:
        """The common case in bulk: no tombstone, every value one line of a JSON object (see
        :func:`jsonutil.joined_if_clean`). ``None``: some value is bad or nested too deeply;
        the caller sorts them out value by value."""
        topic = batch.topic
        table = self._bulk(batch.values, self.inferred_schema(topic), joined)  # type: ignore[arg-type]
        if table is None or jsonutil.type_depth(table.schema) >= jsonutil.MAX_DEPTH:
            return None
        merged, schema_id = self._widen(topic, table.schema)
        if not len(merged):  # only empty objects so far: no columns to write
            return Decoded((DecodedPart(None, None, schema_id),), {})
        table = infer.conform_table(table, merged)
        return Decoded((DecodedPart(None, table.replace_schema_metadata(_META), schema_id),), {})

    def _widen(self, topic: str, batch_schema: pa.Schema) -> tuple[pa.Schema, str]:
        """The topic's inferred schema widened by ``batch_schema``, and its id."""
        with self._lock:
            hit = self._schemas.get(topic)
            merged = infer.merge_schemas(None if hit is None else hit[0], batch_schema)
            if hit is not None and merged.equals(hit[0]):
                return hit
            schema_id = "inferred:" + fingerprint(merged)
            self._schemas[topic] = (merged, schema_id)
            return merged, schema_id

    # -- explicit schema --------------------------------------------------------------------
    def _parse_explicit(
        self, docs: list[bytes], schema: pa.Schema
    ) -> tuple[pa.Table | None, dict[int, str]]:
        if not docs:
            return None, {}
        t = jsonutil.bulk(docs, schema, "ignore")
        if t is not None:
            return t.select(schema.names), {}
        _, bad = jsonutil.parse_each(docs)
        for j, d in enumerate(docs):
            if j not in bad and jsonutil.bulk([d], schema, "ignore") is None:
                bad[j] = "value does not match value.schema"
        good = [d for j, d in enumerate(docs) if j not in bad]
        t = jsonutil.bulk(good, schema, "ignore") if good else None
        return (None if t is None else t.select(schema.names)), bad

    # -- inference ---------------------------------------------------------------------------
    def _parse_inferred(
        self, topic: str, docs: list[bytes]
    ) -> tuple[pa.Table | None, dict[int, str], str | None]:
        if not docs:
            with self._lock:
                hit = self._schemas.get(topic)
            return None, {}, None if hit is None else hit[1]
        known = self.inferred_schema(topic)
        bad: dict[int, str] = {}
        idx = list(range(len(docs)))  # original positions of the documents still in play
        table = self._bulk(docs, known)
        objs: list[Any] | None = None
        if table is None:
            objs, bad = jsonutil.parse_each(docs)
            if bad:
                idx = [j for j in idx if j not in bad]
                docs = [docs[j] for j in idx]
                objs = [objs[j] for j in idx]
                table = self._bulk(docs, known) if docs else None
        if not docs:
            return None, bad, None
        if table is None and objs is not None:
            # type conflicts inside the batch: infer in Python
            batch_schema = infer.infer_objects(objs)
        elif table is not None:
            batch_schema = table.schema
        else:  # pragma: no cover - objs is set whenever table is None
            return None, bad, None
        merged, schema_id = self._widen(topic, batch_schema)
        if not len(merged):  # only empty objects so far: no columns to write
            return None, bad, schema_id
        if table is not None:
            return infer.conform_table(table, merged), bad, schema_id
        assert objs is not None
        try:
            return infer.table_from_objects(objs, merged), bad, schema_id
        except (pa.ArrowException, ValueError, TypeError, OverflowError):
            keep = []
            for j, o in zip(idx, objs, strict=True):
                try:
                    infer.table_from_objects([o], merged)
                    keep.append(o)
                except (pa.ArrowException, ValueError, TypeError, OverflowError) as exc:
                    bad[j] = f"cannot store the value: {str(exc)[:200]}"
            return infer.table_from_objects(keep, merged), bad, schema_id

    def _bulk(
        self, docs: list[bytes], known: pa.Schema | None, joined: bytes | None = None
    ) -> pa.Table | None:
        if known is not None and len(known):
            t = jsonutil.bulk(docs, _parse_schema(known), "infer", joined=joined)
            if t is not None and not infer.has_temporal(t.schema):
                return t
        t = jsonutil.bulk(docs, joined=joined)
        if t is not None and infer.has_temporal(t.schema):
            # keep ISO-looking strings as text: parse again, naming those fields strings
            t = jsonutil.bulk(
                docs, _parse_schema(infer.merge_schemas(None, t.schema)), "infer", joined=joined
            )
        return t


def _parse_schema(schema: pa.Schema) -> pa.Schema:
    """The explicit schema for pyarrow's reader: null-typed fields left to inference."""
    return pa.schema([f for f in schema if not pa.types.is_null(f.type)])


def _with_tombstones(
    table: pa.Table, good: list[int], tombstones: list[int]
) -> tuple[pa.Table, list[int]]:
    """Interleave all-null rows for tombstones, keeping row order."""
    null_row = pa.table({f.name: pa.nulls(1, f.type) for f in table.schema}, schema=table.schema)
    combined = pa.concat_tables([table, null_row])
    null_index = table.num_rows
    order = sorted([(r, j) for j, r in enumerate(good)] + [(r, null_index) for r in tombstones])
    out = combined.take(pa.array([j for _, j in order], pa.int64()))
    return out, [r for r, _ in order]
