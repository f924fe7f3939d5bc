"""The zombie test: an instance paused past its session timeout is fenced, and exactly-once holds.

Two ``s3sink run`` processes in one consumer group (session timeout 6 s, heartbeat 1 s) share
the partitions of a topic that a producer keeps writing to. Instance A is SIGSTOPped; once the
group expelled it, B takes A's partitions over (fence markers with a higher epoch) and commits
on them. Then A is SIGCONTed: it wakes up with files sealed or due for rotation, and its commit
attempts find their marker slots taken: A logs that it was fenced, counts it in
``s3sink_fenced_total``, and none of its markers lands after B's fence. After a graceful stop
of both and a final ``catchup``, every produced record is in the final files exactly once,
``verify`` is clean and nothing is left in staging.

Run on MinIO (atomic conditional writes over HTTP) and on the filesystem backend.
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import pytest

from s3sink.local import S3Endpoint
from s3sink.local.process import free_port
from tests.rig.kafka import create_topic, end_offsets
from tests.rig.sinkproc import (
    IdProducer,
    SinkProcess,
    all_markers,
    check_archive,
    info,
    run_command,
    s3_keys,
    sink_config,
    storage_of,
)

PARTITIONS = 4
RATE = 2000  # records/s while the test runs
SESSION_MS = 6000


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return str(r.read().decode())


def _metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(f"s3sink_{name}{{") or line.startswith(f"s3sink_{name} "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _took_over(proc: SinkProcess, topic: str, *, after: float = 0.0) -> dict[int, int]:
    """partition -> epoch of the latest takeover logged by ``proc`` after ``after``."""
    rx = re.compile(rf"{re.escape(topic)}-(\d+): took over at seq \d+ epoch (\d+)")
    out: dict[int, int] = {}
    for rec in proc.records():
        m = rx.search(rec.msg)
        if m and rec.ts >= after:
            out[int(m.group(1))] = int(m.group(2))
    return out


def _zombie(bootstrap: str, storage_keys: Mapping[str, str], tmp_path: Path) -> None:
    started = time.monotonic()
    topic = create_topic(bootstrap, PARTITIONS, prefix="zombie")
    n = RATE * 40  # more than the test needs: the producer is stopped at the end
    producer = IdProducer(bootstrap, topic, n, PARTITIONS, rate=RATE)
    port_a = free_port()
    base = sink_config(
        bootstrap,
        topic,
        storage_keys,
        **{
            "group.id": f"zombie-{topic}",
            "consumer.session.timeout.ms": str(SESSION_MS),
            "consumer.heartbeat.interval.ms": "1000",
            "rotate.schedule.interval.ms": "1000",
        },
    )
    a = SinkProcess({**base, "http.listen": f"127.0.0.1:{port_a}"}, tmp_path, "a")
    b = SinkProcess(base, tmp_path, "b")
    with a, b:
        producer.start()
        a.start()
        a.wait_for_log(r"assigned \d+ partition", 60)
        b.start()
        # both own partitions and have committed on them
        deadline = time.monotonic() + 60
        while not (_took_over(a, topic) and _took_over(b, topic)):
            assert time.monotonic() < deadline, f"no split of the partitions:\n{b.tail()}"
            time.sleep(0.2)
        time.sleep(2.5)
        owned_by_a = _took_over(a, topic)
        # A is the owner of the partitions it took over last (B may have taken some from it)
        owned_by_a = {p: e for p, e in owned_by_a.items() if e > _took_over(b, topic).get(p, 0)}
        assert owned_by_a, "A owns no partition"
        a.wait_for_log(r"committed seq", 30)

        # Pause A while a commit of it is in flight: sealed, its marker not written yet. (A
        # zombie paused while idle just finds its partitions lost when it wakes up.)
        storage = storage_of(base)
        rolling = re.compile(
            rf"{re.escape(topic)}-({'|'.join(map(str, owned_by_a))}): rolling .* offsets up to "
            r"(\d+)"
        )
        for _ in range(30):
            line = a.pause_on(rolling.pattern, 20)
            m = rolling.search(line)
            assert m is not None
            in_flight, end = int(m.group(1)), int(m.group(2)) + 1
            if all(mk.end != end for mk in all_markers(storage, topic, in_flight)[-3:]):
                break
            a.resume()  # the marker made it before the pause; try the next commit
        else:
            pytest.fail("could not pause A with a commit in flight")
        paused_at = time.time()
        info(
            f"zombie: A (pid {a.pid}) paused owning partitions {sorted(owned_by_a)}, its "
            f"commit of {topic}-{in_flight} up to offset {end} in flight"
        )
        # B takes A's partitions over after A's session expired, and commits on them
        deadline = time.monotonic() + SESSION_MS / 1000 + 40
        while True:
            taken = _took_over(b, topic, after=paused_at)
            if set(owned_by_a) <= set(taken):
                break
            assert time.monotonic() < deadline, (
                f"B did not take over A's partitions (B's threads wait in: {b.blocked_in()}):\n"
                f"{b.tail()}"
            )
            time.sleep(0.2)
        took_over_after = time.time() - paused_at
        taken_over_at = time.time()
        for p in owned_by_a:
            b.wait_for_log(rf"{re.escape(topic)}-{p}: committed seq", 30, after=taken_over_at)
        assert all(taken[p] > owned_by_a[p] for p in owned_by_a), (taken, owned_by_a)

        resumed_at = time.time()
        a.resume()
        # the zombie's attempts run into B's fences
        a.wait_for_log(r"fenced", 30, after=resumed_at)
        fenced_metric = _metric(_metrics(port_a), "fenced_total")
        time.sleep(3)  # let the group settle (A rejoins and gets partitions back)
        assert producer.is_alive(), "the producer ran out of records before the end"

        stop_at = time.time()
        assert b.terminate(90) == 0, b.tail()
        assert a.terminate(90) == 0, a.tail()
        # nothing left in staging by the zombie, the survivor or the takeovers in between
        leftover = [i.key for i in storage.list(f"_s3sink/staging/{topic}/")]
        assert leftover == [], f"staging left after a graceful stop: {leftover[:5]}"

    producer.stop()
    producer.join_checked(60)
    produced = producer.produced
    code, out = run_command("catchup", base, tmp_path, "catchup", args=["--no-progress"])
    assert code == 0, out
    code, report = run_command("verify", base, tmp_path, "verify")
    assert code == 0, report
    check = check_archive(storage, topic, producer.ids(), end_offsets(bootstrap, topic))
    assert not check.problems(), "\n".join(check.problems())

    # the fence markers: B's takeovers carry a higher epoch than A's, and no marker of A's
    # writer lands after a fence of another writer with a higher epoch
    fenced_lines = [r.msg for r in a.records() if "fenced" in r.msg]
    for p, markers in check.markers.items():
        epochs = [m.epoch for m in markers]
        assert epochs == sorted(epochs), f"partition {p}: epochs go back: {epochs}"
    a_writer = f"-{a.pid}"
    for p in owned_by_a:
        ms = check.markers[p]
        b_fence = next(
            m
            for m in ms
            if m.kind == "fence" and m.epoch > owned_by_a[p] and not m.writer.endswith(a_writer)
        )
        late = [
            m
            for m in ms
            if m.seq > b_fence.seq and m.writer.endswith(a_writer) and m.epoch < b_fence.epoch
        ]
        assert not late, f"partition {p}: the zombie's markers landed after the fence: {late}"
    info(
        f"zombie: B took over after {took_over_after:.1f}s; A fenced {len(fenced_lines)} "
        f"time(s) (s3sink_fenced_total {fenced_metric:.0f}), e.g. {fenced_lines[0]!r}"
    )
    info(
        f"zombie: {produced} records, {check.commits} commits, {check.fences} fence markers, "
        f"duplicates {check.duplicates}, losses {check.missing}; wall "
        f"{time.monotonic() - started:.0f}s (instances stopped {stop_at - paused_at:.0f}s after "
        "the pause)"
    )
    assert fenced_metric >= 1


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_zombie_on_minio(
    kafka_bootstrap: str, minio_endpoint: S3Endpoint, minio_bucket: str, tmp_path: Path
) -> None:
    _zombie(kafka_bootstrap, s3_keys(minio_endpoint, minio_bucket), tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_zombie_on_the_filesystem(kafka_bootstrap: str, tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    _zombie(kafka_bootstrap, {"storage.url": root.as_uri()}, tmp_path)
