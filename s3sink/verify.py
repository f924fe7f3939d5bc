"""``s3sink verify``: audit the commit log against what is in storage.

Checks, per topic-partition: markers numbered without gaps; offsets contiguous (marker n+1
starts where marker n ended); each marker's files inside its offset range and their record
counts within it; every committed file present under its final key with the recorded size (and
etag, where the etag is a plain MD5); no unpublished commit (staging file still there); no
stale staging file or multipart upload from an older epoch. Over ``topics.dir``: no data file
that no marker references (an orphan), no key referenced twice. ``--repair`` rolls unpublished
commits forward and deletes stale staging files and uploads; orphans are only reported.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from s3sink.clock import SystemClock
from s3sink.commitlog import (
    ROOT,
    Marker,
    PartitionLog,
    seq_of,
    staging_epoch_of,
    staging_prefix,
)
from s3sink.config import SinkConfig
from s3sink.storage.base import ObjectInfo, Storage


@dataclass
class PartitionReport:
    topic: str
    partition: int
    markers: int = 0
    commits: int = 0
    records: int = 0
    files: int = 0
    first_offset: int | None = None
    end_offset: int | None = None
    epoch: int = 0


@dataclass
class Report:
    partitions: list[PartitionReport] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def text(self) -> str:
        lines = []
        for p in self.partitions:
            lines.append(
                f"{p.topic}-{p.partition}: {p.commits} commits, {p.files} files, {p.records} "
                f"records, offsets [{p.first_offset}, {p.end_offset}), epoch {p.epoch}"
            )
        lines += [f"REPAIRED: {r}" for r in self.repaired]
        lines += [f"PROBLEM: {p}" for p in self.problems]
        total = sum(p.records for p in self.partitions)
        verdict = "OK" if self.ok else f"{len(self.problems)} problem(s)"
        lines.append(
            f"verify: {len(self.partitions)} partitions, {total} records committed: {verdict}"
        )
        return "\n".join(lines)


def _group_markers(
    storage: Storage, topics: Sequence[str] | None
) -> dict[tuple[str, int], list[str]]:
    out: dict[tuple[str, int], list[str]] = defaultdict(list)
    prefix = f"{ROOT}/log/"
    for info in storage.list(prefix):
        rest = info.key[len(prefix) :].split("/")
        if len(rest) != 3 or not rest[1].isdigit() or seq_of(info.key) is None:
            continue
        if topics and rest[0] not in topics:
            continue
        out[(rest[0], int(rest[1]))].append(info.key)
    return out


def verify(
    storage: Storage,
    config: SinkConfig,
    *,
    topics: Sequence[str] | None = None,
    repair: bool = False,
) -> Report:
    report = Report()
    referenced: dict[str, str] = {}
    groups = _group_markers(storage, topics)
    for (topic, partition), keys in sorted(groups.items()):
        plog = PartitionLog(storage, topic, partition, "verify", "verify", SystemClock())
        pr = PartitionReport(topic, partition)
        report.partitions.append(pr)
        tp = f"{topic}-{partition}"
        markers: list[Marker] = []
        for k in sorted(keys):
            data, _ = storage.get(k)
            markers.append(Marker.decode(data, k))
        pr.markers = len(markers)
        staged = {i.key: i for i in storage.list(staging_prefix(topic, partition))}
        prev: Marker | None = None
        for m in markers:
            if prev is None:
                if m.seq != 0:
                    report.problems.append(f"{tp}: log starts at seq {m.seq}, not 0")
                pr.first_offset = m.start
            else:
                if m.seq != prev.seq + 1:
                    report.problems.append(f"{tp}: gap in the log: seq {prev.seq} -> {m.seq}")
                if m.start != prev.end:
                    report.problems.append(
                        f"{tp}: offsets not contiguous at seq {m.seq}: starts at {m.start}, "
                        f"previous ended at {prev.end}"
                    )
            if m.end < m.start:
                report.problems.append(f"{tp}: seq {m.seq} ends before it starts")
            pr.epoch = max(pr.epoch, m.epoch)
            if m.kind == "commit":
                pr.commits += 1
                n = 0
                for f in m.files:
                    if f.holds_records:
                        n += f.records
                    if f.first_offset < m.start or f.last_offset >= m.end:
                        report.problems.append(
                            f"{tp}: seq {m.seq}: {f.key} holds offsets [{f.first_offset}, "
                            f"{f.last_offset}] outside [{m.start}, {m.end})"
                        )
                    if f.key in referenced:
                        report.problems.append(
                            f"{tp}: {f.key} is referenced twice ({referenced[f.key]}, seq {m.seq})"
                        )
                    referenced[f.key] = f"{tp} seq {m.seq}"
                if n > m.end - m.start:
                    report.problems.append(
                        f"{tp}: seq {m.seq} holds {n} records in {m.end - m.start} offsets"
                    )
                pr.records += m.records
                pr.files += len(m.files)
                unpublished = [f for f in m.files if f.staging in staged]
                if unpublished:
                    if repair:
                        plog.latest = m
                        plog.publish(m, roll_forward=True)
                        for f in unpublished:
                            staged.pop(f.staging, None)
                        report.repaired.append(f"{tp}: published seq {m.seq}")
                    else:
                        report.problems.append(
                            f"{tp}: seq {m.seq} is committed but not published "
                            f"({len(unpublished)} files); run verify --repair"
                        )
                _check_files(storage, m, tp, report, staged)
            prev = m
        pr.end_offset = prev.end if prev else None
        # staging files and uploads from older epochs that no marker references are stale
        for key in list(staged):
            ep = staging_epoch_of(key, topic, partition)
            if ep is not None and ep >= pr.epoch:
                continue  # a live writer's upload in flight
            if repair:
                storage.delete(key)
                report.repaired.append(f"{tp}: deleted stale staging file {key}")
            else:
                report.problems.append(f"{tp}: stale staging file {key}")
        for pending in storage.list_pending_uploads(staging_prefix(topic, partition)):
            ep = staging_epoch_of(pending.key, topic, partition)
            if ep is not None and ep >= pr.epoch:
                continue
            if repair:
                storage.abort_pending_upload(pending)
                report.repaired.append(f"{tp}: aborted stale upload of {pending.key}")
            else:
                report.problems.append(f"{tp}: stale multipart upload {pending.key}")
    _check_orphans(storage, config, report, referenced, {t for t, _ in groups})
    return report


def _check_files(
    storage: Storage, m: Marker, tp: str, report: Report, staged: dict[str, ObjectInfo]
) -> None:
    for f in m.files:
        if f.staging in staged:
            continue  # reported as unpublished
        info = storage.head(f.key)
        if info is None:
            report.problems.append(f"{tp}: seq {m.seq}: committed file {f.key} is missing")
        elif info.size != f.size:
            report.problems.append(
                f"{tp}: seq {m.seq}: {f.key} has {info.size} bytes, the marker says {f.size}"
            )
        elif "-" not in f.etag and info.etag.strip('"') != f.etag.strip('"'):
            report.problems.append(
                f"{tp}: seq {m.seq}: {f.key} has etag {info.etag}, the marker says {f.etag}"
            )


def _check_orphans(
    storage: Storage,
    config: SinkConfig,
    report: Report,
    referenced: dict[str, str],
    topics: set[str],
) -> None:
    for topic in sorted(topics):
        for info in storage.list(f"{config.topics_dir}/{topic}/"):
            if info.key not in referenced:
                report.orphans.append(info.key)
                report.problems.append(f"orphan: {info.key} is not referenced by any commit marker")
