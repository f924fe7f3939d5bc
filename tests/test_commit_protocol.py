"""The commit protocol of :mod:`s3sink.commitlog` against the in-memory storage.

Takeover (empty log, after commits: roll-forward and clean-up), fencing of an older epoch, a
marker whose response was lost, competing takeovers, idempotent publishing, and the cost of a
takeover with a long history. ``MemoryStorage`` has the conditional-write semantics of S3, and its
fault hook injects failures before or after an operation took effect.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Iterator
from typing import Any

import pytest

from s3sink.clock import ManualClock
from s3sink.commitlog import (
    CHECKPOINT_EVERY,
    FileEntry,
    Marker,
    PartitionLog,
    checkpoint_key,
    marker_key,
    staging_prefix,
)
from s3sink.committer import Committer
from s3sink.config import parse
from s3sink.context import build_context
from s3sink.errors import CommitLogError, FencedError, TransientStorageError
from s3sink.metrics import Metrics
from s3sink.records import RecordBatch
from s3sink.rotation import RotationReason
from s3sink.storage.memory import FaultCall, MemoryStorage
from s3sink.storage.retry import RetryPolicy, call_with_retry
from s3sink.writer import PartitionWriter, WriterStatus

TOPIC = "orders"
P = 3


class RetryingMemoryStorage(MemoryStorage):
    """MemoryStorage whose ``put`` retries transient errors like the S3 backend does: a retry of
    a conditional PUT whose first try landed then sees a conflict, exactly as on S3."""

    def put(self, key: str, data: bytes, **kwargs: Any) -> Any:
        return call_with_retry(
            lambda: super(RetryingMemoryStorage, self).put(key, data, **kwargs),
            policy=RetryPolicy(max_attempts=3, base_delay_s=0),
            what=f"put {key}",
            sleep=lambda _s: None,
        )


class Calls:
    """A fault hook that counts operations (phase "before") by (op, area)."""

    def __init__(self) -> None:
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()

    def __call__(self, call: FaultCall) -> None:
        if call.phase != "before":
            return
        area = call.key.split("/")[1] if call.key.startswith("_s3sink/") else "data"
        self.counts[(call.op, area)] += 1

    def reset(self) -> None:
        self.counts.clear()

    def total(self) -> int:
        return sum(self.counts.values())


def new_log(storage: MemoryStorage, writer: str, attempt: str | None = None) -> PartitionLog:
    return PartitionLog(storage, TOPIC, P, writer, attempt or f"{writer}-a", ManualClock())


def stage(
    storage: MemoryStorage, plog: PartitionLog, first: int, last: int, name: str | None = None
) -> FileEntry:
    """Upload a data file with the records [first, last] to the writer's staging area."""
    assert plog.latest is not None
    epoch = plog.latest.epoch
    body = b"".join(b'{"id":%d}\n' % o for o in range(first, last + 1))
    final = f"topics/{TOPIC}/partition={P}/{TOPIC}+{P}+{first:010d}.json"
    staging = (
        f"{staging_prefix(TOPIC, P)}e{epoch:010d}/{plog.attempt_id}/{name or first}-"
        f"{final.rsplit('/', 1)[-1]}"
    )
    with storage.open_upload(staging) as up:
        up.write(body)
        info = up.complete()
    return FileEntry(
        staging=staging,
        key=final,
        etag=info.etag,
        size=info.size,
        records=last - first + 1,
        first_offset=first,
        last_offset=last,
    )


def commit_range(
    storage: MemoryStorage, plog: PartitionLog, first: int, last: int, *, publish: bool = True
) -> Marker:
    marker = plog.commit([stage(storage, plog, first, last)], last + 1)
    if publish:
        plog.publish(marker)
    return marker


def all_keys(storage: MemoryStorage, prefix: str) -> list[str]:
    return [k for k in storage.keys() if k.startswith(prefix)]  # noqa: SIM118 (not a dict)


def log_markers(storage: MemoryStorage) -> list[Marker]:
    return [
        Marker.decode(storage.get(k)[0], k) for k in all_keys(storage, f"_s3sink/log/{TOPIC}/{P}/")
    ]


def final_keys(storage: MemoryStorage) -> list[str]:
    return all_keys(storage, "topics/")


def staged(storage: MemoryStorage) -> list[str]:
    return all_keys(storage, "_s3sink/staging/")


def ids_in(storage: MemoryStorage) -> list[int]:
    out = []
    for k in final_keys(storage):
        out += [json.loads(line)["id"] for line in storage.get(k)[0].splitlines()]
    return out


@pytest.fixture
def storage() -> Iterator[MemoryStorage]:
    yield MemoryStorage(name="protocol")


# -- takeover --------------------------------------------------------------------------------


def test_takeover_on_an_empty_log_fences_seq_0_at_the_initial_offset(
    storage: MemoryStorage,
) -> None:
    plog = new_log(storage, "w1")
    result = plog.takeover(None, lambda: 42)
    fence = result.fence
    assert (fence.seq, fence.epoch, fence.kind) == (0, 1, "fence")
    assert (fence.start, fence.end) == (42, 42)
    assert (fence.writer, fence.attempt) == ("w1", "w1-a")
    assert log_markers(storage) == [fence]
    assert (result.rolled_forward, result.staging_deleted, result.uploads_aborted) == (0, 0, 0)
    checkpoint = json.loads(storage.get(checkpoint_key(TOPIC, P))[0])
    assert checkpoint == {"seq": 0, "end": 42, "epoch": 1}
    # the next commit continues at the fence's offset
    m = commit_range(storage, plog, 42, 49)
    assert (m.seq, m.epoch, m.start, m.end, m.records) == (1, 1, 42, 50, 8)


def test_takeover_after_commits_rolls_forward_and_cleans_up(storage: MemoryStorage) -> None:
    a = new_log(storage, "a")
    a.takeover(None, lambda: 0)
    commit_range(storage, a, 0, 9)  # seq 1, published
    unpublished = commit_range(storage, a, 10, 19, publish=False)  # seq 2: crash after marker
    leftover = stage(storage, a, 20, 29)  # staged for the next commit, never committed
    dangling = storage.open_upload(f"{staging_prefix(TOPIC, P)}e{1:010d}/a-a/x-part")
    dangling.write(b"half a file")  # a multipart upload in flight when "a" died
    assert len(staged(storage)) == 2

    b = new_log(storage, "b")
    initial_called: list[int] = []

    def initial() -> int:
        initial_called.append(1)
        return 0

    result = b.takeover(None, initial)
    assert initial_called == []  # the log, not Kafka, says where to resume
    assert (result.fence.seq, result.fence.epoch) == (3, 2)
    assert result.fence.start == result.fence.end == 20
    assert result.rolled_forward == 1
    assert result.staging_deleted == 1
    assert result.uploads_aborted == 1
    # the committed-but-unpublished file is now final, with its bytes; nothing is left staged
    f = unpublished.files[0]
    assert storage.head(f.key) is not None and storage.head(f.key).size == f.size  # type: ignore[union-attr]
    assert staged(storage) == []
    assert storage.list_pending_uploads(staging_prefix(TOPIC, P)) == []
    assert leftover.key not in final_keys(storage)
    assert sorted(ids_in(storage)) == list(range(20))
    # taking over again changes nothing but the epoch
    again = new_log(storage, "c").takeover(None, lambda: 0)
    assert (again.fence.seq, again.fence.epoch, again.rolled_forward) == (4, 3, 0)


def test_takeover_keeps_staging_of_newer_epochs_and_referenced_files(
    storage: MemoryStorage,
) -> None:
    """Only staging files of *older* epochs that no marker references are deleted: a newer
    owner's in-flight files and committed files waiting to be published stay."""
    a = new_log(storage, "a")
    a.takeover(None, lambda: 0)
    m = commit_range(storage, a, 0, 4, publish=False)
    # a later epoch's file (e.g. a writer that took over after our read) must survive
    newer = f"{staging_prefix(TOPIC, P)}e{99:010d}/z/1-x.json"
    storage.put(newer, b"in flight")
    b = new_log(storage, "b")
    b.takeover(None, lambda: 0)
    assert storage.head(newer) is not None
    assert storage.head(m.files[0].key) is not None


def test_a_writer_fenced_by_a_newer_epoch_gets_fenced_error_and_its_marker_never_lands(
    storage: MemoryStorage,
) -> None:
    old = new_log(storage, "old")
    old.takeover(None, lambda: 0)
    commit_range(storage, old, 0, 9)
    new = new_log(storage, "new")
    new.takeover(None, lambda: 0)  # fence at seq 2, epoch 2
    entry = stage(storage, old, 10, 19)
    with pytest.raises(FencedError, match="epoch 2"):
        old.commit([entry], 20)
    assert old.fenced
    markers = log_markers(storage)
    assert [(m.seq, m.kind, m.writer, m.epoch) for m in markers] == [
        (0, "fence", "old", 1),
        (1, "commit", "old", 1),
        (2, "fence", "new", 2),
    ]
    assert all(entry.staging not in [f.staging for f in m.files] for m in markers)
    assert entry.key not in final_keys(storage)
    # it stays fenced: no further commit, no checkpoint overwrite
    with pytest.raises(FencedError):
        old.commit([entry], 20)
    before = storage.get(checkpoint_key(TOPIC, P))
    old.write_checkpoint()
    assert storage.get(checkpoint_key(TOPIC, P)) == before
    # the new owner's next takeover (or its own clean-up) removes the fenced writer's file
    new2 = new_log(storage, "new2")
    assert new2.takeover(None, lambda: 0).staging_deleted == 1
    assert staged(storage) == []
    # the new owner commits right after the fence
    m = commit_range(storage, new2, 10, 19)
    assert (m.seq, m.start) == (4, 10)


def test_a_marker_whose_response_was_lost_is_recognized_as_ours() -> None:
    lost: list[str] = []

    def hook(call: FaultCall) -> None:
        # the first conditional PUT of marker 1 lands, then the connection resets
        if (
            call.op == "put"
            and call.phase == "after"
            and call.key == marker_key(TOPIC, P, 1)
            and not lost
        ):
            lost.append(call.key)
            raise TransientStorageError("injected: connection reset after the PUT landed")

    storage = RetryingMemoryStorage(fault_hook=hook)
    plog = new_log(storage, "w")
    plog.takeover(None, lambda: 0)
    marker = commit_range(storage, plog, 0, 9)
    assert lost == [marker_key(TOPIC, P, 1)]
    assert not plog.fenced
    assert plog.latest == marker
    assert [m.seq for m in log_markers(storage)] == [0, 1]
    assert log_markers(storage)[1] == marker
    assert sorted(ids_in(storage)) == list(range(10))
    # and the writer goes on
    assert commit_range(storage, plog, 10, 19).seq == 2


def test_a_marker_slot_taken_by_another_attempt_of_the_same_writer_is_fencing(
    storage: MemoryStorage,
) -> None:
    """Recognition is by attempt id, not by writer id: a restarted process on the same host
    (same writer id) is another attempt and fences the old one."""
    one = new_log(storage, "host-1", "attempt-1")
    one.takeover(None, lambda: 0)
    two = new_log(storage, "host-1", "attempt-2")
    two.takeover(None, lambda: 0)
    with pytest.raises(FencedError):
        one.commit([stage(storage, one, 0, 9)], 10)


def test_a_commit_that_failed_after_its_marker_landed_is_rolled_forward(
    storage: MemoryStorage,
) -> None:
    """The writer saw an error on the marker PUT (retries exhausted) but it had landed: the
    commit happened, and the next takeover publishes it (nothing is lost, nothing doubled)."""

    def hook(call: FaultCall) -> None:
        if call.op == "put" and call.phase == "after" and call.key == marker_key(TOPIC, P, 2):
            raise TransientStorageError("injected: response lost")

    storage.fault_hook = hook
    plog = new_log(storage, "w")
    plog.takeover(None, lambda: 0)
    commit_range(storage, plog, 0, 9)
    with pytest.raises(TransientStorageError):
        commit_range(storage, plog, 10, 19)
    storage.fault_hook = None
    result = new_log(storage, "w2").takeover(None, lambda: 0)
    assert result.rolled_forward == 1
    assert result.fence.end == 20
    assert sorted(ids_in(storage)) == list(range(20))
    assert staged(storage) == []


def test_competing_takeovers_never_delete_the_files_of_an_unpublished_commit(
    storage: MemoryStorage,
) -> None:
    """X reads the log (an unpublished commit at its end), then Y's fence lands first; X
    re-reads from Y's fence and fences after it. X must still treat the unpublished commit it
    saw as committed: publish it, never delete its staging files."""
    w = new_log(storage, "w")
    w.takeover(None, lambda: 0)
    commit_range(storage, w, 0, 9)
    pending = commit_range(storage, w, 10, 19, publish=False)  # seq 2; then w dies
    y = new_log(storage, "y")
    raced: list[int] = []

    def hook(call: FaultCall) -> None:
        # just before X's fence PUT at seq 3, Y's takeover writes its fence there
        if (
            call.op == "put"
            and call.phase == "before"
            and call.key == marker_key(TOPIC, P, 3)
            and not raced
        ):
            raced.append(1)
            storage.fault_hook = None
            fence = Marker(
                seq=3, epoch=2, kind="fence", writer="y", attempt=y.attempt_id, start=20, end=20
            )
            storage.put(marker_key(TOPIC, P, 3), fence.encode(), if_none_match=True)
            storage.fault_hook = hook

    storage.fault_hook = hook
    x = new_log(storage, "x")
    result = x.takeover(None, lambda: 0)
    storage.fault_hook = None
    assert raced
    assert (result.fence.seq, result.fence.epoch) == (4, 3)
    f = pending.files[0]
    assert storage.head(f.key) is not None, "a committed file was lost"
    assert sorted(ids_in(storage)) == list(range(20))
    assert staged(storage) == []


def test_takeover_after_a_zombie_commit_lands_first_continues_after_it(
    storage: MemoryStorage,
) -> None:
    """A zombie's last commit lands in the slot the new owner wanted for its fence: the new
    owner re-reads, fences after it and publishes it."""
    zombie = new_log(storage, "zombie")
    zombie.takeover(None, lambda: 0)
    commit_range(storage, zombie, 0, 9)
    entry = stage(storage, zombie, 10, 19)
    done: list[int] = []

    def hook(call: FaultCall) -> None:
        if (
            call.op == "put"
            and call.phase == "before"
            and call.key == marker_key(TOPIC, P, 2)
            and not done
        ):
            done.append(1)
            storage.fault_hook = None
            zombie.commit([entry], 20)
            storage.fault_hook = hook

    storage.fault_hook = hook
    owner = new_log(storage, "owner")
    result = owner.takeover(None, lambda: 0)
    storage.fault_hook = None
    assert (result.fence.seq, result.fence.start, result.rolled_forward) == (3, 20, 1)
    assert sorted(ids_in(storage)) == list(range(20))
    with pytest.raises(FencedError):
        zombie.commit([stage(storage, zombie, 20, 29)], 30)


# -- publishing ------------------------------------------------------------------------------


def test_publish_is_idempotent_and_survives_a_crash_mid_publish(storage: MemoryStorage) -> None:
    w = new_log(storage, "w")
    w.takeover(None, lambda: 0)
    files = [stage(storage, w, 0, 4, "a"), stage(storage, w, 5, 9, "b")]
    files[1] = FileEntry(**{**_asdict(files[1]), "key": files[1].key.replace("0000000005", "5b")})
    marker = w.commit(files, 10)
    # "crash" after the first file: copy + delete of file 0 only
    storage.copy(files[0].staging, files[0].key)
    storage.delete(files[0].staging)
    result = new_log(storage, "w2").takeover(None, lambda: 0)
    assert result.rolled_forward == 1
    assert sorted(ids_in(storage)) == list(range(10))
    # publishing the same marker again (a zombie finishing its publish) changes nothing
    assert w.publish(marker) == 0
    assert sorted(ids_in(storage)) == list(range(10))
    assert staged(storage) == []


def _asdict(f: FileEntry) -> dict[str, Any]:
    return {k: getattr(f, k) for k in FileEntry.__slots__}


def test_publish_refuses_a_marker_whose_files_are_gone(storage: MemoryStorage) -> None:
    w = new_log(storage, "w")
    w.takeover(None, lambda: 0)
    marker = commit_range(storage, w, 0, 9, publish=False)
    storage.delete(marker.files[0].staging)
    with pytest.raises(CommitLogError, match="verify"):
        w.publish(marker)


def test_checkpoint_is_written_every_n_commits(storage: MemoryStorage) -> None:
    w = new_log(storage, "w")
    w.takeover(None, lambda: 0)
    for i in range(CHECKPOINT_EVERY):
        commit_range(storage, w, i, i)
    checkpoint = json.loads(storage.get(checkpoint_key(TOPIC, P))[0])
    assert checkpoint["seq"] == CHECKPOINT_EVERY
    assert checkpoint["end"] == CHECKPOINT_EVERY


# -- recovery cost ---------------------------------------------------------------------------


def _long_log(storage: MemoryStorage, n: int) -> PartitionLog:
    w = new_log(storage, "w")
    w.takeover(None, lambda: 0)
    for i in range(n - 1):
        commit_range(storage, w, i, i)
    assert len(log_markers(storage)) == n
    return w


def test_takeover_with_a_hint_reads_a_constant_number_of_markers() -> None:
    calls = Calls()
    storage = MemoryStorage(fault_hook=calls)
    _long_log(storage, 500)
    calls.reset()
    result = new_log(storage, "b").takeover(499, lambda: 0)
    assert result.fence.seq == 500 and result.fence.end == 499
    marker_reads = calls.counts[("get", "log")]
    assert marker_reads <= 2, calls.counts
    # a few requests in all, not hundreds: hint check + fence + clean-up listings
    assert calls.total() <= 12, calls.counts


def test_takeover_without_a_kafka_hint_is_bounded_by_the_checkpoint() -> None:
    calls = Calls()
    storage = MemoryStorage(fault_hook=calls)
    _long_log(storage, 500)
    calls.reset()
    result = new_log(storage, "b").takeover(None, lambda: 0)
    assert result.fence.seq == 500
    assert calls.counts[("get", "log")] <= CHECKPOINT_EVERY + 1, calls.counts


def test_a_wrong_hint_falls_back_to_reading_the_log(storage: MemoryStorage) -> None:
    _long_log(storage, 20)
    storage.delete(checkpoint_key(TOPIC, P))
    result = new_log(storage, "b").takeover(10_000, lambda: 0)  # a hint from another log
    assert result.fence.seq == 20 and result.fence.end == 19


# -- the committer: a fenced writer cleans up after itself -----------------------------------


def _writer(storage: MemoryStorage, name: str) -> tuple[PartitionWriter, Committer, Metrics]:
    cfg = parse(
        {
            "name": "protocol",
            "topics": TOPIC,
            "bootstrap.servers": "127.0.0.1:9",
            "storage.url": "file:///unused",
            "format.class": "json",
            "flush.size": "1000",
        },
        environ={},
    )
    clock = ManualClock()
    metrics = Metrics()
    committer = Committer(workers=2, clock=clock, metrics=metrics, on_committed=lambda w, m: None)
    ctx = build_context(cfg, storage, clock, metrics, committer)
    plog = PartitionLog(storage, TOPIC, P, name, f"{name}-a", clock)
    fence = plog.takeover(None, lambda: 0).fence
    return PartitionWriter(ctx, TOPIC, P, plog, fence.end), committer, metrics


def _batch(first: int, last: int) -> RecordBatch:
    offsets = list(range(first, last + 1))
    return RecordBatch(
        TOPIC,
        P,
        offsets=offsets,
        timestamps=[1_700_000_000_000] * len(offsets),
        timestamp_types=[1] * len(offsets),
        keys=[None] * len(offsets),
        values=[b'{"id":%d}' % o for o in offsets],
        headers=[None] * len(offsets),
    )


def test_a_fenced_writer_drops_its_files_and_deletes_its_staging(storage: MemoryStorage) -> None:
    old, old_committer, metrics = _writer(storage, "old")
    old.append(_batch(0, 9))
    old.seal(RotationReason.FLUSH_SIZE)
    assert old_committer.wait_idle(old, 10)
    assert old.status is WriterStatus.ACTIVE
    new, new_committer, _ = _writer(storage, "new")  # fences "old"
    old.append(_batch(10, 19))
    old.seal(RotationReason.SCHEDULE)  # uploads to staging, then the marker PUT loses
    assert old_committer.wait_idle(old, 10)
    assert old.status is WriterStatus.FAILED  # type: ignore[comparison-overlap]
    assert isinstance(old.failure, FencedError)
    assert metrics.total("fenced_total") == 1
    assert staged(storage) == [], "the fenced writer left its staging files behind"
    assert sorted(ids_in(storage)) == list(range(10))
    # the new owner resumes where the log ends, not where the fenced writer was
    assert new.position == 10
    new.append(_batch(10, 19))
    new.seal(RotationReason.FLUSH_SIZE)
    assert new_committer.wait_idle(new, 10)
    assert sorted(ids_in(storage)) == list(range(20))
    old_committer.shutdown()
    new_committer.shutdown()


def test_a_writer_whose_upload_a_takeover_aborted_is_reported_fenced(
    storage: MemoryStorage,
) -> None:
    """The new owner's takeover aborts uploads of older epochs; the old writer's commit then
    fails on its upload, before any marker PUT. That is fencing (counted and logged as such),
    not a broken commit."""
    old, old_committer, metrics = _writer(storage, "old")
    old.append(_batch(0, 9))  # an upload in flight
    new, new_committer, _ = _writer(storage, "new")
    assert new.log.latest is not None and new.log.latest.seq == 1
    old.seal(RotationReason.SCHEDULE)
    assert old_committer.wait_idle(old, 10)
    assert isinstance(old.failure, FencedError), old.failure
    assert "took the partition over" in str(old.failure)
    assert metrics.total("fenced_total") == 1
    assert metrics.total("commit_failures_total") == 0
    assert staged(storage) == []
    assert [m.kind for m in log_markers(storage)] == ["fence", "fence"]
    old_committer.shutdown()
    new_committer.shutdown()
