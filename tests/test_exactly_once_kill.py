"""The kill test: SIGKILL the sink at random moments and at every failpoint; nothing is lost or
duplicated.

6 partitions of records with a unique id; ``s3sink run`` as a subprocess on MinIO (atomic
conditional writes) with small rotation (500 records or 2 s); killed at random moments (at least
20 times) and once at each failpoint of :mod:`s3sink.failpoints`, restarted in between; then a
final ``s3sink catchup``. The checker lists ``topics.dir`` as a reader would and compares the ids
with what was produced (no loss, no duplicate), checks that each partition's log is contiguous
from offset 0 to the end offset, that ``s3sink verify`` is clean and that no staging file or
multipart upload is left. Figures (kills, records, duplicates, losses, fencing events, recovery
time p50/p99) go to the test's JSON report (``.cache/test-reports/``) and the terminal summary.

Size: ``KILL_TEST_RECORDS_PER_PARTITION`` (default 200,000, the issue's figure) and
``KILL_TEST_RANDOM_KILLS`` (default 20); ``KILL_TEST_SEED`` replays a run's kill schedule.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from pathlib import Path

import pytest

from s3sink.failpoints import NAMES as FAILPOINTS
from s3sink.local import S3Endpoint
from tests.rig.kafka import create_topic, end_offsets, produce_n
from tests.rig.sinkproc import (
    IdProducer,
    SinkProcess,
    check_archive,
    figures,
    info,
    percentile,
    run_command,
    s3_keys,
    sink_config,
    storage_of,
)

PARTITIONS = 6
PER_PARTITION = int(os.environ.get("KILL_TEST_RECORDS_PER_PARTITION", "200000"))
RANDOM_KILLS = int(os.environ.get("KILL_TEST_RANDOM_KILLS", "20"))
#: A random kill comes this long after the start (seconds): during start-up, takeover,
#: consumption and commits alike.
KILL_AFTER = (0.5, 8.0)
#: The n-th time a failpoint is reached is the one that kills (random in this range).
FAILPOINT_HIT = (1, 12)
#: Records added before each failpoint run so that it has commits to make even when the sink
#: has already archived everything produced so far (each partition commits every 500 records).
FAILPOINT_TOP_UP = 2 * FAILPOINT_HIT[1] * 500 * PARTITIONS

COMMITTED = re.compile(r"committed seq \d+")


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_sigkill_at_random_moments_and_every_failpoint(
    kafka_bootstrap: str, minio_endpoint: S3Endpoint, minio_bucket: str, tmp_path: Path
) -> None:
    seed = int(os.environ.get("KILL_TEST_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    info(f"kill test seed {seed} (KILL_TEST_SEED={seed} replays the kill schedule)")
    started = time.monotonic()
    n = PER_PARTITION * PARTITIONS
    topic = create_topic(kafka_bootstrap, PARTITIONS, prefix="kill")
    producer = IdProducer(kafka_bootstrap, topic, n, PARTITIONS)
    producer.start()

    cfg = sink_config(
        kafka_bootstrap,
        topic,
        s3_keys(minio_endpoint, minio_bucket),
        # static membership: a restarted incarnation takes over the killed one's place at once
        # instead of waiting for its session to expire
        **{
            "consumer.group.instance.id": "kill-test",
            "consumer.session.timeout.ms": "10000",
            "s3.part.size": str(5 * 1024 * 1024),
        },
    )
    # the failpoint runs come early, while there is data to commit; random kills everywhere
    plan: list[str | None] = [None] * RANDOM_KILLS
    for i, name in enumerate(sorted(FAILPOINTS)):
        plan.insert(1 + 2 * i, name)
    proc = SinkProcess(cfg, tmp_path, "sink")
    recovery: list[float] = []
    no_commit_runs = 0
    kills = 0
    failpoint_kills: dict[str, float] = {}
    with proc:
        for step, failpoint in enumerate(plan):
            env = {}
            if failpoint is not None:
                # a fast sink may have caught up with the producer: give the run fresh records
                top_up = IdProducer(kafka_bootstrap, topic, FAILPOINT_TOP_UP, PARTITIONS, first=n)
                top_up.start()
                top_up.join_checked(120)
                n += FAILPOINT_TOP_UP
                env = {
                    "S3SINK_FAILPOINT": failpoint,
                    "S3SINK_FAILPOINT_HIT": str(rng.randint(*FAILPOINT_HIT)),
                }
            proc.start(env=env)
            if failpoint is None:
                time.sleep(rng.uniform(*KILL_AFTER))
                code = proc.kill()
                assert code == -9, f"run {step} exited by itself ({code}):\n{proc.tail()}"
            else:
                code = proc.wait(90)
                assert code == -9, f"failpoint {failpoint} did not kill ({code}):\n{proc.tail()}"
                assert f"failpoint {failpoint} reached" in proc.text(current=True)
                failpoint_kills[failpoint] = time.time() - proc.started_at
            kills += 1
            first = next((r for r in proc.records(current=True) if COMMITTED.search(r.msg)), None)
            if first is None:
                no_commit_runs += 1
            elif step > 0:
                recovery.append(first.ts - proc.started_at)
        kill_phase = time.monotonic() - started
        producer.join_checked(120)

        catchup_started = time.time()
        catchup = SinkProcess(cfg, tmp_path, "catchup", command="catchup", args=["--no-progress"])
        with catchup:
            catchup.start()
            assert catchup.wait(240) == 0, catchup.tail()
        first = next((r for r in catchup.records() if COMMITTED.search(r.msg)), None)
        if first is not None:
            recovery.append(first.ts - catchup_started)
        summary = [line for line in catchup.lines() if line.startswith("catch-up done")]

    code, report = run_command("verify", cfg, tmp_path, "verify", timeout=180)
    assert code == 0, report
    storage = storage_of(cfg)
    ends = end_offsets(kafka_bootstrap, topic)
    assert sum(ends.values()) == n
    check = check_archive(storage, topic, range(n), ends)
    fenced_lines = proc.count(r"fenced") + catchup.count(r"fenced")

    info(
        f"records {check.produced} produced ({PER_PARTITION} x {PARTITIONS} partitions, "
        f"plus {FAILPOINT_TOP_UP} before each failpoint run)"
    )
    info(
        f"kills {kills}: {RANDOM_KILLS} random + failpoints "
        + ", ".join(f"{k} ({v:.1f}s after start)" for k, v in sorted(failpoint_kills.items()))
    )
    info(
        f"archived {check.archived}, duplicates {check.duplicates}, losses {check.missing}, "
        f"unexpected {check.unexpected}"
    )
    info(
        f"log: {check.commits} commits, {check.files} files, {check.fences} fence markers "
        f"(takeovers, each fencing the previous epoch), {fenced_lines} writer fenced log lines"
    )
    info(
        f"recovery time (start to first new commit) over {len(recovery)} restarts: "
        f"p50 {percentile(recovery, 50):.2f}s, p99 {percentile(recovery, 99):.2f}s, "
        f"max {max(recovery, default=float('nan')):.2f}s; {no_commit_runs} runs were killed "
        "before their first commit"
    )
    info(f"catch-up: {summary[-1] if summary else '?'}")
    info(f"wall time: kill phase {kill_phase:.0f}s, total {time.monotonic() - started:.0f}s")
    figures(
        seed=seed,
        kills=kills,
        random_kills=RANDOM_KILLS,
        failpoint_kills=len(failpoint_kills),
        records_produced=check.produced,
        records_archived=check.archived,
        duplicates=check.duplicates,
        losses=check.missing,
        unexpected=check.unexpected,
        commits=check.commits,
        files=check.files,
        fence_markers=check.fences,
        fenced_log_lines=fenced_lines,
        recovery_samples=len(recovery),
        recovery_p50_s=round(percentile(recovery, 50), 3),
        recovery_p99_s=round(percentile(recovery, 99), 3),
        recovery_max_s=round(max(recovery, default=float("nan")), 3),
        runs_killed_before_first_commit=no_commit_runs,
        kill_phase_s=round(kill_phase, 1),
        total_s=round(time.monotonic() - started, 1),
    )
    assert not check.problems(), "\n".join(check.problems())
    assert kills >= 20 + len(FAILPOINTS)
    # every partition was taken over after every kill that got as far as its assignment
    assert check.fences >= PARTITIONS


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_multipart_upload_killed_midway_is_aborted_by_the_next_owner(
    kafka_bootstrap: str, minio_endpoint: S3Endpoint, minio_bucket: str, tmp_path: Path
) -> None:
    """Files larger than ``s3.part.size`` stream as multipart uploads; SIGKILL at the
    ``mid_multipart_upload`` failpoint leaves one behind on MinIO (parts uploaded, never
    completed). The next owner's takeover aborts it, and the archive is exactly-once."""
    n = 1500  # 1500 x 10 KB: a 15 MB file, three 5 MiB parts
    topic = create_topic(kafka_bootstrap, 1, prefix="mpu")
    produce_n(
        kafka_bootstrap,
        topic,
        n,
        value=lambda i: json.dumps({"id": i, "pad": "x" * 10_000}).encode(),
        key=None,
    )
    cfg = sink_config(
        kafka_bootstrap,
        topic,
        s3_keys(minio_endpoint, minio_bucket),
        **{
            "flush.size": str(n),
            "rotate.schedule.interval.ms": "600000",
            "s3.part.size": str(5 * 1024 * 1024),
            # the killed member's place is taken at once, not after its session expired
            "consumer.group.instance.id": "multipart-test",
        },
    )
    storage = storage_of(cfg)
    staging = f"_s3sink/staging/{topic}/"
    crashed = SinkProcess(cfg, tmp_path, "crash", command="catchup", args=["--no-progress"])
    with crashed:
        crashed.start(env={"S3SINK_FAILPOINT": "mid_multipart_upload"})
        assert crashed.wait(120) == -9, crashed.tail()
    left = storage.list_pending_uploads(staging)
    assert left, "the killed upload left no multipart upload behind"
    code, out = run_command("catchup", cfg, tmp_path, "recover", args=["--no-progress"])
    assert code == 0, out
    assert re.search(r"aborted [1-9]\d* uploads", out), out
    check = check_archive(storage, topic, range(n), {0: n})
    assert not check.problems(), "\n".join(check.problems())
    info(f"multipart: {len(left)} upload(s) left by the kill, aborted by the next takeover")
    figures(uploads_left_by_the_kill=len(left), uploads_aborted=len(left))


def test_figures_go_to_a_json_report_and_the_terminal_summary(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The reporting the crash tests rely on: lines and named figures land in this test's JSON
    report, the outcome is added by the hook, and the summary prints it."""
    from tests import conftest
    from tests.rig import sinkproc

    monkeypatch.setenv("TEST_REPORTS_DIR", str(tmp_path))
    nodeid = request.node.nodeid
    assert sinkproc.current_test() == nodeid
    info("kills", 3, "p50", 0.5)
    figures(kills=3, recovery_p50_s=0.5, recovery_p99_s=float("nan"))
    path = sinkproc.report_path(nodeid)
    assert path.parent == tmp_path
    assert path.name == (
        "test_exactly_once_kill__test_figures_go_to_a_json_report_and_the_terminal_summary.json"
    )
    data = json.loads(path.read_text())
    assert data["test"] == nodeid
    assert data["lines"] == ["kills 3 p50 0.5"]
    assert data["figures"] == {"kills": 3, "recovery_p50_s": 0.5, "recovery_p99_s": None}

    report = pytest.TestReport(nodeid, ("x", 1, "t"), {}, "passed", None, "call")
    conftest.pytest_runtest_logreport(report)
    assert json.loads(path.read_text())["outcome"] == "passed"

    class Terminal:
        def __init__(self) -> None:
            self.config = request.config
            self.out: list[str] = []

        def write_sep(self, sep: str, title: str) -> None:
            self.out.append(f"{sep * 3} {title}")

        def write_line(self, line: str) -> None:
            self.out.append(line)

    terminal = Terminal()
    conftest.pytest_terminal_summary(terminal)  # type: ignore[arg-type]
    text = "\n".join(terminal.out)
    assert f"{nodeid} (passed) -> {path}" in text
    assert "    kills 3 p50 0.5" in text
    assert "    figures: kills=3, recovery_p50_s=0.5, recovery_p99_s=None" in text
    # a self-check, not a report for the session's summary
    sinkproc.written_reports.remove(path)
