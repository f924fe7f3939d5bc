"""The consumer loop behind ``s3sink run`` and ``s3sink catchup``.

confluent-kafka batch ``consume`` -> one :class:`~s3sink.writer.PartitionWriter` per assigned
partition -> background :class:`~s3sink.committer.Committer`. Positions come from the commit log
in S3, never from Kafka's committed offset: on assignment each partition is taken over (fence,
roll forward, clean up) concurrently, and only then assigned at the log's end offset. Kafka
offsets are committed after each commit as a progress hint carrying the marker's seq.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import socket
import threading
import uuid
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from confluent_kafka import (
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from s3sink.clock import Clock, SystemClock
from s3sink.commitlog import Marker, PartitionLog
from s3sink.committer import Committer, OffsetHint
from s3sink.config import SinkConfig
from s3sink.context import SinkContext, build_context
from s3sink.errors import FatalError, RetriableError, S3SinkError
from s3sink.failpoints import failpoint
from s3sink.logs import PartitionName
from s3sink.memory import (
    ResidentGauge,
    configure_arrow_memory,
    files_budget,
    prefetch_bytes,
    prefetch_config,
)
from s3sink.metrics import CountingLogStorage, Metrics
from s3sink.records import RecordBatch, split_messages
from s3sink.rotation import RotationReason
from s3sink.storage.base import Storage
from s3sink.writer import PartitionWriter, WriterStatus

log = logging.getLogger("s3sink.sink")

HINT_PREFIX = "s3sink:seq="
TAKEOVER_WORKERS = 32
#: librdkafka statistics (the end offsets behind consumer_lag) unless the user sets
#: consumer.statistics.interval.ms (0 turns them off).
STATS_INTERVAL_MS = 5000
#: How often a waiting stop looks for a second signal (abandon).
_STOP_POLL_S = 0.1
#: How often the loop notes which partitions hold nothing uncommitted (committed_lag).
_ARCHIVED_INTERVAL_S = 0.1
#: A consumed batch larger than the room left in the memory budget is appended in slices,
#: the budget checked after each: a slice takes half the room left, and at least
#: 1/SLICE_SHARE of the budget. With no room left the rest of the batch is held (its
#: partitions paused) until commits free some. The buffered bytes so pass the budget by at
#: most 1/SLICE_SHARE of it (times the encoded/raw size ratio of the format), whatever
#: consume.batch.size; a batch that fits the room (the common case) is appended whole.
SLICE_SHARE = 16
#: While records are held the loop waits for commits to free memory in steps of this, without
#: consuming; only a wait longer than PAUSE_AFTER_S pauses the partitions (then consume() keeps
#: serving the group with this timeout). A pause and resume costs librdkafka up to a second
#: before the partition is fetched again, far longer than a commit usually takes.
_HELD_POLL_S = 0.005
#: How long the budget stays full (records held) or the pending commits above half of it
#: (uploads behind) before the partitions are paused.
PAUSE_AFTER_S = 0.5


def storage_from_config(config: SinkConfig, metrics: Metrics | None = None) -> Storage:
    from s3sink.storage.retry import RetryPolicy
    from s3sink.storage.url import open_storage

    url = config.storage_url or f"s3://{config.s3_bucket_name}"
    return open_storage(
        url,
        key="storage.url" if config.storage_url else "s3.bucket.name",
        endpoint_url=config.store_url,
        region=config.s3_region,
        path_style=config.s3_path_style_access_enabled,
        part_size=config.s3_part_size,
        sse=config.s3_ssea_name,
        kms_key_id=config.s3_sse_kms_key_id,
        acl=config.s3_acl_canned,
        access_key_id=config.aws_access_key_id,
        secret_access_key=config.aws_secret_access_key,
        max_concurrency=config.s3_upload_concurrency,
        retry=RetryPolicy(
            max_attempts=config.s3_part_retries + 1,
            base_delay_s=config.s3_retry_backoff_ms / 1000,
        ),
    )


def consumer_config(config: SinkConfig, *, catchup: bool) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap.servers": config.bootstrap_servers,
        "group.id": config.effective_group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
        "client.id": f"s3sink-{config.name}",
        "statistics.interval.ms": STATS_INTERVAL_MS,
    }
    user = dict(config.consumer)
    if user.get("group.protocol", "classic") != "consumer":
        conf["partition.assignment.strategy"] = "cooperative-sticky"
    conf.update(prefetch_config(config.buffer_memory_bytes, user))
    conf.update(user)
    return conf


def _record_bytes(batch: RecordBatch) -> list[int]:
    """Key and value bytes of each record (what :meth:`RecordBatch.value_bytes` sums)."""
    return [
        (len(k) if k is not None else 0) + (len(v) if v is not None else 0)
        for k, v in zip(batch.keys, batch.values, strict=True)
    ]


def _incremental(conf: dict[str, Any]) -> bool:
    return conf.get("group.protocol") == "consumer" or "cooperative" in str(
        conf.get("partition.assignment.strategy", "")
    )


@dataclass
class Summary:
    records: int = 0
    files: int = 0
    commits: int = 0
    partitions: int = 0
    seconds: float = 0.0
    bad_records: int = 0
    #: A finished catch-up: partition -> the end offset it archived up to (every record below
    #: it committed; offsets without a record there are transaction markers, aborted or
    #: dead-lettered records). Empty when the catch-up was stopped before its end.
    reached: dict[tuple[str, int], int] = field(default_factory=dict)

    def text(self) -> str:
        rate = self.records / self.seconds if self.seconds > 0 else 0.0
        return (
            f"catch-up done: {self.records} records in {self.files} files, {self.commits} "
            f"commits, {self.partitions} partitions, {self.seconds:.1f} s ({rate:,.0f} "
            f"records/s), {self.bad_records} bad records"
        )


@dataclass
class _Recovery:
    """A failed or fenced partition waiting to be taken over again."""

    writer: PartitionWriter
    not_before: float
    failures: int


@dataclass
class _CatchupTarget:
    end: int
    done: bool = False


@dataclass
class SinkState:
    writers: dict[tuple[str, int], PartitionWriter] = field(default_factory=dict)
    recovering: dict[tuple[str, int], _Recovery] = field(default_factory=dict)
    #: Assigned partitions whose takeover failed at assignment: monotonic time of the next try.
    untaken: dict[tuple[str, int], float] = field(default_factory=dict)
    failures: dict[tuple[str, int], int] = field(default_factory=dict)
    paused: set[tuple[str, int]] = field(default_factory=set)


class Sink:
    def __init__(
        self,
        config: SinkConfig,
        *,
        storage: Storage | None = None,
        clock: Clock | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        configure_arrow_memory()
        self.clock = clock or SystemClock()
        self.metrics = metrics or Metrics()
        self.storage = storage or storage_from_config(config, self.metrics)
        self.writer_id = f"{socket.gethostname()}-{os.getpid()}"
        self._hints: deque[OffsetHint] = deque()
        self.committer = Committer(
            workers=max(4, config.s3_upload_concurrency),
            clock=self.clock,
            metrics=self.metrics,
            on_committed=self._on_committed,
        )
        self._dlq: Any = None
        self.ctx: SinkContext = build_context(
            config,
            self.storage,
            self.clock,
            self.metrics,
            self.committer,
            dead_letter=self._dead_letter if config.errors_deadletterqueue_topic_name else None,
            before_commit=self._flush_dead_letters,
        )
        self.state = SinkState()
        self._stop = threading.Event()
        self._abandon = threading.Event()
        self._takeover_pool = ThreadPoolExecutor(TAKEOVER_WORKERS, thread_name_prefix="takeover")
        self._consumer: Any = None
        #: what the process holds beyond the counted buffers (created on first use)
        self._memory_gauge: ResidentGauge | None = None
        self._conf: dict[str, Any] = {}
        self._admin: Any = None
        self._catchup: dict[tuple[str, int], _CatchupTarget] | None = None
        self._rng = random.Random()
        self.ready = threading.Event()
        self.last_loop = self.clock.monotonic()
        #: When stop() was first called (monotonic); shutdown.timeout.ms counts from here.
        self._stopping_since: float | None = None
        #: False when run() returned with commits possibly still in flight (abandoned, or
        #: shutdown.timeout.ms ran out): the caller should exit the process without waiting.
        self.clean = True
        #: Partition end offsets (last stable offset with read_committed) from librdkafka stats.
        self._ends: dict[tuple[str, int], int] = {}
        self._paused_ends_due = 0.0
        #: How far the consumer has read each partition (the offset of its last end-of-partition
        #: event): past the control records and aborted records a writer's position stops
        #: before. Only for the writer that read it (dropped when the partition is re-read).
        self._consumed: dict[tuple[str, int], int] = {}
        #: Offsets below which everything is committed or has nothing to commit (control,
        #: aborted or skipped records): set while a partition holds no open or pending
        #: records (see :meth:`_note_archived`); never decreases while assigned.
        self._archived: dict[tuple[str, int], int] = {}
        self._archived_due = 0.0
        #: Bytes the open files, pending commits and parts may still grow by within the budget
        #: (as of the last memory check, less what was appended since) and the budget itself.
        self._room = 0
        self._files_limit = 0
        #: Consumed messages (records and events, in consume order) of partitions that had no
        #: room in the budget: appended before anything consumed later for the partition.
        self._held: dict[tuple[str, int], list[Any]] = {}
        #: Since when records are held / the pending commits are above half the budget.
        self._held_since: float | None = None
        self._behind_since: float | None = None
        #: A Kafka client error that stops the sink (bad credentials, untrusted certificate).
        self._client_error: str | None = None
        self._log_storage: Storage = CountingLogStorage(self.storage, self.metrics)
        self.metrics.set("buffer_memory_budget_bytes", config.buffer_memory_bytes)
        self.metrics.set("ready", 0)
        self.metrics.add_collector(self._collect)
        for note in config.notes:
            log.info("config: %s", note)

    # -- public ------------------------------------------------------------------------------
    def stop(self) -> None:
        """Finish gracefully: commit what is buffered (within ``shutdown.timeout.ms``), return.

        Safe in a signal handler: it only sets flags (no lock the interrupted code may hold).
        """
        if self._stopping_since is None:
            self._stopping_since = self.clock.monotonic()
        self._stop.set()

    def is_ready(self) -> bool:
        """/readyz: partitions assigned and taken over, and not stopping."""
        return self.ready.is_set() and not self._stop.is_set()

    def abandon(self) -> None:
        """Stop at once; nothing uncommitted becomes visible."""
        self._abandon.set()
        self.stop()

    def _shutdown_left(self) -> float:
        """Seconds left of shutdown.timeout.ms since stop() (the whole budget before it)."""
        budget = self.config.shutdown_timeout_ms / 1000
        if self._stopping_since is None:
            return budget
        return max(0.0, budget - (self.clock.monotonic() - self._stopping_since))

    def _wait_commits(self, writer: PartitionWriter | None, timeout: float) -> bool:
        """Wait for the committer (one writer, or all) up to ``timeout``; gives up early on
        abandon. Keeps /healthz fresh while it waits."""
        deadline = self.clock.monotonic() + timeout
        while True:
            left = deadline - self.clock.monotonic()
            if self.committer.wait_idle(writer, max(0.0, min(_STOP_POLL_S, left))):
                return True
            self.last_loop = self.clock.monotonic()
            if left <= 0 or self._abandon.is_set():
                return False

    def _set_ready(self, ready: bool) -> None:
        if ready:
            self.ready.set()
        else:
            self.ready.clear()

    def run(
        self,
        *,
        catchup: bool = False,
        progress: Callable[[int, int], None] | None = None,
        assignment: Sequence[tuple[str, int]] | None = None,
    ) -> Summary:
        """Consume until stopped (``catchup``: until the end offsets seen on assignment).
        ``assignment``: exactly these partitions, assigned by hand instead of subscribing
        (the tasks of a catch-up split the partitions this way: no rebalance; the takeover
        still fences any other owner)."""
        started = self.clock.monotonic()
        self._conf = consumer_config(self.config, catchup=catchup)
        self._files_limit = self._room = files_budget(self.config.buffer_memory_bytes, self._conf)
        consumer = Consumer(
            {**self._conf, "stats_cb": self._on_stats, "error_cb": self._on_client_error},
            logger=logging.getLogger("s3sink.kafka"),
        )
        self._consumer = consumer
        topics = list(self.config.topics) or [f"^{self.config.topics_regex}"]
        if catchup:
            self._catchup = {}
        summary = Summary()
        if assignment is None:
            consumer.subscribe(
                topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
            )
        try:
            if assignment is not None:
                self._on_assign(consumer, [TopicPartition(t, p) for t, p in assignment])
            self._loop(consumer, summary, catchup, progress)
            if not self._abandon.is_set():
                self._finish(RotationReason.CATCHUP_END if catchup else RotationReason.SHUTDOWN)
        finally:
            self._set_ready(False)
            abandoned = self._abandon.is_set()
            if abandoned:
                # drop open files and whatever waits in the committer's queues; a commit in
                # flight may still land (then it is complete and published, or rolled
                # forward by the next owner): nothing uncommitted becomes visible
                for w in list(self.state.writers.values()):
                    w.fail(FatalError("abandoned on a second stop signal"))
                    w.abandon()
                self.state.writers.clear()
                self._held.clear()
                log.warning("stopping at once: buffered records are left to the next owner")
            try:
                consumer.close()
            except KafkaException as exc:
                log.warning("closing the consumer: %s", exc)
            self.clean = self.committer.wait_idle(None, 0)
            self.committer.shutdown(wait=self.clean)
            self._takeover_pool.shutdown(wait=True)
            if self._dlq is not None and not abandoned:
                self._dlq.flush(30)
        summary.seconds = self.clock.monotonic() - started
        summary.records = int(self.metrics.total("records_committed_total"))
        summary.files = int(self.metrics.total("files_committed_total"))
        summary.commits = int(self.metrics.total("commits_total"))
        summary.bad_records = int(self.metrics.total("bad_records_total"))
        return summary

    # -- the loop ----------------------------------------------------------------------------
    def _loop(
        self,
        consumer: Any,
        summary: Summary,
        catchup: bool,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        cfg = self.config
        while not self._stop.is_set():
            self.last_loop = self.clock.monotonic()
            msgs = self._consume(consumer, cfg.consume_batch_size)
            if self._client_error is not None:
                raise FatalError(self._client_error)
            if self._held:
                self._dispatch_held()
            if msgs:
                self._dispatch(msgs)
            now = self.clock.now_ms()
            for w in list(self.state.writers.values()):
                w.maybe_rotate(now)
            self._enforce_memory()
            self._refresh_paused_ends()
            self._note_archived()
            self._recover(consumer)
            self._commit_hints(consumer)
            if catchup and self._catchup_done():
                summary.partitions = len(self._catchup or {})
                summary.reached = {k: t.end for k, t in (self._catchup or {}).items()}
                return
            if progress is not None and self._catchup:
                progress(*self._catchup_progress())

    def _consume(self, consumer: Any, batch_size: int) -> Sequence[Any]:
        """The next batch; while records are held (the budget full), none for a while: wait
        for commits to free memory, then pause the partitions holding records (see
        :data:`PAUSE_AFTER_S`) and go on consuming to serve the group."""
        if not self._held:
            self._held_since = None
            return consumer.consume(num_messages=batch_size, timeout=0.2)  # type: ignore[no-any-return]
        now = self.clock.monotonic()
        if self._held_since is None:
            self._held_since = now
        if now - self._held_since < PAUSE_AFTER_S:
            self.clock.sleep(_HELD_POLL_S)
            return ()
        to_pause = [k for k in self._held if k not in self.state.paused]
        if to_pause:
            consumer.pause([TopicPartition(*k) for k in to_pause])
            self.state.paused.update(to_pause)
            log.info(
                "memory budget full for %.1f s; paused %d partitions",
                now - self._held_since,
                len(to_pause),
            )
        return consumer.consume(num_messages=batch_size, timeout=_HELD_POLL_S * 4)  # type: ignore[no-any-return]

    def _dispatch(self, msgs: Sequence[Any]) -> None:
        groups, failed = split_messages(msgs)
        held = self._held
        for key, ms in groups.items():
            if key in held:
                held[key].extend(ms)  # behind what is held, in order
                continue
            self._append(key, ms)
        # events after the records (an end-of-partition event follows the records before it):
        # those of a partition with held records wait behind them
        for m, err in failed:
            waiting = held.get((m.topic(), m.partition()))
            if waiting is not None:
                waiting.append(m)
            else:
                self._kafka_error(m, err)

    def _dispatch_held(self) -> None:
        """Append what was held, as far as the budget has room again."""
        if self._room <= 0:
            return
        for key in list(self._held):
            if self._room <= 0:
                return
            self._dispatch(self._held.pop(key))

    def _append(self, key: tuple[str, int], ms: Sequence[Any]) -> None:
        """Append one partition's records of a consumed batch to its writer, within the
        memory budget (:data:`SLICE_SHARE`)."""
        topic, partition = key
        w = self.state.writers.get(key)
        if w is None or w.status is not WriterStatus.ACTIVE:
            return
        target = self._catchup.get(key) if self._catchup else None
        if target is not None and ms[-1].offset() >= target.end:
            # a catch-up archives up to the end offsets seen at its start, no further:
            # records produced since are left to the next run
            target.done = True
            ms = [m for m in ms if m.offset() < target.end]
            if not ms:
                return
        batch = RecordBatch.from_messages(topic, partition, ms)
        nbytes = batch.value_bytes()
        if nbytes <= self._room:  # the common case: the whole batch fits
            self._room -= nbytes
            self._append_batch(w, batch, nbytes)
            return
        sizes = list(accumulate(_record_bytes(batch)))
        n, i = len(batch), 0
        while i < n and w.status is WriterStatus.ACTIVE:
            if self._room <= 0:
                self._hold(key, ms[i:])
                return
            done = sizes[i - 1] if i else 0
            cap = max(self._room // 2, self._files_limit // SLICE_SHARE)
            j = max(i + 1, bisect_right(sizes, done + cap, lo=i))
            self._append_batch(
                w, batch.slice(i, j) if (i, j) != (0, n) else batch, sizes[j - 1] - done
            )
            i = j
            self._enforce_memory()  # measures what the slice took; seals, pauses, sets the room

    def _append_batch(self, w: PartitionWriter, batch: RecordBatch, nbytes: int) -> None:
        self.metrics.inc("records_consumed_total", len(batch), tp=w.tp)
        self.metrics.inc("bytes_consumed_total", nbytes, tp=w.tp)
        try:
            w.append(batch)
        except RetriableError as exc:
            # e.g. the schema registry is down: drop what is open and take the partition
            # over again after a backoff (it re-reads from the log's end)
            log.warning("%s: %s; retrying the partition", w.tp, exc)
            w.fail(exc)

    def _hold(self, key: tuple[str, int], ms: Sequence[Any]) -> None:
        """No room in the budget: keep the rest of the batch until commits free memory
        (:meth:`_consume` waits for them; a partition paused meanwhile is fetched again from
        after the batch on resume, :meth:`_enforce_memory` resumes it)."""
        self._held[key] = list(ms)
        log.debug(
            "%s: memory budget full; %d consumed records held until commits free memory",
            PartitionName(*key),
            len(ms),
        )

    def _kafka_error(self, m: Any, err: Any) -> None:
        code = err.code()
        if code == KafkaError._PARTITION_EOF:
            key = (m.topic(), m.partition())
            w = self.state.writers.get(key)
            offset = m.offset()
            if w is not None and w.status is WriterStatus.ACTIVE and offset is not None:
                # every record before this event was handed to the writer: the partition is
                # read up to here (control and aborted records included)
                self._consumed[key] = max(offset, self._consumed.get(key, 0))
            if self._catchup is not None and key in self._catchup:
                w = self.state.writers.get(key)
                if w is not None and w.status is WriterStatus.ACTIVE:
                    self._catchup[key].done = True
            return
        if err.fatal():
            raise FatalError(f"Kafka: {err.str()}")
        if code in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.TOPIC_AUTHORIZATION_FAILED):
            log.error("Kafka: %s", err.str())
            return
        log.warning("Kafka: %s", err.str())

    def _on_client_error(self, err: Any) -> None:
        """librdkafka client errors (error_cb, on the consumer thread). Failed authentication
        and TLS verification are configuration problems: stop with one clear line rather than
        retry for ever (a catch-up would never end)."""
        code = err.code()
        bad_auth = code in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED)
        bad_tls = code == KafkaError._SSL and "verify failed" in err.str()
        if err.fatal() or bad_auth or bad_tls:
            if self._client_error is None:
                self._client_error = (
                    f"Kafka: {err.str()}; check bootstrap.servers and the "
                    "consumer.security.protocol, consumer.sasl.* and consumer.ssl.* settings"
                )
            return
        log.warning("Kafka: %s", err.str())

    # -- statistics and gauges ---------------------------------------------------------------
    def _on_stats(self, raw: str) -> None:
        """librdkafka statistics (on the consumer thread): remember the end offsets."""
        try:
            stats = json.loads(raw)
        except ValueError:
            return
        read_committed = self._conf.get("isolation.level") == "read_committed"
        field = "ls_offset" if read_committed else "hi_offset"
        for topic, t in (stats.get("topics") or {}).items():
            for pid, p in (t.get("partitions") or {}).items():
                with contextlib.suppress(ValueError, TypeError):
                    partition, end = int(pid), int(p.get(field, -1))
                    if partition >= 0 and end >= 0 and (topic, partition) in self.state.writers:
                        self._ends[(topic, partition)] = end

    def _refresh_paused_ends(self) -> None:
        """End offsets of paused partitions, from the broker every statistics interval:
        librdkafka learns a partition's end offset from its fetches, and a paused partition
        is not fetched (its lag would stay as it was when it was paused)."""
        interval_ms = int(self._conf.get("statistics.interval.ms") or 0)
        now = self.clock.monotonic()
        if interval_ms <= 0 or now < self._paused_ends_due:
            return
        self._paused_ends_due = now + interval_ms / 1000.0
        keys = [k for k in self.state.paused if k in self.state.writers]
        if not keys:
            return
        read_committed = self._conf.get("isolation.level") == "read_committed"
        try:
            ends = self._list_offsets_once(keys, latest=True, committed=read_committed, timeout=5.0)
        except KafkaException as exc:  # a metric only: the next interval tries again
            log.info("reading the end offsets of paused partitions: %s", exc)
            return
        for key, end in ends.items():
            if end >= 0 and key in self.state.writers:
                self._ends[key] = end

    def _note_archived(self) -> None:
        """Where a partition holds no open files, no bad records waiting for an error file
        and no pending commit, everything it has read is archived: the offsets past its log's
        end are control, aborted or skipped records (a commit only covers up to the record
        after the last one written). Runs on the consumer thread, which alone opens files
        and submits commits: a commit submitted later covers later offsets only."""
        now = self.clock.monotonic()
        if now < self._archived_due:
            return
        self._archived_due = now + _ARCHIVED_INTERVAL_S
        for key, w in self.state.writers.items():
            if w.status is not WriterStatus.ACTIVE or w.holds_records():
                continue
            if key in self._held:
                continue
            if self.committer.queued(w):
                continue
            read_to = max(w.position, self._consumed.get(key, 0))
            if read_to > self._archived.get(key, 0):
                self._archived[key] = read_to

    def _collect(self, metrics: Metrics) -> None:
        """Before each render: readiness, lag per partition, paused partitions, retries."""
        metrics.set("ready", 1 if self.is_ready() else 0)
        writers = dict(self.state.writers)
        for key, rec in list(self.state.recovering.items()):
            writers.setdefault(key, rec.writer)
        for key, w in writers.items():
            end = self._ends.get(key)
            if end is None:
                continue
            read_to = max(w.position, self._consumed.get(key, 0))
            metrics.set("consumer_lag", max(0, end - read_to), tp=w.tp)
            latest = w.log.latest
            if latest is not None:
                archived = max(latest.end, self._archived.get(key, 0))
                metrics.set("committed_lag", max(0, end - archived), tp=w.tp)
        recovering = set(self.state.recovering)
        paused = set(self.state.paused)
        metrics.set("paused_partitions", len(paused - recovering), reason="backpressure")
        metrics.set("paused_partitions", len(paused & recovering), reason="recovery")
        stats = getattr(self.storage, "retry_stats", None)
        if stats is not None:
            for cause, n in stats.causes().items():
                metrics.set_total("storage_retries_total", n, cause=cause)
            metrics.set_total("storage_retries_exhausted_total", stats.exhausted)

    def _enforce_memory(self) -> None:
        total = self.config.buffer_memory_bytes
        writers = list(self.state.writers.values())
        open_bytes = sum(w.memory() for w in writers)
        pending = self.committer.memory()
        # S3 parts in flight (the open uploads' buffers are in the writers' memory)
        storage_memory = getattr(self.storage, "memory_bytes", None)
        parts = int(storage_memory()) if storage_memory is not None else 0
        # what the rest of the process holds beyond the prefetch estimate, measured
        gauge = self._memory_gauge
        if gauge is None:
            fixed = int(getattr(self.storage, "client_resident_bytes", 0))
            gauge = self._memory_gauge = ResidentGauge(fixed=fixed)
        counted = open_bytes + pending + parts
        budget = min(
            files_budget(total, self._conf),
            gauge.files_limit(total, prefetch_bytes(self._conf), counted),
        )
        # sealing below moves open files to the pending commits: it frees nothing yet
        self._files_limit = budget
        self._room = budget - counted
        set_limit = getattr(self.storage, "set_memory_limit", None)
        if set_limit is not None:
            set_limit(budget // 2)
        self.metrics.set("buffer_memory_bytes", counted)
        pending += parts
        if open_bytes + pending > budget:
            for w in sorted(writers, key=lambda w: w.memory(), reverse=True):
                if open_bytes + pending <= budget * 0.8:
                    break
                m = w.memory()
                if m == 0:
                    break
                w.seal(RotationReason.MEMORY)
                open_bytes -= m
        pending -= parts
        # back-pressure: uploads fall behind -> pause consumption until they catch up
        consumer = self._consumer
        active = [k for k, w in self.state.writers.items() if w.status is WriterStatus.ACTIVE]
        now = self.clock.monotonic()
        if pending <= budget // 2:
            self._behind_since = None
        elif self._behind_since is None:
            self._behind_since = now
        if self._behind_since is not None and now - self._behind_since >= PAUSE_AFTER_S:
            to_pause = [k for k in active if k not in self.state.paused]
            if to_pause:
                consumer.pause([TopicPartition(t, p) for t, p in to_pause])
                self.state.paused.update(to_pause)
                log.info(
                    "uploads behind (%d bytes pending); paused %d partitions",
                    pending,
                    len(to_pause),
                )
        elif pending < budget // 4 and self._room > 0 and self.state.paused:
            to_resume = [k for k in self.state.paused if k in active]
            if to_resume:
                consumer.resume([TopicPartition(t, p) for t, p in to_resume])
            self.state.paused.difference_update(to_resume)

    # -- commits and hints -------------------------------------------------------------------
    def _on_committed(self, writer: PartitionWriter, marker: Marker) -> None:
        self._hints.append(OffsetHint(writer.topic, writer.partition, marker.end, marker.seq))
        # a commit landed: the next fencing of this partition starts from a short backoff
        self.state.failures.pop((writer.topic, writer.partition), None)
        self.metrics.set("last_commit_timestamp_seconds", self.clock.now_ms() / 1000)

    def _commit_hints(self, consumer: Any, *, sync: bool = False) -> None:
        if not self._hints:
            return
        latest: dict[tuple[str, int], OffsetHint] = {}
        while self._hints:
            h = self._hints.popleft()
            latest[(h.topic, h.partition)] = h
        failpoint("before_kafka_commit")
        offsets = [
            TopicPartition(h.topic, h.partition, h.offset, metadata=f"{HINT_PREFIX}{h.seq}")
            for h in latest.values()
        ]
        try:
            consumer.commit(offsets=offsets, asynchronous=not sync)
        except KafkaException as exc:
            # only a hint: the commit log in S3 is the truth
            log.info("Kafka offset commit (a progress hint) failed: %s", exc)

    # -- assignment --------------------------------------------------------------------------
    def _reset_to_latest(self) -> bool:
        return str(self._conf.get("auto.offset.reset", "earliest")) in ("latest", "largest", "end")

    def _takeover(
        self, topic: str, partition: int, hint: int | None, start: int | None = None
    ) -> PartitionWriter:
        started = self.clock.monotonic()
        plog = PartitionLog(
            self._log_storage, topic, partition, self.writer_id, uuid.uuid4().hex[:16], self.clock
        )

        def initial() -> int:
            """Where a partition with no log yet starts (auto.offset.reset)."""
            if start is not None:
                return start
            key = (topic, partition)
            return self._list_offsets([key], latest=self._reset_to_latest())[key]

        result = plog.takeover(hint, initial)
        self.metrics.inc("takeovers_total", 1, tp=PartitionName(topic, partition))
        self.metrics.observe("takeover_seconds", self.clock.monotonic() - started)
        return PartitionWriter(self.ctx, topic, partition, plog, result.fence.end)

    def _admin_client(self) -> Any:
        if self._admin is None:
            from confluent_kafka.admin import AdminClient

            from s3sink.kafkaconf import shared_client_config

            self._admin = AdminClient(
                shared_client_config(self._conf), logger=logging.getLogger("s3sink.kafka")
            )
        return self._admin

    def _list_offsets(
        self, keys: Sequence[tuple[str, int]], *, latest: bool
    ) -> dict[tuple[str, int], int]:
        """Earliest or latest (last stable, read_committed) offsets, in one request.

        Errors that pass (a broker restarting, a leader moving: e.g. FENCED_LEADER_EPOCH after
        a restart) are retried with backoff, with a fresh admin client, for up to a minute:
        this runs in the assignment callback, where an exception would stop the sink."""
        deadline = self.clock.monotonic() + 60.0
        delay = 0.2
        while True:
            try:
                return self._list_offsets_once(keys, latest=latest)
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                if (isinstance(err, KafkaError) and err.fatal()) or (
                    self.clock.monotonic() + delay > deadline
                ):
                    raise
                log.warning("listing offsets failed, retrying in %.1f s: %s", delay, exc)
                # a new admin client: the old one keeps stale metadata (leader epochs) after
                # a broker restart and gets FENCED_LEADER_EPOCH forever
                self._admin = None
                self.clock.sleep(delay)
                delay = min(5.0, delay * 2)

    def _list_offsets_once(
        self,
        keys: Sequence[tuple[str, int]],
        *,
        latest: bool,
        committed: bool = True,
        timeout: float = 30.0,
    ) -> dict[tuple[str, int], int]:
        from confluent_kafka import IsolationLevel
        from confluent_kafka.admin import OffsetSpec as _OffsetSpec  # type: ignore[attr-defined]

        OffsetSpec: Any = _OffsetSpec
        spec = OffsetSpec.latest() if latest else OffsetSpec.earliest()
        futures = self._admin_client().list_offsets(
            {TopicPartition(t, p): spec for t, p in keys},
            isolation_level=(
                IsolationLevel.READ_COMMITTED if committed else IsolationLevel.READ_UNCOMMITTED
            ),
            request_timeout=timeout,
        )
        return {(tp.topic, tp.partition): int(f.result().offset) for tp, f in futures.items()}

    def _hints_for(self, consumer: Any, parts: Sequence[Any]) -> dict[tuple[str, int], int]:
        out: dict[tuple[str, int], int] = {}
        try:
            committed = consumer.committed(
                [TopicPartition(p.topic, p.partition) for p in parts], timeout=10
            )
        except KafkaException as exc:
            log.info("could not read committed offsets (a hint only): %s", exc)
            return out
        for tp in committed:
            md = getattr(tp, "metadata", None) or ""
            if tp.offset != OFFSET_INVALID and md.startswith(HINT_PREFIX):
                with contextlib.suppress(ValueError):
                    out[(tp.topic, tp.partition)] = int(md[len(HINT_PREFIX) :])
        return out

    def _on_assign(self, consumer: Any, parts: list[Any]) -> None:
        try:
            self._assign(consumer, parts)
        except BaseException:
            log.exception("takeover failed")
            raise

    def _assign(self, consumer: Any, parts: list[Any]) -> None:
        if not parts:
            if not _incremental(self._conf):
                consumer.assign([])
            if not self._stop.is_set():
                self._set_ready(True)  # a member of the group with nothing to do is ready
            return
        hints = self._hints_for(consumer, parts)
        keys = [(p.topic, p.partition) for p in parts]
        starts = self._list_offsets(keys, latest=self._reset_to_latest())  # one request
        futures = {
            key: self._takeover_pool.submit(
                self._takeover, key[0], key[1], hints.get(key), starts.get(key)
            )
            for key in keys
        }
        assigned = []
        if self._catchup is not None:
            new = [k for k in futures if k not in self._catchup]
            if new:
                for k, end in self._list_offsets(new, latest=True).items():
                    self._catchup[k] = _CatchupTarget(end)
        for key, fut in futures.items():
            try:
                writer = fut.result()
            except S3SinkError as exc:
                if not _incremental(self._conf):
                    raise  # an eager assignment cannot take one partition later
                # storage unreachable even after retries: own the partition, consume it
                # only once a later takeover succeeds (see _recover)
                self.state.untaken[key] = self.clock.monotonic() + 5.0
                log.warning(
                    "%s: takeover failed, retrying in the background: %s", PartitionName(*key), exc
                )
                continue
            self.state.writers[key] = writer
            assigned.append(TopicPartition(key[0], key[1], writer.position))
            if self._catchup is not None:
                self._catchup[key].done = writer.position >= self._catchup[key].end
        if _incremental(self._conf):
            consumer.incremental_assign(assigned)
        else:
            consumer.assign(assigned)
        self.metrics.set("assigned_partitions", len(self.state.writers))
        if not self._stop.is_set():
            self._set_ready(True)
        log.info("assigned %d partition(s), ready", len(assigned))

    def _release(self, consumer: Any, parts: list[Any], *, commit: bool) -> None:
        keys = [(p.topic, p.partition) for p in parts]
        writers = [self.state.writers[k] for k in keys if k in self.state.writers]
        if commit and not self._abandon.is_set():
            for w in writers:
                w.seal(RotationReason.REVOKE)
            # one budget for all of them (and, when stopping, what is left of it)
            deadline = self.clock.monotonic() + self._shutdown_left()
            for w in writers:
                if not self._wait_commits(w, max(0.0, deadline - self.clock.monotonic())):
                    log.warning("%s: commit still running at revoke; it will be fenced", w.tp)
            self._commit_hints(consumer, sync=True)
        for w in writers:
            w.abandon()
            w.status = WriterStatus.CLOSED
        for k in keys:
            self.state.writers.pop(k, None)
            self.state.recovering.pop(k, None)
            self.state.untaken.pop(k, None)
            self.state.paused.discard(k)
            self._ends.pop(k, None)
            self._consumed.pop(k, None)
            self._archived.pop(k, None)
            self._held.pop(k, None)
            self.metrics.forget(PartitionName(*k))
            if self._catchup is not None:
                self._catchup.pop(k, None)
        self.metrics.set("assigned_partitions", len(self.state.writers))

    def _on_revoke(self, consumer: Any, parts: list[Any]) -> None:
        self._release(consumer, parts, commit=True)
        if _incremental(self._conf):
            consumer.incremental_unassign(parts)
        else:
            consumer.unassign()

    def _on_lost(self, consumer: Any, parts: list[Any]) -> None:
        log.warning(
            "lost %d partition(s) (session expired); dropping uncommitted files", len(parts)
        )
        self._release(consumer, parts, commit=False)
        if _incremental(self._conf):
            consumer.incremental_unassign(parts)
        else:
            consumer.unassign()

    # -- recovery after fencing or a failed commit --------------------------------------------
    def _recover(self, consumer: Any) -> None:
        now = self.clock.monotonic()
        for key, w in list(self.state.writers.items()):
            if w.status is WriterStatus.FAILED and key not in self.state.recovering:
                if self.committer.queued(w):
                    continue  # let its queue drain (aborting) first
                w.abandon()
                failures = self.state.failures.get(key, 0) + 1
                self.state.failures[key] = failures
                delay = min(30.0, 0.5 * 2 ** (failures - 1)) * (0.5 + self._rng.random())
                self.state.recovering[key] = _Recovery(w, now + delay, failures)
                consumer.pause([TopicPartition(*key)])
                self.state.paused.add(key)
                # the next writer re-reads from the log's end
                self._consumed.pop(key, None)
                self._archived.pop(key, None)
                self._held.pop(key, None)
                log.info("%s: taking the partition over again in %.1f s", w.tp, delay)
        for key, not_before in list(self.state.untaken.items()):
            if now < not_before:
                continue
            try:
                writer = self._takeover(key[0], key[1], None)
            except S3SinkError as exc:
                self.state.untaken[key] = now + 10.0
                log.warning("%s: takeover failed, retrying: %s", PartitionName(*key), exc)
                continue
            del self.state.untaken[key]
            self.state.writers[key] = writer
            consumer.incremental_assign([TopicPartition(key[0], key[1], writer.position)])
            if self._catchup is not None and key in self._catchup:
                self._catchup[key].done = writer.position >= self._catchup[key].end
        for key, rec in list(self.state.recovering.items()):
            if now < rec.not_before:
                continue
            try:
                writer = self._takeover(key[0], key[1], None)
            except S3SinkError as exc:
                rec.not_before = now + min(30.0, 2.0 * rec.failures)
                log.warning("%s: takeover failed, retrying: %s", PartitionName(*key), exc)
                continue
            del self.state.recovering[key]
            self.state.writers[key] = writer
            consumer.seek(TopicPartition(key[0], key[1], writer.position))
            consumer.resume([TopicPartition(*key)])
            self.state.paused.discard(key)
            if self._catchup is not None and key in self._catchup:
                self._catchup[key].done = writer.position >= self._catchup[key].end

    # -- catch-up ----------------------------------------------------------------------------
    def _catchup_done(self) -> bool:
        targets = self._catchup
        if not targets or self.state.recovering or self.state.untaken or self._held:
            return False
        for key, t in targets.items():
            w = self.state.writers.get(key)
            if w is None or w.status is not WriterStatus.ACTIVE:
                return False
            if not t.done and w.position >= t.end:
                t.done = True
            if not t.done:
                return False
        return True

    def _catchup_progress(self) -> tuple[int, int]:
        targets = self._catchup or {}
        done = total = 0
        for key, t in targets.items():
            w = self.state.writers.get(key)
            total += t.end
            done += min(t.end, w.position) if w else 0
        return done, total

    # -- finishing ---------------------------------------------------------------------------
    def _finish(self, reason: RotationReason) -> None:
        for w in self.state.writers.values():
            w.seal(reason)
        # a stop signal gives shutdown.timeout.ms; the end of a catch-up waits for its commits
        budget = self._shutdown_left() if self._stopping_since is not None else float("inf")
        if not self._wait_commits(None, budget):
            if self._abandon.is_set():
                return
            log.warning(
                "commits still running after shutdown.timeout.ms (%d ms); leaving them to "
                "the next owner (nothing uncommitted becomes visible)",
                self.config.shutdown_timeout_ms,
            )
        self._commit_hints(self._consumer, sync=True)
        failed = [w for w in self.state.writers.values() if w.status is WriterStatus.FAILED]
        if failed and self._catchup is not None:
            raise FatalError(
                "catch-up could not commit " + ", ".join(f"{w.tp} ({w.failure})" for w in failed)
            )

    # -- dead letters ------------------------------------------------------------------------
    def _flush_dead_letters(self) -> None:
        if self._dlq is not None:
            from s3sink.deadletter import flush

            flush(self._dlq)

    def _dead_letter(self, batch: RecordBatch, reasons: Sequence[str]) -> None:
        from s3sink.deadletter import send_dead_letters

        if self._dlq is None:
            from s3sink.deadletter import make_producer

            self._dlq = make_producer(self.config)
        send_dead_letters(self._dlq, self.config, batch, reasons)
