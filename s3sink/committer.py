"""Finishing commits in the background, in order per partition, concurrently across partitions.

For each :class:`~s3sink.writer.PendingCommit`: close the format writers, complete the staging
uploads, create the marker (the commit point), publish the files, and queue the Kafka offset
hint for the consumer thread. A failure marks the writer failed; the sink then abandons what is
queued for that partition and takes it over again (the log says what landed).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from s3sink.clock import Clock
from s3sink.errors import FencedError
from s3sink.failpoints import failpoint
from s3sink.metrics import Metrics

if TYPE_CHECKING:
    from s3sink.commitlog import Marker
    from s3sink.writer import PartitionWriter, PendingCommit

log = logging.getLogger("s3sink.committer")


@dataclass(frozen=True, slots=True)
class OffsetHint:
    topic: str
    partition: int
    offset: int
    seq: int


class Committer:
    def __init__(
        self,
        workers: int,
        clock: Clock,
        metrics: Metrics,
        on_committed: Callable[[PartitionWriter, Marker], None],
    ) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="s3sink-commit")
        self._clock = clock
        self._metrics = metrics
        self._on_committed = on_committed
        self._lock = threading.Condition()
        self._queues: dict[int, deque[PendingCommit]] = {}
        self._writers: dict[int, PartitionWriter] = {}
        self._running: set[int] = set()
        self._memory = 0

    # -- queueing ----------------------------------------------------------------------------
    def submit(self, writer: PartitionWriter, pending: PendingCommit) -> None:
        wid = id(writer)
        with self._lock:
            self._queues.setdefault(wid, deque()).append(pending)
            self._writers[wid] = writer
            self._memory += pending.memory
            if wid in self._running:
                return
            self._running.add(wid)
        self._pool.submit(self._drain, wid)

    def memory(self) -> int:
        with self._lock:
            return self._memory

    def queued(self, writer: PartitionWriter) -> int:
        with self._lock:
            return len(self._queues.get(id(writer), ())) + (id(writer) in self._running)

    def wait_idle(
        self, writer: PartitionWriter | None = None, timeout: float | None = None
    ) -> bool:
        """Wait until nothing is queued or running (for ``writer``, or for all)."""

        def idle() -> bool:
            if writer is None:
                return not self._running
            return id(writer) not in self._running

        with self._lock:
            return self._lock.wait_for(idle, timeout)

    def shutdown(self, wait: bool = True) -> None:
        """Stop the workers; ``wait=False`` returns at once (a commit in flight goes on)."""
        self._pool.shutdown(wait=wait, cancel_futures=False)

    # -- work --------------------------------------------------------------------------------
    def _drain(self, wid: int) -> None:
        while True:
            with self._lock:
                q = self._queues.get(wid)
                writer = self._writers[wid]
                if not q:
                    self._running.discard(wid)
                    self._queues.pop(wid, None)
                    self._writers.pop(wid, None)
                    self._lock.notify_all()
                    return
                pending = q.popleft()
            try:
                if writer.failure is None:
                    self._commit(writer, pending)
                else:
                    _abort(pending)
            except BaseException as exc:
                _abort(pending)
                if isinstance(exc, Exception) and not isinstance(exc, FencedError):
                    exc = _fenced_instead(writer, exc)
                if isinstance(exc, FencedError):
                    # Our marker is not in the log (its slot holds another attempt's), so no
                    # one will ever reference these files: delete what reached staging. Only
                    # when fenced: after any other failure the marker may have landed.
                    _delete_staged(writer, pending)
                    self._metrics.inc("fenced_total", 1, tp=writer.tp)
                    log.warning("%s: fenced: %s", writer.tp, exc)
                else:
                    self._metrics.inc(
                        "commit_failures_total", 1, tp=writer.tp, cause=type(exc).__name__
                    )
                    log.error(
                        "%s: commit failed, will take the partition over again: %s", writer.tp, exc
                    )
                writer.fail(exc)
            finally:
                with self._lock:
                    self._memory -= pending.memory

    def _commit(self, writer: PartitionWriter, pending: PendingCommit) -> None:
        from s3sink.writer import file_entry

        started = self._clock.monotonic()
        entries = []
        for f in pending.files:
            stats = f.writer.close()
            failpoint("mid_multipart_upload")
            info = f.upload.complete()
            entries.append(file_entry(f, info.etag, info.size))
            self._metrics.inc("bytes_written_total", info.size, tp=writer.tp)
            del stats
        failpoint("after_staging_upload")
        if writer.ctx.before_commit is not None:
            writer.ctx.before_commit()
        marker = writer.log.commit(entries, pending.end, pending.extra)
        committed = self._clock.monotonic()
        writer.log.publish(marker)
        published = self._clock.monotonic()
        self._metrics.observe("commit_seconds", committed - started)
        self._metrics.observe("publish_seconds", published - committed)
        self._metrics.inc("commits_total", 1, tp=writer.tp)
        self._metrics.inc("files_committed_total", len(entries), tp=writer.tp)
        self._metrics.inc("records_committed_total", marker.records, tp=writer.tp)
        self._metrics.inc("bytes_committed_total", sum(e.size for e in entries), tp=writer.tp)
        log.info(
            "%s: committed seq %d offsets [%d, %d): %d records in %d file(s) (%s)",
            writer.tp,
            marker.seq,
            marker.start,
            marker.end,
            marker.records,
            len(entries),
            pending.reason.value,
        )
        self._on_committed(writer, marker)


def _fenced_instead(writer: PartitionWriter, exc: Exception) -> Exception:
    """A commit that failed because a new owner took the partition over meanwhile (its
    takeover aborted our upload, deleted our staging file) was fenced, not broken: say so."""
    try:
        other = writer.log.superseded()
    except Exception:
        return exc
    if other is None:
        return exc
    fenced = FencedError(
        writer.topic,
        writer.partition,
        f"writer {other.writer} took the partition over (epoch {other.epoch}, marker "
        f"{other.seq}) while this commit was in flight ({exc}); this writer stops writing the "
        "partition",
    )
    fenced.__cause__ = exc
    return fenced


def _delete_staged(writer: PartitionWriter, pending: PendingCommit) -> None:
    for f in pending.files:
        try:
            writer.ctx.storage.delete(f.staging_key)
        except Exception:
            # the next takeover deletes staging files of older epochs anyway
            log.debug("delete of %s failed", f.staging_key, exc_info=True)


def _abort(pending: PendingCommit) -> None:
    for f in pending.files:
        try:
            f.upload.abort()
        except Exception:
            log.debug("abort of %s failed", f.staging_key, exc_info=True)
