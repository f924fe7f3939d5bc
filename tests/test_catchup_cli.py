"""``s3sink catchup`` as a user runs it: it stops at the end offsets seen at its start while
records keep arriving, and shows a progress bar only when its standard output is a terminal."""

from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import KafkaError, Message, Producer

from s3sink.progress import ProgressBar
from tests.rig.archive import check_exactly_once, markers
from tests.rig.kafka import create_topic, end_offsets, produce_n, unique_name
from tests.rig.sinkproc import (
    SinkProcess,
    archived_ids,
    run_command,
    storage_of,
    write_config,
)

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(
    r"^catch-up done: (\d+) records in (\d+) files, (\d+) commits, (\d+) partitions, "
    r"[\d.]+ s \([\d,]+ records/s\), (\d+) bad records$"
)
BAR = re.compile(r"\r\[[# ]{20}\] +\d+\.\d% offsets [\d,]+/[\d,]+")


def _config(bootstrap: str, topic: str, root: Path, **extra: str) -> dict[str, str]:
    raw = {
        "name": unique_name("catchup"),
        "topics": topic,
        "bootstrap.servers": bootstrap,
        "storage.url": root.as_uri(),
        "format.class": "json",
        "flush.size": "400",
        "http.listen": "none",
    }
    raw.update(extra)
    return raw


# -- the progress bar ------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_bar_redraws_in_place_at_most_twice_a_second() -> None:
    out, clock = io.StringIO(), _Clock()
    bar = ProgressBar(out, clock=clock)
    bar(0, 2000)
    bar(500, 2000)  # too soon: not drawn
    clock.now += 0.6
    bar(1000, 2000)
    assert out.getvalue() == (
        "\r[                    ]   0.0% offsets 0/2,000"
        "\r[##########          ]  50.0% offsets 1,000/2,000"
    )
    bar.close()  # ends the open line, once
    bar.close()
    assert out.getvalue().endswith("2,000\n")


def test_progress_bar_always_draws_the_end_and_ends_its_line() -> None:
    out, clock = io.StringIO(), _Clock()
    bar = ProgressBar(out, clock=clock)
    bar(10, 2000)
    bar(2000, 2000)  # final: drawn at once, line ended
    bar(2000, 2000)  # the same end again (a poll after the last round): not drawn twice
    bar.close()
    assert out.getvalue() == (
        "\r[                    ]   0.5% offsets 10/2,000"
        "\r[####################] 100.0% offsets 2,000/2,000\n"
    )


def _read_terminal(leader: int) -> bytes:
    out = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: every writer closed the terminal
            return out
        if not chunk:
            return out
        out += chunk


def test_bar_on_a_terminal_and_only_the_summary_on_a_pipe(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = create_topic(kafka_bootstrap, 2)
    produce_n(kafka_bootstrap, topic, 4000, value=lambda i: b'{"id":%d}' % i)
    env = {k: v for k, v in os.environ.items() if not k.startswith("S3SINK_")}
    env["PYTHONPATH"] = str(ROOT)

    def argv(run: str) -> list[str]:
        # small consume batches: the catch-up takes many loop turns, the bar is drawn
        config = _config(kafka_bootstrap, topic, tmp_path / run, **{"consume.batch.size": "100"})
        path = write_config(tmp_path / f"{run}.json", config)
        return [sys.executable, "-m", "s3sink", "catchup", "-c", str(path)]

    # standard output on a terminal, standard error to a file: the bar is on the terminal
    leader, follower = pty.openpty()
    with (tmp_path / "tty.err").open("w+b") as err:
        try:
            proc = subprocess.Popen(
                argv("tty"), stdin=subprocess.DEVNULL, stdout=follower, stderr=err, env=env
            )
            os.close(follower)
            terminal = _read_terminal(leader).decode()
            assert proc.wait(120) == 0, terminal
        finally:
            os.close(leader)
        err.seek(0)
        errors = err.read().decode()
    assert BAR.search(terminal), terminal
    assert re.search(r"offsets [\d,]+/4,000", terminal), terminal
    lines = [line for line in terminal.replace("\r\n", "\n").split("\n") if line]
    assert SUMMARY.match(lines[-1]), lines[-1]
    assert lines[-1].startswith("catch-up done: 4000 records")
    assert "% offsets" not in errors and "\r" not in errors, errors

    # standard output on a pipe, standard error on a terminal: no bar anywhere, and standard
    # output is the summary line alone
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            argv("pipe"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=follower,
            env=env,
        )
        os.close(follower)
        logs = _read_terminal(leader).decode()
        assert proc.stdout is not None
        stdout = proc.stdout.read().decode()
        proc.stdout.close()
        assert proc.wait(120) == 0, logs
    finally:
        os.close(leader)
    assert "% offsets" not in logs, logs
    assert stdout.count("\n") == 1 and stdout.endswith("\n"), stdout
    match = SUMMARY.match(stdout.rstrip("\n"))
    assert match, stdout
    assert match.group(1) == "4000"


# -- the end offsets seen at start -----------------------------------------------------------


def _padded(i: int) -> bytes:
    return b'{"id":%d,"pad":"%s"}' % (i, b"x" * 500)


class _Background(threading.Thread):
    """Produces ``{"id": i}`` round-robin over the partitions for as long as it runs, except
    while paused; remembers where each id landed."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, first: int) -> None:
        super().__init__(name=f"produce-{topic}", daemon=True)
        self.producer = Producer(
            {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5}
        )
        self.topic = topic
        self.partitions = partitions
        self.next_id = first
        self.landed: dict[tuple[int, int], int] = {}
        self.errors: list[str] = []
        self.failure: BaseException | None = None
        self.running = threading.Event()
        self.running.set()
        self.idle = threading.Event()  # paused, every record so far acknowledged
        self.done = threading.Event()
        self._lock = threading.Lock()

    def delivered(self) -> int:
        with self._lock:
            return len(self.landed)

    def _report(self, i: int) -> Callable[[KafkaError | None, Message], None]:
        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            partition, offset = msg.partition(), msg.offset()
            if err is not None or partition is None or offset is None:
                self.errors.append(f"id {i}: {err}")
                return
            with self._lock:
                self.landed[(partition, offset)] = i

        return on_delivery

    def run(self) -> None:
        try:
            while not self.done.is_set():
                if not self.running.is_set():
                    self.producer.flush(60)
                    self.idle.set()
                    self.running.wait(0.05)
                    continue
                self.idle.clear()
                i = self.next_id
                try:
                    self.producer.produce(
                        self.topic,
                        _padded(i),
                        partition=i % self.partitions,
                        on_delivery=self._report(i),
                    )
                except BufferError:
                    self.producer.poll(0.05)
                    continue
                self.next_id += 1
                self.producer.poll(0)
                if i % 50 == 0:
                    time.sleep(0.01)  # a steady stream, not a flood
            self.producer.flush(60)
        except BaseException as exc:
            self.failure = exc

    def pause(self, timeout: float = 60) -> None:
        self.running.clear()
        assert self.idle.wait(timeout), "the producer did not pause"

    def wait_delivered(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.delivered() < n:
            assert time.monotonic() < deadline, f"only {self.delivered()} of {n} delivered"
            assert self.failure is None and not self.errors, (self.failure, self.errors)
            time.sleep(0.02)

    def stop(self) -> None:
        self.done.set()
        self.running.set()
        self.join(90)
        assert not self.is_alive(), "the producer did not stop"
        assert self.failure is None and not self.errors, (self.failure, self.errors[:3])


def test_catchup_stops_at_the_end_offsets_seen_at_its_start(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Records keep arriving before, during and after the catch-up. The producer is held only
    from the launch until the catch-up has read its end offsets (its "assigned ... ready" log
    line), so those end offsets are known exactly; the catch-up is then stopped (SIGSTOP) while
    more records arrive, and runs on with the producer going until it exits."""
    partitions = 3
    topic = create_topic(kafka_bootstrap, partitions)
    before = produce_n(
        kafka_bootstrap,
        topic,
        3000,
        value=_padded,
        partition=lambda i: i % partitions,
    )
    background = _Background(kafka_bootstrap, topic, partitions, first=1_000_000)
    background.start()
    try:
        background.wait_delivered(300)
        background.pause()
        at_start = end_offsets(kafka_bootstrap, topic)
        # a small prefetch: when the catch-up is stopped, it holds only the first records of
        # a backlog of megabytes, and the rest is fetched once records past it have arrived
        config = _config(
            kafka_bootstrap,
            topic,
            tmp_path / "out",
            **{
                "log.format": "json",
                "consumer.fetch.max.bytes": "65536",
                "consumer.message.max.bytes": "65536",
                "consumer.max.partition.fetch.bytes": "32768",
                "consumer.queued.max.messages.kbytes": "64",
            },
        )
        with SinkProcess(
            config, tmp_path, "catchup", command="catchup", args=["--no-progress"]
        ) as proc:
            proc.start()
            proc.pause_on(r"assigned \d+ partition\(s\), ready", 60)  # SIGSTOP
            stopped_at = background.delivered()
            background.running.set()
            # records past the start's end offsets, on every partition, before it goes on
            background.wait_delivered(stopped_at + 30 * partitions)
            proc.resume()
            assert proc.wait(120) == 0, proc.tail()
            during = background.delivered() - stopped_at
            output = proc.lines(current=True)
    finally:
        background.stop()

    ends_after = end_offsets(kafka_bootstrap, topic)
    assert all(ends_after[p] > at_start[p] for p in range(partitions)), (at_start, ends_after)
    storage = storage_of(config)
    log_ends = {}
    for p in range(partitions):
        log = markers(storage, topic, p)
        assert log, f"partition {p}: no commit log"
        log_ends[p] = log[-1].end
    assert log_ends == at_start, f"the logs end at {log_ends}, the start's end offsets {at_start}"

    summaries = [line for line in output if line.startswith("catch-up done")]
    assert len(summaries) == 1, output[-5:]
    match = SUMMARY.match(summaries[0])
    assert match, summaries[0]
    assert int(match.group(1)) == sum(at_start.values())
    assert int(match.group(4)) == partitions
    landed = {**{(p, o): i for (p, o), i in before.positions().items()}, **background.landed}
    expected = [str(i) for (p, o), i in landed.items() if o < at_start[p]]
    assert len(expected) == sum(at_start.values())
    result = check_exactly_once(expected, [str(i) for i in archived_ids(storage, "topics", topic)])
    assert result.ok, result
    assert during >= 30 * partitions


def test_catchup_with_tasks_ends_on_a_topic_written_in_transactions(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = create_topic(kafka_bootstrap, 2)
    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "transactional.id": unique_name("txn")}
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(200):
        producer.produce(topic, b'{"id":%d}' % i, partition=i % 2)
    producer.commit_transaction(30)
    config = _config(kafka_bootstrap, topic, tmp_path / "out", **{"log.format": "json"})
    code, out = run_command(
        "catchup", config, tmp_path, "tasks", args=["--no-progress", "--tasks", "2"]
    )
    assert code == 0, out[-2000:]
    summary = [line for line in out.splitlines() if SUMMARY.match(line)]
    assert summary and summary[-1].startswith("catch-up done: 200 records"), out[-2000:]
    archived = [str(i) for i in archived_ids(storage_of(config), "topics", topic)]
    result = check_exactly_once([str(i) for i in range(200)], archived)
    assert result.ok, result
