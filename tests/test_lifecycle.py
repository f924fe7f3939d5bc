"""Lifecycle of ``s3sink run`` as a real process: SIGTERM/SIGINT commit what is buffered and exit
0; a second signal stops at once and safely; ``shutdown.timeout.ms`` bounds a graceful stop;
``/readyz`` answers ready only once the partitions are taken over.

S3 is moto behind a fault proxy whose queue holds a *gate*: while the gate is closed every S3
request waits at the proxy, so a stop can be caught with its commits in flight.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from s3sink.config import parse
from s3sink.sink import Sink, storage_from_config
from s3sink.storage.base import ObjectInfo, Storage, Upload
from s3sink.verify import verify
from tests.rig.faultproxy import FaultProxy, ProxiedRequest
from tests.rig.kafka import create_topic, produce_n
from tests.rig.observe import get, listen_address, scrape, wait_for
from tests.rig.s3 import S3Endpoint
from tests.rig.sinkproc import (
    SinkProcess,
    all_markers,
    check_archive,
    run_command,
    s3_keys,
    sink_config,
    storage_of,
)

PARTITIONS = 3
N = 3000


class S3Gate:
    """Holds every request at the proxy while closed (the S3 endpoint seems to hang)."""

    def __init__(self, proxy: FaultProxy) -> None:
        self._open = threading.Event()
        self._open.set()
        self.held = 0
        proxy.inject("500", self._hold, times=10**9)  # never injects: only waits

    def _hold(self, request: ProxiedRequest) -> bool:
        if not self._open.is_set():
            self.held += 1
            self._open.wait()
        return False

    def close(self) -> None:
        self._open.clear()

    def open(self) -> None:
        self._open.set()


@pytest.fixture
def gated(s3_endpoint: S3Endpoint) -> Iterator[tuple[FaultProxy, S3Gate]]:
    with FaultProxy(s3_endpoint.url) as proxy:
        gate = S3Gate(proxy)
        try:
            yield proxy, gate
        finally:
            gate.open()


def _produce(bootstrap: str, topic: str) -> dict[int, int]:
    delivered = produce_n(
        bootstrap,
        topic,
        N,
        value=lambda i: json.dumps({"id": i, "pad": "x" * 40}).encode(),
        partition=lambda i: i % PARTITIONS,
    )
    return delivered.end_offsets()


def _buffering_config(
    bootstrap: str, topic: str, storage: dict[str, str], listen: str, **extra: str
) -> dict[str, str]:
    """Nothing rolls before the stop: every record is buffered until then."""
    return sink_config(
        bootstrap,
        topic,
        storage,
        **{
            "flush.size": "1000000",
            "rotate.schedule.interval.ms": "-1",
            "http.listen": listen,
            "consumer.statistics.interval.ms": "500",
            **extra,
        },
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_commits_what_is_buffered_and_exits_0(
    sig: signal.Signals,
    kafka_bootstrap: str,
    s3_endpoint: S3Endpoint,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    topic = create_topic(kafka_bootstrap, PARTITIONS)
    ends = _produce(kafka_bootstrap, topic)
    listen = listen_address()
    config = _buffering_config(kafka_bootstrap, topic, s3_keys(s3_endpoint, s3_bucket), listen)
    with SinkProcess(config, tmp_path, "run") as proc:
        proc.start()
        # /readyz: 503 until every partition is taken over, then 200 (never the other way)
        seen: list[int] = []

        def ready() -> int:
            status = get(listen, "/readyz", timeout=2)[0]
            seen.append(status)
            return status

        wait_for("ready", ready, lambda s: s == 200, timeout=60)
        took_over = proc.count(r"took over at seq", current=True)
        assert took_over == PARTITIONS, proc.tail()
        assert 200 not in seen[:-1], seen
        assert get(listen, "/healthz") == (200, "ok\n")
        assert _listening_ports(proc.pid) == {int(listen.rsplit(":", 1)[1])}

        m = wait_for(
            "every record consumed",
            lambda: scrape(listen),
            lambda s: s.value("records_consumed_total") == N,
        )
        assert m.value("records_committed_total") == 0, proc.tail()  # all buffered
        consumed = {
            p: int(m.value("records_consumed_total", topic=topic, partition=str(p)))
            for p in range(PARTITIONS)
        }
        started = time.monotonic()
        proc.signal(sig)
        assert proc.wait(60) == 0, proc.tail()
        stop_s = time.monotonic() - started
        log = proc.text()
    tail = log[-4000:]
    assert consumed == ends, tail  # the records sent are the records the sink read
    storage = storage_of(config)
    check = check_archive(storage, topic, range(N), ends)
    assert check.problems() == [], (check.problems(), tail)
    for p, ms in check.markers.items():
        assert ms[-1].kind == "commit", tail
        assert ms[-1].end == consumed[p], tail  # the log ends where consumption ended
    assert "shutdown" in log
    assert verify(storage, parse(dict(config), environ={})).ok
    assert stop_s < 30, tail


def test_second_signal_stops_at_once_and_nothing_uncommitted_is_visible(
    kafka_bootstrap: str,
    s3_endpoint: S3Endpoint,
    s3_bucket: str,
    gated: tuple[FaultProxy, S3Gate],
    tmp_path: Path,
) -> None:
    proxy, gate = gated
    topic = create_topic(kafka_bootstrap, PARTITIONS)
    ends = _produce(kafka_bootstrap, topic)
    listen = listen_address()
    config = _buffering_config(
        kafka_bootstrap,
        topic,
        s3_keys(s3_endpoint, s3_bucket, url=proxy.url),
        listen,
        **{"shutdown.timeout.ms": "600000"},
    )
    with SinkProcess(config, tmp_path, "run") as proc:
        proc.start()
        wait_for(
            "every record consumed",
            lambda: scrape(listen),
            lambda s: s.value("records_consumed_total") == N,
        )
        gate.close()  # S3 hangs: the graceful stop cannot finish
        proc.signal(signal.SIGTERM)
        proc.wait_for_log("committing what is buffered", 30)
        wait_for("the stop reaches S3", lambda: gate.held, lambda n: n > 0, timeout=30)
        assert get(listen, "/readyz")[0] == 503  # stopping: not ready any more
        assert proc.running()
        time.sleep(0.5)
        assert proc.running(), "a graceful stop must wait for its commits"
        second = time.monotonic()
        proc.signal(signal.SIGTERM)
        code = proc.wait(20)
        quit_s = time.monotonic() - second
        log = proc.text()
    assert code == 0, log[-3000:]
    assert quit_s < 8, f"second signal took {quit_s:.1f} s"
    assert "stopping at once" in log
    gate.open()
    storage = storage_of(config)
    # nothing uncommitted is visible: every file under topics.dir is referenced by a marker
    referenced = {
        f.key for p in range(PARTITIONS) for m in all_markers(storage, topic, p) for f in m.files
    }
    listed = {i.key for i in storage.list(f"topics/{topic}/")}
    assert listed <= referenced, sorted(listed - referenced)[:5]
    # the next run cleans up and archives everything exactly once; verify is clean
    direct = {**config, **s3_keys(s3_endpoint, s3_bucket), "http.listen": "none"}
    code, out = run_command("catchup", direct, tmp_path, "catchup", timeout=120)
    assert code == 0, out[-3000:]
    check = check_archive(storage_of(direct), topic, range(N), ends)
    assert check.problems() == [], check.problems()
    code, out = run_command("verify", direct, tmp_path, "verify", timeout=120)
    assert code == 0, out[-3000:]


def test_shutdown_timeout_bounds_a_graceful_stop(
    kafka_bootstrap: str,
    s3_endpoint: S3Endpoint,
    s3_bucket: str,
    gated: tuple[FaultProxy, S3Gate],
    tmp_path: Path,
) -> None:
    proxy, gate = gated
    topic = create_topic(kafka_bootstrap, PARTITIONS)
    ends = _produce(kafka_bootstrap, topic)
    listen = listen_address()
    timeout_ms = 3000
    config = _buffering_config(
        kafka_bootstrap,
        topic,
        s3_keys(s3_endpoint, s3_bucket, url=proxy.url),
        listen,
        **{"shutdown.timeout.ms": str(timeout_ms)},
    )
    with SinkProcess(config, tmp_path, "run") as proc:
        proc.start()
        wait_for(
            "every record consumed",
            lambda: scrape(listen),
            lambda s: s.value("records_consumed_total") == N,
        )
        gate.close()
        started = time.monotonic()
        proc.signal(signal.SIGTERM)
        code = proc.wait(60)
        stop_s = time.monotonic() - started
        log = proc.text()
    assert code == 0, log[-3000:]
    assert timeout_ms / 1000 <= stop_s < timeout_ms / 1000 + 6, f"stop took {stop_s:.1f} s"
    assert "after shutdown.timeout.ms" in log
    gate.open()
    direct = {**config, **s3_keys(s3_endpoint, s3_bucket), "http.listen": "none"}
    code, out = run_command("catchup", direct, tmp_path, "catchup", timeout=120)
    assert code == 0, out[-3000:]
    check = check_archive(storage_of(direct), topic, range(N), ends)
    assert check.problems() == [], check.problems()


class _SlowUploads:
    """A storage whose uploads take ``delay`` seconds to complete."""

    def __init__(self, inner: Storage, delay: float) -> None:
        self._inner = inner
        self._delay = delay

    def open_upload(self, key: str) -> Upload:
        inner = self._inner.open_upload(key)
        delay = self._delay

        class Slow:
            def __getattr__(self, name: str) -> Any:
                return getattr(inner, name)

            def complete(self) -> ObjectInfo:
                time.sleep(delay)
                return inner.complete()

        return cast("Upload", Slow())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_the_end_of_a_catchup_is_not_cut_by_shutdown_timeout(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """shutdown.timeout.ms bounds a *stop*; a catch-up that ends waits for its last commits."""
    topic = create_topic(kafka_bootstrap, PARTITIONS)
    ends = _produce(kafka_bootstrap, topic)
    config = sink_config(
        kafka_bootstrap,
        topic,
        {"storage.url": tmp_path.as_uri()},
        **{"flush.size": "1000000", "shutdown.timeout.ms": "500"},
    )
    cfg = parse(config, environ={})
    slow = cast("Storage", _SlowUploads(storage_from_config(cfg), delay=1.5))
    sink = Sink(cfg, storage=slow)
    summary = sink.run(catchup=True)
    assert summary.records == N
    assert sink.clean
    check = check_archive(storage_of(config), topic, range(N), ends)
    assert check.problems() == [], check.problems()


def test_health_and_readiness_endpoints(tmp_path: Path) -> None:
    """/healthz turns 503 when the loop has not turned for STUCK_AFTER_S; /readyz is 503
    before the takeover, 200 after, 503 again from the stop on; unknown paths are 404."""
    from s3sink.clock import ManualClock
    from s3sink.http import STUCK_AFTER_S, start_http
    from s3sink.storage.memory import MemoryStorage
    from tests.rig.observe import get, listen_address, scrape

    listen = listen_address()
    cfg = parse(
        {"topics": "t", "bootstrap.servers": "127.0.0.1:1", "storage.url": tmp_path.as_uri()},
        environ={},
    )
    clock = ManualClock()
    sink = Sink(cfg, storage=cast("Storage", MemoryStorage()), clock=clock)
    server = start_http(listen, sink)
    assert server is not None
    try:
        assert get(listen, "/healthz") == (200, "ok\n")
        assert get(listen, "/readyz") == (503, "not ready\n")
        assert scrape(listen).value("ready") == 0
        sink.ready.set()  # what the assignment does once every takeover is done
        assert get(listen, "/readyz") == (200, "ready\n")
        assert scrape(listen).value("ready") == 1
        assert get(listen, "/metrics?name=x")[0] == 200
        assert get(listen, "/nope")[0] == 404
        clock.advance(int(STUCK_AFTER_S * 1000) + 1000)
        assert get(listen, "/healthz") == (503, "stuck\n")
        sink.stop()
        assert get(listen, "/readyz") == (503, "not ready\n")
        assert scrape(listen).value("ready") == 0
    finally:
        server.shutdown()
        sink.committer.shutdown()


# -- http.listen -----------------------------------------------------------------------------


def _listening_ports(pid: int) -> set[int]:
    """TCP ports the process ``pid`` listens on (its socket inodes in LISTEN state)."""
    inodes: set[str] = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports: set[int] = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_http_listen_defaults_to_all_interfaces_port_8080_and_none_binds_nothing(
    tmp_path: Path,
) -> None:
    from s3sink.http import start_http
    from s3sink.storage.memory import MemoryStorage

    base = {"topics": "t", "bootstrap.servers": "127.0.0.1:1", "storage.url": tmp_path.as_uri()}
    assert parse(base, environ={}).http_listen == "0.0.0.0:8080"
    cfg = parse({**base, "http.listen": "none"}, environ={})
    assert cfg.http_listen == "none"
    sink = Sink(cfg, storage=cast("Storage", MemoryStorage()))
    try:
        before = _listening_ports(os.getpid())
        # the check sees a listener when there is one ...
        listen = listen_address()
        server = start_http(listen, sink)
        assert server is not None
        port = int(listen.rsplit(":", 1)[1])
        assert _listening_ports(os.getpid()) - before == {port}
        assert get(listen, "/healthz")[0] == 200
        server.shutdown()
        server.server_close()
        assert _listening_ports(os.getpid()) == before
        # ... and none opens none
        assert start_http(cfg.http_listen, sink) is None
        assert _listening_ports(os.getpid()) == before
    finally:
        sink.committer.shutdown()


def test_run_with_http_listen_none_listens_on_nothing_and_archives(
    kafka_bootstrap: str, s3_endpoint: S3Endpoint, s3_bucket: str, tmp_path: Path
) -> None:
    topic = create_topic(kafka_bootstrap, PARTITIONS)
    ends = _produce(kafka_bootstrap, topic)
    config = sink_config(
        kafka_bootstrap, topic, s3_keys(s3_endpoint, s3_bucket), **{"http.listen": "none"}
    )
    with SinkProcess(config, tmp_path, "run") as proc:
        proc.start()
        proc.wait_for_log(r"took over at seq", 60, count=PARTITIONS)
        assert _listening_ports(proc.pid) == set(), proc.tail()
        storage = storage_of(config)
        wait_for(
            "every record committed",
            lambda: {
                p: max((m.end for m in all_markers(storage, topic, p)), default=0) for p in ends
            },
            lambda got: got == ends,
            timeout=60,
        )
        assert _listening_ports(proc.pid) == set(), proc.tail()
        assert proc.terminate(60) == 0, proc.tail()
        log = proc.text()
    assert "serving /metrics" not in log
    check = check_archive(storage, topic, range(N), ends)
    assert check.problems() == [], check.problems()
