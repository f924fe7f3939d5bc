"""``tasks.max=N``: ``run`` and ``catchup`` as N worker processes in one consumer group.

The sink runs as a real subprocess (``python -m s3sink``) against the rig's Kafka broker and
S3 endpoint; the archive is checked for exactly-once with :func:`check_archive`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from s3sink.cli import main
from s3sink.config import parse
from s3sink.errors import ConfigError
from s3sink.local import S3Endpoint
from s3sink.tasks import Totals, _error_of, exit_code, log_ends, short_of
from tests.rig.kafka import create_topic, end_offsets
from tests.rig.sinkproc import (
    IdProducer,
    SinkProcess,
    check_archive,
    run_command,
    s3_keys,
    sink_config,
    storage_of,
    write_config,
)

PARTITIONS = 6
BASE = {"topics": "t", "s3.bucket.name": "b", "bootstrap.servers": "127.0.0.1:1"}


# -- config and CLI ---------------------------------------------------------------------------


def test_tasks_max_is_validated() -> None:
    assert parse(BASE, environ={}).tasks_max == 1
    cfg = parse({**BASE, "tasks.max": "3"}, environ={})
    assert cfg.tasks_max == 3
    assert any(n.startswith("tasks.max=3: run and catchup start 3") for n in cfg.notes)
    with pytest.raises(ConfigError, match=r"tasks\.max: must be at least 1"):
        parse({**BASE, "tasks.max": "0"}, environ={})
    with pytest.raises(ConfigError, match=r"tasks\.max: expected a whole number, got 'two'"):
        parse({**BASE, "tasks.max": "two"}, environ={})
    with pytest.raises(ConfigError, match=r"tasks\.max: each of the 4 tasks gets"):
        parse({**BASE, "tasks.max": "4", "buffer.memory.bytes": "2MiB"}, environ={})
    assert parse({**BASE, "tasks.max": "2"}, environ={"S3SINK_TASKS_MAX": "5"}).tasks_max == 5


def test_tasks_flag_overrides_and_is_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path / "c.json", {**BASE, "tasks.max": "2"})
    assert main(["run", "-c", str(cfg), "--tasks", "0"]) == 2
    assert "tasks.max: must be at least 1" in capsys.readouterr().err
    assert main(["catchup", "-c", str(cfg), "--tasks", "-1", "--no-progress"]) == 2
    assert "tasks.max: must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "-c", str(cfg), "--tasks", "x"])
    assert "invalid int value" in capsys.readouterr().err


def test_summary_lines_add_up_and_errors_are_found() -> None:
    t = Totals()
    assert t.add(
        "catch-up done: 10 records in 2 files, 3 commits, 4 partitions, 1.5 s (7 records/s), "
        "1 bad records\n"
    )
    assert not t.add("something else")
    assert (t.records, t.files, t.commits, t.bad_records) == (10, 2, 3, 1)
    t.spans[:] = [(100.0, 5.0), (101.0, 3.0)]  # (arrived, the worker's seconds)
    assert t.seconds_since(0, 42.0) == 6.0  # from 95.0 to 101.0
    assert t.seconds_since(2, 42.0) == 42.0
    assert _error_of('{"level": "error", "msg": "boom"}') == "boom"
    assert _error_of('{"level": "info", "msg": "fine"}') is None
    assert _error_of("s3sink: error: invalid configuration") == "invalid configuration"
    assert exit_code(-9) == 137 and exit_code(2) == 2


def test_short_partitions_are_those_whose_log_ends_before_the_target() -> None:
    targets = {("t", 0): 10, ("t", 1): 5, ("t", 2): 0, ("t", 3): 7}
    ends: dict[tuple[str, int], int | None] = {("t", 0): 10, ("t", 1): 4, ("t", 2): None}
    # an empty partition needs no log; a partition without a log is short from offset 0
    assert short_of(targets, ends) == {("t", 1): 4, ("t", 3): 0}
    assert short_of(targets, {**ends, ("t", 1): 6, ("t", 3): 7}) == {}


# -- against Kafka and S3 ---------------------------------------------------------------------


def _config(
    bootstrap: str, topic: str, endpoint: S3Endpoint, bucket: str, **extra: str
) -> dict[str, str]:
    return sink_config(
        bootstrap,
        topic,
        s3_keys(endpoint, bucket),
        **{"tasks.max": "2", "consumer.session.timeout.ms": "10000", **extra},
    )


def _task_fields(text: str) -> set[int]:
    out = set()
    for line in text.splitlines():
        if line.startswith("{") and '"task"' in line:
            out.add(json.loads(line)["task"])
    return out


def _both_assigned(proc: SinkProcess, timeout: float = 60.0) -> None:
    """Wait until each task has partitions (a rebalance spread them over the group)."""
    seen: set[int] = set()

    def assigned(line: str) -> bool:
        if line.startswith("{") and "partition(s), ready" in line:
            d = json.loads(line)
            if not d["msg"].startswith("assigned 0 "):
                seen.add(d["task"])
        return seen == {0, 1}

    proc.wait_for_log(assigned, timeout)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()


def _worker_pids(proc: SinkProcess, timeout: float = 30.0) -> list[int]:
    line = proc.wait_for_log(r"started 2 task\(s\) of", timeout)
    m = re.search(r"pids (\d+), (\d+)", line)
    assert m is not None, line
    return [int(m.group(1)), int(m.group(2))]


@pytest.mark.timeout(120)
def test_catchup_with_two_tasks_archives_every_record_once(
    kafka_bootstrap: str, s3_endpoint: S3Endpoint, s3_bucket: str, tmp_path: Path
) -> None:
    n = 30_000
    topic = create_topic(kafka_bootstrap, PARTITIONS, prefix="tasks-catchup")
    producer = IdProducer(kafka_bootstrap, topic, n, PARTITIONS)
    producer.start()
    producer.join_checked(60)
    cfg = _config(kafka_bootstrap, topic, s3_endpoint, s3_bucket)
    started = time.monotonic()
    code, out = run_command("catchup", cfg, tmp_path, "catchup", args=["--no-progress"])
    took = time.monotonic() - started
    assert code == 0, out
    summary = [line for line in out.splitlines() if line.startswith("catch-up done")]
    assert len(summary) == 1, out
    assert summary[0].startswith(f"catch-up done: {n} records in "), summary
    assert f", {PARTITIONS} partitions, " in summary[0]
    assert _task_fields(out) == {0, 1}, "every worker's log lines carry its task number"
    check = check_archive(storage_of(cfg), topic, range(n), end_offsets(kafka_bootstrap, topic))
    assert not check.problems(), "\n".join(check.problems())
    print(f"[figures] catch-up of {n} records with 2 tasks: {took:.1f}s; {summary[0]}")


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_run_with_two_tasks_stops_on_sigterm_and_a_killed_task_fails_the_job(
    kafka_bootstrap: str, s3_endpoint: S3Endpoint, s3_bucket: str, tmp_path: Path
) -> None:
    """``run`` with 2 tasks: SIGTERM commits what is buffered and exits 0; a task SIGKILLed
    makes the parent stop the other one and exit non-zero; a restart completes the archive
    exactly once."""
    n = 20_000
    topic = create_topic(kafka_bootstrap, PARTITIONS, prefix="tasks-run")
    producer = IdProducer(kafka_bootstrap, topic, n, PARTITIONS, rate=4000)
    producer.start()
    # a large flush.size: records stay buffered until the schedule, or the stop, commits them
    cfg = _config(
        kafka_bootstrap,
        topic,
        s3_endpoint,
        s3_bucket,
        **{"flush.size": "100000", "rotate.schedule.interval.ms": "3000"},
    )
    port = _free_port()
    proc = SinkProcess(cfg, tmp_path, "run", args=["--set", f"http.listen=127.0.0.1:{port}"])
    with proc:
        proc.start()
        _worker_pids(proc)
        t0 = time.monotonic()
        _both_assigned(proc)
        print(f"[figures] both tasks assigned after {time.monotonic() - t0:.1f}s")
        # only the parent listens; health from its tasks' liveness
        assert _get(port, "/healthz") == (200, "ok\n")
        assert _get(port, "/readyz") == (200, "ready\n")
        metrics = _get(port, "/metrics")[1]
        assert "s3sink_tasks 2" in metrics
        assert 's3sink_task_up{task="0"} 1' in metrics and 's3sink_task_up{task="1"} 1' in metrics
        proc.wait_for_log(r"committed seq", 60, count=4)
        time.sleep(1.0)  # some records buffered
        assert proc.terminate(60) == 0, proc.tail()
        text = proc.text()
        assert len(re.findall(r"committing what is buffered", text)) == 2, proc.tail()
        assert "stopped: all 2 tasks exited 0" in text
        assert _task_fields(text) == {0, 1}

        # a stop signal right at the start (the workers may not have their handlers yet)
        proc.start()
        _worker_pids(proc)
        assert proc.terminate(60) == 0, proc.tail()

        # a second signal: the tasks stop at once (nothing uncommitted becomes visible)
        proc.start()
        _both_assigned(proc)
        proc.signal(signal.SIGTERM)
        time.sleep(0.05)
        proc.signal(signal.SIGTERM)
        assert proc.wait(30) == 0, proc.tail()
        assert "SIGTERM again: forwarded to the tasks" in proc.text(current=True)

        # a task SIGKILLed while records flow
        producer.join_checked(60)
        producer = IdProducer(kafka_bootstrap, topic, n, PARTITIONS, first=n, rate=4000)
        producer.start()
        n *= 2
        proc.start()
        pids = _worker_pids(proc)
        _both_assigned(proc)
        proc.wait_for_log(r"committed seq", 60)
        os.kill(pids[1], signal.SIGKILL)
        code = proc.wait(60)
        assert code == 128 + signal.SIGKILL, proc.tail()
        assert re.search(r"task 1 \(pid \d+\) failed: killed by SIGKILL", proc.text(current=True))
        assert re.search(r"stopped: task 1 killed by SIGKILL", proc.text(current=True))
    producer.join_checked(60)
    code, out = run_command("catchup", cfg, tmp_path, "catchup", args=["--no-progress"])
    assert code == 0, out
    ends = end_offsets(kafka_bootstrap, topic)
    assert sum(ends.values()) == n
    storage = storage_of(cfg)
    assert all(e == ends[p] for (_, p), e in log_ends(storage, [(topic, p) for p in ends]).items())
    check = check_archive(storage, topic, range(n), ends)
    assert not check.problems(), "\n".join(check.problems())


@pytest.mark.parametrize(
    ("fmt", "expected"), [("text", "[task 3]: hello w"), ("json", '"task": 3}')]
)
def test_a_workers_log_lines_carry_its_task(
    fmt: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging

    from s3sink.logs import setup_logging
    from s3sink.tasks import tag_logs

    root = logging.getLogger()
    saved = (root.handlers[:], root.level, sys.excepthook, threading.excepthook)
    try:
        setup_logging(fmt, "INFO")
        tag_logs(3)
        logging.getLogger("s3sink.test").info("hello %s", "w")
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        sys.excepthook, threading.excepthook = saved[2], saved[3]
    assert expected in capsys.readouterr().err


def test_catchup_work_is_dealt_by_records_left() -> None:
    from s3sink.commands import parse_assignment
    from s3sink.tasks import split_work

    targets = {("a", 0): 100, ("a", 1): 100, ("a", 2): 100, ("b", 0): 300, ("b", 1): 10}
    short = {("a", 0): 0, ("a", 1): 50, ("a", 2): 0, ("b", 0): 0, ("b", 1): 0}
    work = split_work(short, targets, 2)
    assert work == [[("b", 0)], [("a", 0), ("a", 1), ("a", 2), ("b", 1)]]
    assert sorted(k for w in work for k in w) == sorted(short)
    assert split_work({("a", 0): 0}, targets, 4) == [[("a", 0)]]
    assert parse_assignment("a.b-c:0,x_y:12") == [("a.b-c", 0), ("x_y", 12)]
    with pytest.raises(argparse.ArgumentTypeError, match="topic:partition"):
        parse_assignment("a:0,b")
