"""The per-partition commit log in S3: the source of truth for what is archived.

Layout under the storage root (outside ``topics.dir``, so table readers never scan it)::

    _s3sink/log/<topic>/<partition>/<seq:020>.json     commit and fence markers
    _s3sink/checkpoint/<topic>/<partition>.json        "markers <= seq are published" (a hint)
    _s3sink/staging/<topic>/<partition>/e<epoch>/<attempt>/...   data files as uploaded

Markers are created only with ``If-None-Match: *`` and are contiguous in offsets: marker n+1
starts where marker n ended. A commit of partition p: upload files to staging -> create marker
seq+1 -> publish (server-side copy staging -> final key, delete staging) -> Kafka offset commit
with the seq in its metadata (a hint only). On assignment, :meth:`PartitionLog.takeover` finds
the latest marker from a hint (cost independent of history length), writes a fence marker with
a higher epoch, rolls forward committed-but-unpublished markers, deletes staging files of older
epochs and stale multipart uploads, and returns the offset to consume from.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from s3sink.clock import Clock
from s3sink.errors import (
    CommitLogError,
    ConflictError,
    FencedError,
    NotFoundError,
)
from s3sink.failpoints import failpoint
from s3sink.logs import PartitionName
from s3sink.storage.base import ObjectInfo, Storage

log = logging.getLogger("s3sink.commitlog")

ROOT = "_s3sink"
FORMAT_VERSION = 1
CHECKPOINT_EVERY = 50

MarkerKind = Literal["commit", "fence"]


def log_prefix(topic: str, partition: int) -> str:
    return f"{ROOT}/log/{topic}/{partition}/"


def marker_key(topic: str, partition: int, seq: int) -> str:
    return f"{log_prefix(topic, partition)}{seq:020d}.json"


def checkpoint_key(topic: str, partition: int) -> str:
    return f"{ROOT}/checkpoint/{topic}/{partition}.json"


def staging_prefix(topic: str, partition: int) -> str:
    return f"{ROOT}/staging/{topic}/{partition}/"


def staging_epoch_of(key: str, topic: str, partition: int) -> int | None:
    rest = key[len(staging_prefix(topic, partition)) :]
    head = rest.split("/", 1)[0]
    if head.startswith("e") and head[1:].isdigit():
        return int(head[1:])
    return None


def seq_of(key: str) -> int | None:
    name = key.rsplit("/", 1)[-1]
    if name.endswith(".json") and name[:-5].isdigit():
        return int(name[:-5])
    return None


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of a commit. ``role`` is ``data``, ``errors`` (bad records under
    ``_s3sink/errors/``), ``keys`` or ``headers`` (sidecar files, one row per data row)."""

    staging: str
    key: str
    etag: str
    size: int
    records: int
    first_offset: int
    last_offset: int
    min_timestamp: int | None = None
    max_timestamp: int | None = None
    schema: str | None = None
    role: str = "data"

    @property
    def holds_records(self) -> bool:
        """Whether its rows are records of their own (not sidecar rows of a data file)."""
        return self.role in ("data", "errors")


@dataclass(frozen=True, slots=True)
class Marker:
    seq: int
    epoch: int
    kind: MarkerKind
    writer: str
    attempt: str
    #: First offset covered (the previous marker's end).
    start: int
    #: The consumer position after the last record (exclusive end).
    end: int
    files: tuple[FileEntry, ...] = ()
    created_ms: int = 0
    records: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        d = asdict(self)
        d["version"] = FORMAT_VERSION
        return json.dumps(d, separators=(",", ":"), sort_keys=True).encode()

    @staticmethod
    def decode(data: bytes, key: str = "?") -> Marker:
        try:
            d = json.loads(data)
            if d.pop("version", 1) > FORMAT_VERSION:
                raise CommitLogError(
                    f"{key}: marker written by a newer s3sink (format {d.get('version')}); "
                    "upgrade s3sink"
                )
            files = tuple(FileEntry(**f) for f in d.pop("files", ()))
            return Marker(files=files, **d)
        except (ValueError, TypeError, KeyError) as exc:
            raise CommitLogError(f"{key}: not a valid s3sink commit marker ({exc})") from None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    seq: int
    end: int
    epoch: int

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class TakeoverResult:
    fence: Marker
    rolled_forward: int
    staging_deleted: int
    uploads_aborted: int


class PartitionLog:
    """The commit log of one topic-partition, as seen by one writer attempt.

    Not thread-safe: the sink calls it from one thread at a time per partition.
    """

    def __init__(
        self,
        storage: Storage,
        topic: str,
        partition: int,
        writer_id: str,
        attempt_id: str,
        clock: Clock,
    ) -> None:
        self.storage = storage
        self.topic = topic
        self.partition = partition
        self.writer_id = writer_id
        self.attempt_id = attempt_id
        self.clock = clock
        self.latest: Marker | None = None
        self.fenced = False
        self._since_checkpoint = 0

    # -- reading -----------------------------------------------------------------------------
    @property
    def tp(self) -> str:
        return PartitionName(self.topic, self.partition)

    def read_marker(self, seq: int) -> Marker:
        key = marker_key(self.topic, self.partition, seq)
        data, _ = self.storage.get(key)
        return Marker.decode(data, key)

    def read_checkpoint(self) -> Checkpoint | None:
        try:
            data, _ = self.storage.get(checkpoint_key(self.topic, self.partition))
            d = json.loads(data)
            return Checkpoint(int(d["seq"]), int(d["end"]), int(d["epoch"]))
        except NotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            log.warning("%s: ignoring an unreadable checkpoint", self.tp)
            return None

    def list_seqs(self, after: int | None = None) -> Iterator[int]:
        start_after = (
            None if after is None or after < 0 else marker_key(self.topic, self.partition, after)
        )
        for info in self.storage.list(log_prefix(self.topic, self.partition), start_after):
            seq = seq_of(info.key)
            if seq is not None:
                yield seq

    def markers_from(self, hint: int | None) -> list[Marker]:
        """Markers with seq >= hint (all markers if the hint is None or wrong), in order.

        Costs one LIST (StartAfter the hint) and one GET per marker at or after the hint.
        """
        if hint is not None and hint >= 0:
            seqs = list(self.list_seqs(hint - 1))
            if seqs and seqs[0] == hint:
                return [self.read_marker(s) for s in seqs]
            log.info(
                "%s: progress hint seq %d does not match the log; reading it all", self.tp, hint
            )
        return [self.read_marker(s) for s in self.list_seqs(None)]

    # -- writing -----------------------------------------------------------------------------
    def _create(self, marker: Marker) -> None:
        """Create ``marker`` with If-None-Match. A 412 whose slot holds our own attempt means
        an earlier try of this very request landed; anything else means we were fenced."""
        key = marker_key(self.topic, self.partition, marker.seq)
        try:
            self.storage.put(
                key, marker.encode(), if_none_match=True, content_type="application/json"
            )
        except ConflictError:
            other = self.read_marker(marker.seq)
            if other.attempt == self.attempt_id and other.epoch == marker.epoch:
                log.info("%s: marker %d had landed before the retry", self.tp, marker.seq)
                return
            self.fenced = True
            raise FencedError(
                self.topic,
                self.partition,
                f"marker slot {marker.seq} was taken by writer {other.writer} "
                f"(epoch {other.epoch}, {other.kind}); this writer (epoch {marker.epoch}) "
                "stops writing the partition and re-reads the log",
            ) from None

    def superseded(self) -> Marker | None:
        """The marker another attempt wrote right after our latest one, if any: we were fenced
        (e.g. a takeover aborted our upload in flight). Marks this log fenced."""
        latest = self.latest
        if latest is None:
            return None
        try:
            other = self.read_marker(latest.seq + 1)
        except NotFoundError:
            return None
        if other.attempt == self.attempt_id:
            return None  # our own marker landed (its response was lost): not fenced
        self.fenced = True
        return other

    def takeover(
        self,
        hint_seq: int | None,
        initial_offset: Callable[[], int],
    ) -> TakeoverResult:
        """Become the owner: fence, roll forward, clean up. Returns the fence marker, whose
        ``end`` is where consumption resumes."""
        checkpoint = self.read_checkpoint()
        hints = [h for h in (hint_seq, checkpoint.seq if checkpoint else None) if h is not None]
        hint = max(hints) if hints else None
        # Markers read so far, kept across retries: a commit seen before a competing fence
        # landed may still be unpublished, and its files must be rolled forward, not deleted.
        seen: dict[int, Marker] = {}
        for _attempt in range(20):
            seen.update((m.seq, m) for m in self.markers_from(hint))
            markers = [seen[s] for s in sorted(seen)]
            last = markers[-1] if markers else None
            if last is None:
                start = initial_offset()
                seq, epoch = 0, 1
            else:
                start = last.end
                seq, epoch = last.seq + 1, max(m.epoch for m in markers) + 1
            fence = Marker(
                seq=seq,
                epoch=epoch,
                kind="fence",
                writer=self.writer_id,
                attempt=self.attempt_id,
                start=start,
                end=start,
                created_ms=self.clock.now_ms(),
            )
            try:
                self._create(fence)
            except FencedError:
                # Someone wrote that slot meanwhile (a zombie's last commit or a competing
                # takeover): read again from there.
                self.fenced = False
                hint = seq
                continue
            break
        else:
            raise CommitLogError(f"{self.tp}: could not write a fence marker after 20 tries")
        self.latest = fence
        staged = {i.key for i in self.storage.list(staging_prefix(self.topic, self.partition))}
        rolled = 0
        for m in markers:
            if m.kind == "commit" and any(f.staging in staged for f in m.files):
                rolled += self.publish(m, roll_forward=True)
        deleted = self._delete_stale_staging(markers, epoch)
        aborted = 0
        for pending in self.storage.list_pending_uploads(
            staging_prefix(self.topic, self.partition)
        ):
            ep = staging_epoch_of(pending.key, self.topic, self.partition)
            if ep is None or ep < epoch:
                self.storage.abort_pending_upload(pending)
                aborted += 1
        self.write_checkpoint()
        log.info(
            "%s: took over at seq %d epoch %d, resuming at offset %d (rolled forward %d "
            "files, deleted %d stale staging files, aborted %d uploads)",
            self.tp,
            fence.seq,
            epoch,
            fence.end,
            rolled,
            deleted,
            aborted,
        )
        return TakeoverResult(fence, rolled, deleted, aborted)

    def _delete_stale_staging(self, markers: list[Marker], epoch: int) -> int:
        referenced = {f.staging for m in markers for f in m.files}
        deleted = 0
        for info in list(self.storage.list(staging_prefix(self.topic, self.partition))):
            ep = staging_epoch_of(info.key, self.topic, self.partition)
            if info.key in referenced or (ep is not None and ep >= epoch):
                continue
            self.storage.delete(info.key)
            deleted += 1
        return deleted

    def commit(
        self, files: list[FileEntry], end: int, extra: dict[str, Any] | None = None
    ) -> Marker:
        """Create the next commit marker (files already in staging). Raises FencedError."""
        prev = self.latest
        if prev is None:
            raise CommitLogError(f"{self.tp}: commit before takeover")
        if self.fenced:
            raise FencedError(self.topic, self.partition, "already fenced")
        marker = Marker(
            seq=prev.seq + 1,
            epoch=prev.epoch,
            kind="commit",
            writer=self.writer_id,
            attempt=self.attempt_id,
            start=prev.end,
            end=end,
            files=tuple(files),
            created_ms=self.clock.now_ms(),
            records=sum(f.records for f in files if f.role == "data"),
            extra=extra or {},
        )
        if end < prev.end:
            raise CommitLogError(f"{self.tp}: commit end {end} before start {prev.end}")
        self._create(marker)
        self.latest = marker
        failpoint("after_marker")
        return marker

    def publish(self, marker: Marker, *, roll_forward: bool = False) -> int:
        """Copy each staging file to its final key, then delete the staging file. Idempotent:
        a file already published (staging gone, final present) is skipped."""
        done = 0
        for i, f in enumerate(marker.files):
            try:
                info = self.storage.copy(f.staging, f.key)
            except NotFoundError:
                final = self.storage.head(f.key)
                if final is not None and final.size == f.size:
                    continue
                raise CommitLogError(
                    f"{self.tp}: marker {marker.seq} references {f.staging}, which is gone, and "
                    f"its final file {f.key} is {'missing' if final is None else 'different'}; "
                    "run `s3sink verify` to inspect"
                ) from None
            if info.size != f.size:
                raise CommitLogError(
                    f"{self.tp}: published {f.key} has {info.size} bytes, marker says {f.size}"
                )
            self.storage.delete(f.staging)
            done += 1
            if i == 0 and not roll_forward:
                failpoint("mid_publish")
        if not roll_forward:
            self._since_checkpoint += 1
            if self._since_checkpoint >= CHECKPOINT_EVERY:
                self.write_checkpoint()
        return done

    def write_checkpoint(self) -> None:
        latest = self.latest
        if latest is None or self.fenced:
            return
        self.storage.put(
            checkpoint_key(self.topic, self.partition),
            Checkpoint(latest.seq, latest.end, latest.epoch).encode(),
            content_type="application/json",
        )
        self._since_checkpoint = 0


def upload_bytes(storage: Storage, key: str, data: bytes) -> ObjectInfo:
    """Put a small staging object in one request."""
    return storage.put(key, data)
