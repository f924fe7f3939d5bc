"""``s3sink verify``: what it detects in the log and the listing, and what ``--repair`` fixes.

The log is built with the real protocol (:class:`~s3sink.commitlog.PartitionLog`) on the
in-memory storage, then damaged the way crashes, operators or bugs damage it: a gap in the
log, offsets that do not join, a missing or changed final file, an orphan data file, a file
referenced twice, an unpublished commit, stale staging files and multipart uploads. The CLI
(exit codes, ``--repair``) runs as a subprocess on the filesystem backend.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from s3sink.clock import ManualClock
from s3sink.commitlog import FileEntry, Marker, PartitionLog, marker_key, staging_prefix
from s3sink.config import SinkConfig, parse
from s3sink.storage.base import Storage
from s3sink.storage.memory import MemoryStorage
from s3sink.verify import Report, verify
from tests.rig.sinkproc import run_command, storage_of

TOPIC = "events"


def config(url: str = "file:///unused") -> SinkConfig:
    return parse(
        {"name": "verify", "topics": TOPIC, "bootstrap.servers": "127.0.0.1:9", "storage.url": url},
        environ={},
    )


def take(storage: Storage, partition: int = 0, writer: str = "w") -> PartitionLog:
    plog = PartitionLog(storage, TOPIC, partition, writer, f"{writer}-attempt", ManualClock())
    plog.takeover(None, lambda: 0)
    return plog


def stage(storage: Storage, plog: PartitionLog, first: int, last: int) -> FileEntry:
    assert plog.latest is not None
    p = plog.partition
    body = b"".join(b'{"id":%d}\n' % o for o in range(first, last + 1))
    final = f"topics/{TOPIC}/partition={p}/{TOPIC}+{p}+{first:010d}.json"
    staging = (
        f"{staging_prefix(TOPIC, p)}e{plog.latest.epoch:010d}/{plog.attempt_id}/"
        f"{first}-{final.rsplit('/', 1)[-1]}"
    )
    info = storage.put(staging, body)
    return FileEntry(staging, final, info.etag, info.size, last - first + 1, first, last)


def commit(
    storage: Storage, plog: PartitionLog, first: int, last: int, *, publish: bool = True
) -> Marker:
    marker = plog.commit([stage(storage, plog, first, last)], last + 1)
    if publish:
        plog.publish(marker)
    return marker


def healthy(storage: Storage) -> tuple[PartitionLog, list[Marker]]:
    """Two partitions; partition 0 has three commits of 10 records."""
    plog = take(storage)
    markers = [commit(storage, plog, i * 10, i * 10 + 9) for i in range(3)]
    commit(storage, take(storage, 1), 0, 4)
    return plog, markers


def problems(report: Report, needle: str) -> list[str]:
    return [p for p in report.problems if needle in p]


@pytest.fixture
def storage() -> MemoryStorage:
    return MemoryStorage(name="verify")


def test_a_healthy_archive_verifies(storage: MemoryStorage) -> None:
    healthy(storage)
    report = verify(storage, config())
    assert report.ok, report.text()
    by_tp = {(p.topic, p.partition): p for p in report.partitions}
    p0 = by_tp[(TOPIC, 0)]
    assert (p0.commits, p0.files, p0.records, p0.first_offset, p0.end_offset) == (3, 3, 30, 0, 30)
    assert by_tp[(TOPIC, 1)].records == 5
    assert "35 records committed: OK" in report.text()


def test_a_gap_in_the_log(storage: MemoryStorage) -> None:
    healthy(storage)
    storage.delete(marker_key(TOPIC, 0, 2))
    report = verify(storage, config())
    assert problems(report, "gap in the log: seq 1 -> 3"), report.text()
    # and the files of the lost marker are now referenced by nothing
    assert problems(report, "orphan:"), report.text()


def test_offsets_that_do_not_join(storage: MemoryStorage) -> None:
    plog = take(storage)
    commit(storage, plog, 0, 9)
    bad = Marker(seq=2, epoch=1, kind="fence", writer="x", attempt="x", start=15, end=15)
    storage.put(marker_key(TOPIC, 0, 2), bad.encode(), if_none_match=True)
    report = verify(storage, config())
    assert problems(report, "offsets not contiguous at seq 2: starts at 15, previous ended at 10")


def test_a_missing_committed_file(storage: MemoryStorage) -> None:
    _, markers = healthy(storage)
    storage.delete(markers[1].files[0].key)
    report = verify(storage, config())
    assert problems(report, f"committed file {markers[1].files[0].key} is missing"), report.text()
    assert not verify(storage, config(), repair=True).ok  # nothing can bring it back


def test_a_changed_committed_file(storage: MemoryStorage) -> None:
    _, markers = healthy(storage)
    f = markers[0].files[0]
    storage.put(f.key, b"x" * f.size)  # same size, other bytes: the etag tells
    storage.put(markers[1].files[0].key, b"short")
    report = verify(storage, config())
    assert problems(report, f"{f.key} has etag"), report.text()
    assert problems(report, "has 5 bytes"), report.text()


def test_an_orphan_data_file(storage: MemoryStorage) -> None:
    healthy(storage)
    orphan = f"topics/{TOPIC}/partition=0/{TOPIC}+0+0000000999.json"
    storage.put(orphan, b'{"id":999}\n')
    report = verify(storage, config())
    assert report.orphans == [orphan]
    assert problems(report, f"orphan: {orphan}")
    # orphans are reported, never deleted by --repair (a person decides)
    repaired = verify(storage, config(), repair=True)
    assert repaired.orphans == [orphan]
    assert storage.head(orphan) is not None


def test_a_file_referenced_twice(storage: MemoryStorage) -> None:
    plog = take(storage)
    first = commit(storage, plog, 0, 9)
    again = stage(storage, plog, 10, 19)
    twice = FileEntry(
        **{**{k: getattr(again, k) for k in FileEntry.__slots__}, "key": first.files[0].key}
    )
    marker = plog.commit([twice], 20)
    storage.delete(twice.staging)  # as if published
    del marker
    report = verify(storage, config())
    assert problems(report, "is referenced twice"), report.text()


def test_an_unpublished_commit_is_reported_and_repaired(storage: MemoryStorage) -> None:
    plog, _ = healthy(storage)
    pending = commit(storage, plog, 30, 39, publish=False)  # the writer died after the marker
    report = verify(storage, config())
    assert problems(report, "seq 4 is committed but not published (1 files)"), report.text()
    repaired = verify(storage, config(), repair=True)
    assert repaired.ok, repaired.text()
    assert any("published seq 4" in r for r in repaired.repaired)
    assert storage.head(pending.files[0].key) is not None
    assert storage.head(pending.files[0].staging) is None
    assert verify(storage, config()).ok


def test_stale_staging_and_uploads_are_reported_and_repaired(storage: MemoryStorage) -> None:
    old = take(storage, writer="old")
    commit(storage, old, 0, 9)
    leftover = stage(storage, old, 10, 19)  # never committed
    upload = storage.open_upload(f"{staging_prefix(TOPIC, 0)}e{1:010d}/old-attempt/x.json")
    upload.write(b"half")
    new = take(storage, writer="new")  # epoch 2 (its takeover would clean; undo that below)
    storage.put(leftover.staging, b"left behind")
    upload = storage.open_upload(f"{staging_prefix(TOPIC, 0)}e{1:010d}/old-attempt/y.json")
    upload.write(b"half")
    in_flight = stage(storage, new, 10, 19)  # the current epoch's file: a live writer's
    report = verify(storage, config())
    assert problems(report, f"stale staging file {leftover.staging}"), report.text()
    assert problems(report, "stale multipart upload"), report.text()
    assert not problems(report, in_flight.staging)
    repaired = verify(storage, config(), repair=True)
    assert repaired.ok, repaired.text()
    assert storage.head(leftover.staging) is None
    assert storage.head(in_flight.staging) is not None
    assert storage.list_pending_uploads(staging_prefix(TOPIC, 0)) == []
    assert verify(storage, config()).ok


@pytest.mark.parametrize("damage", ["unpublished", "stale", "gap"])
def test_the_cli_exit_codes_and_repair(damage: str, tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    raw = {
        "name": "verify-cli",
        "topics": TOPIC,
        "bootstrap.servers": "127.0.0.1:9",
        "storage.url": root.as_uri(),
    }
    storage = storage_of(raw)
    plog, _ = healthy(storage)
    code, out = run_command("verify", raw, tmp_path, "clean")
    assert code == 0 and "verify: 2 partitions, 35 records committed: OK" in out, out
    if damage == "unpublished":
        commit(storage, plog, 30, 39, publish=False)
    elif damage == "stale":
        storage.put(f"{staging_prefix(TOPIC, 0)}e{0:010d}/gone/1-x.json", b"stale")
    else:
        storage.delete(marker_key(TOPIC, 0, 1))
    code, out = run_command("verify", raw, tmp_path, "damaged")
    assert code == 1 and "PROBLEM:" in out, out
    code, out = run_command("verify", raw, tmp_path, "repair", args=["--repair"])
    if damage == "gap":
        assert code == 1, out  # a gap cannot be repaired
        return
    assert code == 0 and "REPAIRED:" in out, out
    code, out = run_command("verify", raw, tmp_path, "after")
    assert code == 0, out
