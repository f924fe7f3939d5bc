"""``s3sink restore`` as users run it: ``python -m s3sink restore ...`` against real brokers.

One small ``backup`` archive of a 4-partition topic (keys, headers, tombstones, timestamps) is
shared by the module. It is restored with the options of the command line (another cluster
with ``--bootstrap``, ``--partitions`` subsets and ranges, ``--keep-partitions``, ``--by-key``,
an ISO 8601 time window, ``--dry-run``), stopped with SIGTERM between transactions and resumed,
and read back with ``isolation.level=read_committed``: keys, values, headers and timestamps
must be those of the source, each record once. Further archives cover bad records
(``errors.tolerance=all`` with and without a dead-letter topic), files that no commit marker
names, committed files missing from their final key, and a parquet archive restored as JSON.
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from s3sink.config import SinkConfig
from s3sink.local import KafkaBroker
from s3sink.sink import storage_from_config
from tests.rig.archive import markers
from tests.rig.kafka import Consumed, create_topic, unique_name
from tests.test_restore import (
    T0,
    Rec,
    archive,
    by_partition,
    log_ends,
    murmur2,
    produce_varied,
    read_committed,
    second_broker,
    sink_config,
)

__all__ = ["second_broker"]  # the fixture, imported for this module

N = 1200
PARTITIONS = 4


@dataclass(frozen=True)
class Archive:
    cfg: SinkConfig
    props: Path
    source: str
    records: list[Consumed]

    @property
    def want(self) -> dict[int, list[Rec]]:
        return by_partition(self.records)

    def files(self, partitions: tuple[int, ...]) -> int:
        storage = storage_from_config(self.cfg)
        return sum(
            len(m.files) for p in partitions for m in markers(storage, self.source, p) if m.files
        )


def write_props(path: Path, cfg: SinkConfig, storage: dict[str, str], **extra: str) -> Path:
    keys = {
        "name": cfg.name,
        "topics": ",".join(cfg.topics),
        "bootstrap.servers": cfg.bootstrap_servers,
        "format.class": cfg.format_class,
        **storage,
        **extra,
    }
    path.write_text("".join(f"{k}={v}\n" for k, v in keys.items()))
    return path


@pytest.fixture(scope="module")
def backup(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Archive:
    tmp = tmp_path_factory.mktemp("restore-cli")
    source = create_topic(kafka_bootstrap, PARTITIONS)
    produce_varied(kafka_bootstrap, source, N)
    storage = {"storage.url": (tmp / "archive").as_uri()}
    cfg = sink_config(kafka_bootstrap, source, storage, **{"flush.size": "100"})
    archive(cfg, N)
    records = sorted(read_committed(kafka_bootstrap, source), key=lambda r: (r.partition, r.offset))
    assert len(records) == N
    return Archive(cfg, write_props(tmp / "backup.properties", cfg, storage), source, records)


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("S3SINK_")}


def _cmd(props: Path, target: str, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "s3sink",
        "restore",
        "-c",
        str(props),
        "--to-topic",
        target,
        *args,
    ]


def restore_cli(props: Path, target: str, *args: str) -> tuple[str, str]:
    """Run the restore to its end: (stdout, stderr); it must exit 0."""
    run = subprocess.run(
        _cmd(props, target, *args),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout, run.stderr


def summary_line(stdout: str) -> str:
    (line,) = [x for x in stdout.splitlines() if x.startswith("restore ")]
    return line


def head(records: int, source: str, target: str, bootstrap: str, partitions: int) -> str:
    return (
        f"restore done: {records:,} records from {source} into {target} ({bootstrap}), "
        f"{partitions} partitions, "
    )


# -- 1. the command line -----------------------------------------------------------------------


def test_cli_partition_subset_onto_another_cluster_kept_1_to_1(
    backup: Archive, second_broker: KafkaBroker
) -> None:
    """``--bootstrap`` the second cluster, ``--partitions 0,2-3``, ``--keep-partitions``."""
    other = second_broker.bootstrap
    target = create_topic(other, PARTITIONS)
    out, _ = restore_cli(
        backup.props,
        target,
        "--bootstrap",
        other,
        "--partitions",
        "0,2-3",
        "--keep-partitions",
        "--transaction-records",
        "200",
        "--no-progress",
    )
    want = {p: rs for p, rs in backup.want.items() if p in (0, 2, 3)}
    n = sum(map(len, want.values()))
    line = summary_line(out)
    assert line.startswith(head(n, backup.source, target, other, 3)), line
    assert f", {backup.files((0, 2, 3))} files, " in line, line
    transactions = int(re.search(r", (\d+) transactions,", line).group(1))  # type: ignore[union-attr]
    assert n // 200 <= transactions <= n // 200 + 4, line
    assert "; partitions kept 1:1 (source 4, target 4 partitions); " in line, line
    assert line.endswith(f"; job {backup.cfg.name}.{backup.source}.to.{target}"), line
    # partition 1 stays empty; the others hold the source's records, in order, byte for byte
    assert by_partition(read_committed(other, target)) == want
    assert log_ends(other, target)[1] == 0


def test_cli_by_key_onto_as_many_partitions(kafka_bootstrap: str, backup: Archive) -> None:
    """Explicit ``--by-key`` on a topic with as many partitions: murmur2 of the key decides,
    not the source partition; per-key order kept."""
    target = create_topic(kafka_bootstrap, PARTITIONS)
    out, _ = restore_cli(backup.props, target, "--by-key", "--no-progress")
    line = summary_line(out)
    assert line.startswith(head(N, backup.source, target, kafka_bootstrap, PARTITIONS)), line
    assert "partitions by key hash (murmur2, as the Java client) because --by-key" in line, line
    got = read_committed(kafka_bootstrap, target)
    as_rec = [(r.key, r.value, r.headers, r.timestamp_ms) for r in got]
    want = [(r.key, r.value, r.headers, r.timestamp_ms) for r in backup.records]
    assert collections.Counter(as_rec) == collections.Counter(want)
    for r in got:
        if r.key is not None:
            assert r.partition == (murmur2(r.key) & 0x7FFFFFFF) % PARTITIONS, r.key
    src_partition = {r.key: r.partition for r in backup.records if r.key is not None}
    moved = sum(1 for r in got if r.key is not None and src_partition[r.key] != r.partition)
    assert moved > 0, "the source's partitioner and murmur2 agree on every key: a weak test"
    ordered = sorted(got, key=lambda r: (r.partition, r.offset))
    for k in src_partition:
        assert [r.value for r in ordered if r.key == k] == [
            r.value for r in backup.records if r.key == k
        ]


def test_cli_iso_time_window(kafka_bootstrap: str, backup: Archive) -> None:
    """``--from-time`` (inclusive) and ``--to-time`` (exclusive) in ISO 8601, zones honoured."""
    target = create_topic(kafka_bootstrap, PARTITIONS)
    # T0 is 2020-09-13T12:26:40Z; record i has the timestamp T0 + i s
    lo, hi = T0 + 200_000, T0 + 800_000
    out, _ = restore_cli(
        backup.props,
        target,
        "--from-time",
        "2020-09-13T12:30:00Z",
        "--to-time",
        "2020-09-13T14:40:00+02:00",
        "--no-progress",
    )
    want = {
        p: kept for p, rs in backup.want.items() if (kept := [r for r in rs if lo <= r[3] < hi])
    }
    n = sum(map(len, want.values()))
    assert n == 600
    line = summary_line(out)
    assert line.startswith(head(n, backup.source, target, kafka_bootstrap, PARTITIONS)), line
    assert f"; {N - n:,} records outside the time window skipped; " in line, line
    assert re.search(rf"; job {re.escape(backup.cfg.name)}\.[^ ]+\.[0-9a-f]{{8}}$", line), line
    assert by_partition(read_committed(kafka_bootstrap, target)) == want


def test_cli_dry_run_prints_the_plan_and_produces_nothing(
    kafka_bootstrap: str, backup: Archive
) -> None:
    target = create_topic(kafka_bootstrap, 2)
    progress_topic = unique_name("progress")
    out, _ = restore_cli(
        backup.props, target, "--dry-run", "--progress-topic", progress_topic, "--partitions", "1-3"
    )
    storage = storage_from_config(backup.cfg)
    lines = out.splitlines()
    plan = [x for x in lines if x.startswith("partition ")]
    expected = []
    for p in (1, 2, 3):
        commits = [m for m in markers(storage, backup.source, p) if m.files]
        expected.append(
            f"partition {p}: {len(commits)} commits, {sum(len(m.files) for m in commits)} files, "
            f"{sum(f.records for m in commits for f in m.files):,} records, "
            f"offsets up to {commits[-1].end}"
        )
    assert plan == expected
    assert sum(len(backup.want[p]) for p in (1, 2, 3)) == sum(
        int(x.split(" files, ")[1].split(" records")[0].replace(",", "")) for x in plan
    )
    (mapping,) = [x for x in lines if x.startswith("mapping: ")]
    assert mapping.startswith("mapping: partitions by key hash (murmur2"), mapping
    assert "because the target has 2 partitions, the source 4" in mapping, mapping
    assert not any(x.startswith("restore ") for x in lines), out
    # nothing produced, no progress topic created
    assert log_ends(kafka_bootstrap, target) == {0: 0, 1: 0}
    assert progress_topic not in create_admin(kafka_bootstrap).list_topics(timeout=10).topics


def create_admin(bootstrap: str) -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap})
