"""One :class:`PartitionWriter` per assigned Kafka partition: it owns all state of that partition.

It holds the open files (keyed by encoded output partition), the offset range they cover and
the partition's commit log. ``append`` decodes, partitions and encodes whole batches; files roll
when :func:`~s3sink.rotation.should_rotate` says so, or on record time, schema change, memory
pressure, revoke or shutdown. A roll *seals* the open files into a :class:`PendingCommit` that
the :class:`~s3sink.committer.Committer` finishes in the background (complete the uploads,
create the marker, publish), in order per partition, while consumption goes on.
"""

from __future__ import annotations

import base64
import enum
import json
import logging
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import TYPE_CHECKING, Any

from s3sink.commitlog import FileEntry, PartitionLog, staging_prefix
from s3sink.errors import BadRecordFatal, RecordError
from s3sink.logs import PartitionName
from s3sink.records import RecordBatch
from s3sink.rotation import RotationReason, WriterState, rotate_interval_split, should_rotate

if TYPE_CHECKING:
    import pyarrow as pa

    from formats.base import RecordWriter
    from s3sink.context import SinkContext
    from s3sink.storage.base import Upload

log = logging.getLogger("s3sink.writer")

ERRORS_ENCODED = "__s3sink_errors__"
#: Joins an encoded partition and a sidecar kind (keys, headers) into an open-file key.
SIDECAR_SEP = "\x00"


def _is_data(file_key: str) -> bool:
    return file_key != ERRORS_ENCODED and SIDECAR_SEP not in file_key


def _count(f: OpenFile, sub: RecordBatch, lo: int, hi: int) -> None:
    f.records += len(sub)
    f.last_offset = sub.offsets[-1]
    f.min_ts = lo if f.min_ts is None else min(f.min_ts, lo)
    f.max_ts = hi if f.max_ts is None else max(f.max_ts, hi)


class WriterStatus(enum.Enum):
    ACTIVE = "active"
    FAILED = "failed"
    CLOSED = "closed"


@dataclass(slots=True)
class OpenFile:
    encoded: str
    #: Key of this file in the writer's open files (encoded partition, plus a sidecar kind).
    file_key: str
    final_key: str
    staging_key: str
    upload: Upload
    writer: RecordWriter
    first_offset: int
    last_offset: int = -1
    records: int = 0
    min_ts: int | None = None
    max_ts: int | None = None
    schema: str | None = None

    def memory(self) -> int:
        return self.upload.buffered_bytes() + self.writer.buffered_bytes()


@dataclass(slots=True)
class PendingCommit:
    files: list[OpenFile]
    end: int
    reason: RotationReason
    records: int
    memory: int
    extra: dict[str, Any] = field(default_factory=dict)


class PartitionWriter:
    def __init__(
        self,
        ctx: SinkContext,
        topic: str,
        partition: int,
        plog: PartitionLog,
        start_offset: int,
    ) -> None:
        self.ctx = ctx
        self.topic = topic
        self.partition = partition
        self.log = plog
        self.tp = PartitionName(topic, partition)
        #: Next offset this writer expects; records below it are stale and skipped.
        self.position = start_offset
        self.files: dict[str, OpenFile] = {}
        self.records = 0
        self.opened_ms: int | None = None
        self.first_record_time: int | None = None
        self.last_written = start_offset - 1
        self.schema: str | None = None
        self.status = WriterStatus.ACTIVE
        self.failure: BaseException | None = None
        self._file_seq = 0
        self._in_append = False
        self._pending_bad: list[tuple[RecordBatch, list[str]]] = []
        #: Encoded bytes per raw value bytes of the last chunk, for ``file.max.bytes`` cuts.
        self._bytes_ratio = (1, 1)
        self.epoch = plog.latest.epoch if plog.latest else 0

    # -- accounting --------------------------------------------------------------------------
    def holds_records(self) -> bool:
        """Whether records wait here uncommitted: open files, or bad records not yet written."""
        return bool(self.files or self._pending_bad)

    def memory(self) -> int:
        return sum(f.memory() for f in self.files.values())

    def state(self) -> WriterState:
        largest = max((f.writer.bytes_written() for f in self.files.values()), default=0)
        return WriterState(self.records, largest, self.opened_ms, self.first_record_time)

    # -- appending ---------------------------------------------------------------------------
    def append(self, batch: RecordBatch) -> None:
        """Write a batch (records in offset order). Records below ``position`` are skipped."""
        if self.status is not WriterStatus.ACTIVE or not len(batch):
            return
        self._in_append = True
        try:
            self._append(batch)
        except BadRecordFatal:
            # Records of this batch before the bad one may sit in the open files already (a
            # JSON file takes several schemas without rolling): the commit the sink makes on
            # the way out (revoke) must cover them, and nothing past them.
            self.position = max(self.position, self.last_written + 1)
            raise
        finally:
            self._in_append = False

    def _append(self, batch: RecordBatch) -> None:
        if batch.offsets[0] < self.position:
            keep = [i for i, o in enumerate(batch.offsets) if o >= self.position]
            if not keep:
                return
            batch = batch.take(keep)
        ctx = self.ctx
        consumed_to = batch.offsets[-1] + 1
        bad: dict[int, str] = {}
        if None in batch.values:
            batch = self._handle_nulls(batch)
            if not len(batch):
                self.position = max(self.position, consumed_to)
                return
        need_values = ctx.format.needs_values() or ctx.partitioner.needs_values()
        if need_values:
            decoded = ctx.decoder.decode(batch)
            bad = dict(decoded.errors)
            parts = decoded.parts
        else:
            parts = ()
        if bad:
            self._bad_records(batch, bad)
        if not need_values:
            self._write_part(batch, None, None)
        else:
            for part in parts:
                sub = batch if part.rows is None else batch.take(part.rows)
                if not len(sub):
                    continue
                if (
                    ctx.rolls_on_schema_change
                    and any(_is_data(k) for k in self.files)
                    and part.schema_id is not None
                    and part.schema_id != self.schema
                ):
                    self.seal(RotationReason.SCHEMA_CHANGE)
                self.schema = part.schema_id
                self._write_part(sub, part.table, part.schema_id)
        self.position = max(self.position, consumed_to)

    def _handle_nulls(self, batch: RecordBatch) -> RecordBatch:
        mode = self.ctx.config.behavior_on_null_values
        # A format may keep tombstones itself (``backup``): an optional ``accepts_nulls()``.
        accepts = getattr(self.ctx.format, "accepts_nulls", None)
        if mode == "write" or (accepts is not None and accepts()):
            return batch
        nulls = [i for i, v in enumerate(batch.values) if v is None]
        if mode == "ignore":
            keep = [i for i, v in enumerate(batch.values) if v is not None]
            self.ctx.metrics.inc(
                "records_skipped_total", len(nulls), tp=self.tp, reason="tombstone"
            )
            return batch.take(keep)
        # fail: a tombstone is a bad record (dead-lettered with errors.tolerance=all)
        reasons = {
            i: "null value (tombstone) with behavior.on.null.values=fail; set it to ignore or write"
            for i in nulls
        }
        self._bad_records(batch, reasons)
        keep = [i for i, v in enumerate(batch.values) if v is not None]
        return batch.take(keep)

    def _bad_records(self, batch: RecordBatch, bad: dict[int, str]) -> None:
        if not bad:
            return
        ctx = self.ctx
        for i in sorted(bad):
            err = RecordError(self.topic, self.partition, batch.offsets[i], bad[i])
            ctx.metrics.inc("bad_records_total", 1, tp=self.tp)
            if ctx.config.errors_tolerance != "all":
                raise BadRecordFatal(err)
            log.warning("%s: %s", self.tp, err)
        rows = sorted(bad)
        bad_batch = batch.take(rows)
        if ctx.dead_letter is not None:
            ctx.dead_letter(bad_batch, [bad[i] for i in rows])
        else:
            # written into the error file of the commit that covers their offsets
            self._pending_bad.append((bad_batch, [bad[i] for i in rows]))
        ctx.metrics.inc("dead_lettered_records_total", len(rows), tp=self.tp)

    def _flush_bad(self, end: int) -> None:
        """Move pending bad records below ``end`` into this commit's error file."""
        keep: list[tuple[RecordBatch, list[str]]] = []
        for b, reasons in self._pending_bad:
            now = [i for i, o in enumerate(b.offsets) if o < end]
            later = [i for i, o in enumerate(b.offsets) if o >= end]
            if now:
                self._write_error_file(b.take(now), [reasons[i] for i in now])
            if later:
                keep.append((b.take(later), [reasons[i] for i in later]))
        self._pending_bad = keep

    def _write_error_file(self, batch: RecordBatch, reasons: Sequence[str]) -> None:
        """Bad records under ``_s3sink/errors/`` in the same commit as the good ones."""
        f = self.files.get(ERRORS_ENCODED)
        if f is None:
            f = self._open(ERRORS_ENCODED, batch.offsets[0], error_file=True)
        lines = []
        for i in range(len(batch)):
            k, v = batch.keys[i], batch.values[i]
            lines.append(
                json.dumps(
                    {
                        "topic": batch.topic,
                        "partition": batch.partition,
                        "offset": batch.offsets[i],
                        "timestamp": batch.timestamps[i],
                        "reason": reasons[i],
                        "key": None if k is None else base64.b64encode(k).decode(),
                        "value": None if v is None else base64.b64encode(v).decode(),
                        "headers": [
                            [hk, None if hv is None else base64.b64encode(hv).decode()]
                            for hk, hv in (batch.headers[i] or [])
                        ],
                    },
                    separators=(",", ":"),
                ).encode()
            )
        f.upload.write(b"\n".join(lines) + b"\n")
        f.records += len(batch)
        f.last_offset = max(f.last_offset, batch.offsets[-1])

    def _write_part(self, sub: RecordBatch, table: pa.Table | None, schema: str | None) -> None:
        ctx = self.ctx
        policy = ctx.policy
        now = ctx.clock.now_ms()
        times_opt = ctx.partitioner.record_times(sub, table, now)
        times = list(times_opt) if times_opt is not None else sub.timestamps
        n = len(sub)
        i = 0
        while i < n:
            j = min(n, i + max(1, policy.flush_size - self.records))
            if policy.rotate_interval_ms > 0:
                k = rotate_interval_split(policy, self.first_record_time, times[i:j])
                if k is not None:
                    if k == 0:
                        self.seal(RotationReason.ROTATE_INTERVAL)
                        continue
                    j = i + k
            j, raw = self._bytes_cut(sub.values, i, j)
            chunk = sub.slice(i, j) if (i, j) != (0, n) else sub
            ctab = None if table is None else (table.slice(i, j - i) if (i, j) != (0, n) else table)
            before = self._data_bytes()
            self._write_chunk(chunk, ctab, times[i:j], schema, now)
            grown = self._data_bytes() - before
            if grown > 0 and raw > 0:
                self._bytes_ratio = (grown, raw)
            i = j
            reason = should_rotate(policy, self.state(), now)
            if reason is not None:
                self.seal(reason)

    def _bytes_cut(self, values: Sequence[bytes | None], i: int, j: int) -> tuple[int, int]:
        """End of the chunk starting at ``i`` so that no file passes ``file.max.bytes`` by more
        than a record (a consumer batch can hold many files' worth), and the chunk's raw value
        bytes. Estimated from the raw values and the encoded/raw ratio of the last chunk; the
        file rolls after the chunk is written, on its real size."""
        room = self.ctx.policy.file_max_bytes - self.state().largest_file_bytes
        window = values[i:j]
        if None in window:
            window = [v or b"" for v in window]
        total = sum(map(len, window))  # type: ignore[arg-type]
        enc, raw = self._bytes_ratio
        if total * enc < room * raw or not window:  # the common case: no cut, no per-record list
            return j, total
        sizes = list(accumulate(map(len, window)))  # type: ignore[arg-type]
        k = max(1, bisect_left(sizes, room * raw, key=lambda s: s * enc) + 1)
        return i + k, sizes[k - 1]

    def _data_bytes(self) -> int:
        return sum(f.writer.bytes_written() for k, f in self.files.items() if _is_data(k))

    def _write_chunk(
        self,
        chunk: RecordBatch,
        table: pa.Table | None,
        times: Sequence[int],
        schema: str | None,
        now: int,
    ) -> None:
        ctx = self.ctx
        enc = ctx.partitioner.encode(chunk, table, now)
        if enc.errors:
            self._bad_records(chunk, dict(enc.errors))
        groups: dict[str, list[int] | None]
        if isinstance(enc.partitions, str):
            groups = {enc.partitions: None}
        else:
            groups = {}
            for idx, p in enumerate(enc.partitions):
                if p is None:
                    continue
                g = groups.get(p)
                if g is None:
                    groups[p] = [idx]
                else:
                    g.append(idx)
        written = 0
        for encoded, rows in groups.items():
            if rows is None:
                sub, stab, st = chunk, table, times
            else:
                sub = chunk.take(rows)
                stab = None if table is None else table.take(rows)
                st = [times[r] for r in rows]
            f = self.files.get(encoded)
            if f is None:
                f = self._open(encoded, sub.offsets[0])
                f.schema = schema
            f.writer.write(sub, stab)
            lo, hi = min(st), max(st)
            _count(f, sub, lo, hi)
            for kind in ctx.sidecars:
                side_key = f"{encoded}{SIDECAR_SEP}{kind}"
                side = self.files.get(side_key)
                if side is None:
                    side = self._open(encoded, sub.offsets[0], sidecar=kind)
                side.writer.write(sub, None)
                _count(side, sub, lo, hi)
            written += len(sub)
        if len(chunk):
            if self.first_record_time is None and times:
                self.first_record_time = times[0]
            self.records += len(chunk)
            self.last_written = chunk.offsets[-1]
            ctx.metrics.inc("records_written_total", written, tp=self.tp)

    def _open(
        self,
        encoded: str,
        first_offset: int,
        *,
        error_file: bool = False,
        sidecar: str | None = None,
    ) -> OpenFile:
        ctx = self.ctx
        cfg = ctx.config
        name = (
            f"{self.topic}+{self.partition}+{first_offset:0{cfg.filename_offset_zero_pad_width}d}"
        )
        if error_file:
            final = f"_s3sink/errors/{self.topic}/{self.partition}/{name}.json"
        else:
            directory = ctx.partitioner.path(self.topic, encoded)
            if sidecar is None:
                final = f"{cfg.topics_dir}/{directory}/{name}{ctx.format.extension()}"
            else:
                # a sibling tree (_keys/, _headers/): tables over topics.dir/<topic> and
                # engines that skip _-prefixed folders never read them as rows
                ext = ctx.sidecars[sidecar].extension()
                final = f"{cfg.topics_dir}/_{sidecar}/{directory}/{name}{ext}"
        self._file_seq += 1
        staging = (
            f"{staging_prefix(self.topic, self.partition)}e{self.epoch:010d}/"
            f"{self.log.attempt_id}/{self._file_seq:06d}-{final.rsplit('/', 1)[-1]}"
        )
        upload = ctx.storage.open_upload(staging)
        writer: RecordWriter
        if error_file:
            writer = _ErrorLinesWriter()
        elif sidecar is not None:
            writer = ctx.sidecars[sidecar].open(upload)
        else:
            writer = ctx.format.open(upload)
        file_key = encoded if sidecar is None else f"{encoded}{SIDECAR_SEP}{sidecar}"
        f = OpenFile(encoded, file_key, final, staging, upload, writer, first_offset)
        if not self.files:
            self.opened_ms = ctx.clock.now_ms()
        self.files[file_key] = f
        ctx.metrics.inc("files_opened_total", 1, tp=self.tp)
        return f

    # -- rolling -----------------------------------------------------------------------------
    def maybe_rotate(self, now_ms: int) -> None:
        """Roll on the wall clock even when no record arrives (idle partitions)."""
        if self.status is WriterStatus.ACTIVE and self.files:
            reason = should_rotate(self.ctx.policy, self.state(), now_ms)
            if reason is not None:
                self.seal(reason)

    def seal(self, reason: RotationReason) -> None:
        """Hand the open files to the committer and start afresh.

        The commit covers every offset below its end. Inside ``append`` that is the record
        after the last one written; between batches it is the position, so that records
        skipped or dead-lettered at the tail of a batch are covered too.
        """
        if self.status is not WriterStatus.ACTIVE:
            return
        end = self.last_written + 1 if self._in_append else self.position
        self._flush_bad(end)
        if not self.files:
            return
        files = list(self.files.values())
        pending = PendingCommit(
            files=files,
            end=end,
            reason=reason,
            records=self.records,
            memory=sum(f.memory() for f in files),
        )
        log.info(
            "%s: rolling %d file(s), %d records, offsets up to %d: %s",
            self.tp,
            len(files),
            self.records,
            pending.end - 1,
            reason.value,
        )
        self.ctx.metrics.inc("rotations_total", 1, tp=self.tp, reason=reason.value)
        self.files = {}
        self.records = 0
        self.opened_ms = None
        self.first_record_time = None
        self.ctx.committer.submit(self, pending)

    def abandon(self) -> None:
        """Drop open files without committing (fenced, failed, lost partition, fast stop)."""
        for f in self.files.values():
            try:
                f.upload.abort()
            except Exception:
                log.debug("%s: abort of %s failed", self.tp, f.staging_key, exc_info=True)
        self.files = {}
        self._pending_bad = []
        self.records = 0
        self.opened_ms = None
        self.first_record_time = None

    def fail(self, exc: BaseException) -> None:
        if self.status is WriterStatus.ACTIVE:
            self.status = WriterStatus.FAILED
            self.failure = exc


class _ErrorLinesWriter:
    """Error files are written by the writer directly; this only closes them."""

    def write(self, batch: RecordBatch, values: pa.Table | None) -> None:  # pragma: no cover
        raise NotImplementedError

    def bytes_written(self) -> int:
        return 0

    def buffered_bytes(self) -> int:
        return 0

    def close(self) -> Any:
        from formats.base import FileStats

        return FileStats(records=0, bytes=0)


def file_entry(f: OpenFile, etag: str, size: int) -> FileEntry:
    if f.encoded == ERRORS_ENCODED:
        role = "errors"
    elif SIDECAR_SEP in f.file_key:
        role = f.file_key.rsplit(SIDECAR_SEP, 1)[1]
    else:
        role = "data"
    return FileEntry(
        staging=f.staging_key,
        key=f.final_key,
        etag=etag,
        size=size,
        records=f.records,
        first_offset=f.first_offset,
        last_offset=f.last_offset,
        min_timestamp=f.min_ts,
        max_timestamp=f.max_ts,
        schema=f.schema,
        role=role,
    )


DeadLetter = Callable[[RecordBatch, Sequence[str]], None]
