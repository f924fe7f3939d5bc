"""Exactly-once under the other failures the design names: two consumer groups on one prefix,
rebalances while three instances start and stop (with the default cooperative-sticky
assignment, the eager ``range`` assignment and the KIP-848 ``group.protocol=consumer``), a
broker restart mid-run, and S3 faults (5% of requests answered 500/503, or executed and then
the connection reset).

Each scenario runs ``s3sink run`` subprocesses against a real broker and MinIO while a producer
writes records with unique ids, stops the instances gracefully, runs a final ``catchup`` and
checks: every produced record is in the final files exactly once (listing ``topics.dir`` as a
reader does), each partition's log is contiguous from offset 0 to the end, ``verify`` is clean
and nothing is left in staging.
"""

from __future__ import annotations

import contextlib
import re
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from s3sink.local import KafkaBroker, S3Endpoint
from tests.rig.faultproxy import FaultProxy
from tests.rig.kafka import create_topic, end_offsets
from tests.rig.sinkproc import (
    ArchiveCheck,
    IdProducer,
    SinkProcess,
    check_archive,
    info,
    run_command,
    s3_keys,
    sink_config,
    storage_of,
)

PARTITIONS = 6
RATE = 2000  # records/s


class Scenario:
    """A topic, a producer of unique ids and any number of sink instances on one storage."""

    def __init__(
        self,
        bootstrap: str,
        storage_keys: Mapping[str, str],
        tmp_path: Path,
        name: str,
        config: Mapping[str, str | None] | None = None,
    ) -> None:
        self.started = time.monotonic()
        self.bootstrap = bootstrap
        self.tmp_path = tmp_path
        self.name = name
        self.topic = create_topic(bootstrap, PARTITIONS, prefix=name)
        self.producer = IdProducer(bootstrap, self.topic, RATE * 120, PARTITIONS, rate=RATE)
        self.base = sink_config(
            bootstrap,
            self.topic,
            storage_keys,
            **{
                "group.id": f"{name}-{self.topic}",
                "consumer.session.timeout.ms": "6000",
                "consumer.heartbeat.interval.ms": "1000",
                "rotate.schedule.interval.ms": "1000",
            },
        )
        # ``config``: more settings for every instance; None removes a default one
        for key, value in (config or {}).items():
            if value is None:
                self.base.pop(key, None)
            else:
                self.base[key] = value
        self.procs: list[SinkProcess] = []

    def instance(self, label: str, **overrides: str) -> SinkProcess:
        proc = SinkProcess({**self.base, **overrides}, self.tmp_path, label)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for p in self.procs:
            p.close()
        if self.producer.is_alive():
            self.producer.stop()
            self.producer.join(30)

    def stop_all(self, timeout: float = 90) -> None:
        """SIGTERM every running instance (graceful: commit what is buffered) and check exit 0."""
        running = [p for p in self.procs if p.running()]
        for p in running:
            p.signal(signal.SIGTERM)
        for p in running:
            code = p.wait(timeout)
            assert code == 0, f"{p.name} exited {code}:\n{p.tail()}"

    def finish(self, *, storage_keys: Mapping[str, str] | None = None) -> ArchiveCheck:
        """Stop producing, catch up, verify and check the archive."""
        self.producer.stop()
        self.producer.join_checked(120)
        cfg = {**self.base, **(storage_keys or {})}
        code, out = run_command(
            "catchup",
            cfg,
            self.tmp_path,
            f"{self.name}-catchup",
            args=["--no-progress"],
            timeout=180,
        )
        assert code == 0, out
        code, report = run_command("verify", cfg, self.tmp_path, f"{self.name}-verify")
        assert code == 0, report
        check = check_archive(
            storage_of(cfg),
            self.topic,
            self.producer.ids(),
            end_offsets(self.bootstrap, self.topic),
        )
        fenced = sum(p.count(r": fenced: ") for p in self.procs)
        takeovers = sum(p.count(r"took over at seq") for p in self.procs)
        info(
            f"{self.name}: {check.produced} records, archived {check.archived}, duplicates "
            f"{check.duplicates}, losses {check.missing}; {check.commits} commits, "
            f"{check.fences} fence markers, {takeovers} takeovers and {fenced} fenced commits "
            f"in the instances' logs; wall {time.monotonic() - self.started:.0f}s"
        )
        assert not check.problems(), "\n".join(check.problems())
        return check


@contextlib.contextmanager
def scenario(
    bootstrap: str,
    storage_keys: Mapping[str, str],
    tmp_path: Path,
    name: str,
    config: Mapping[str, str | None] | None = None,
) -> Iterator[Scenario]:
    s = Scenario(bootstrap, storage_keys, tmp_path, name, config)
    try:
        yield s
    finally:
        s.close()


def _wait_ready(*procs: SinkProcess, timeout: float = 60) -> None:
    for p in procs:
        p.wait_for_log(r"assigned \d+ partition|ready", timeout)


def _two_groups(bootstrap: str, keys: Mapping[str, str], tmp_path: Path) -> None:
    """Two instances in *different* consumer groups archive the same topic to the same prefix:
    both consume every partition, and the commit log makes them take turns (each takeover
    fences the other); every record is archived once."""
    with scenario(bootstrap, keys, tmp_path, "groups") as s:
        s.producer.start()
        one = s.instance("group-1", **{"group.id": f"one-{s.topic}"}).start()
        two = s.instance("group-2", **{"group.id": f"two-{s.topic}"}).start()
        _wait_ready(one, two)
        # both get fenced by the other on some partition, and both still commit
        deadline = time.monotonic() + 60
        while not (one.count(": fenced: ") and two.count(": fenced: ")):
            assert time.monotonic() < deadline, "the two groups never fenced each other"
            time.sleep(0.5)
        time.sleep(6)
        s.stop_all()
        assert one.count(r"committed seq") and two.count(r"committed seq")
        s.finish()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_two_groups_on_one_prefix_on_minio(
    kafka_bootstrap: str, minio_endpoint: S3Endpoint, minio_bucket: str, tmp_path: Path
) -> None:
    _two_groups(kafka_bootstrap, s3_keys(minio_endpoint, minio_bucket), tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_two_groups_on_one_prefix_on_the_filesystem(kafka_bootstrap: str, tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    _two_groups(kafka_bootstrap, {"storage.url": root.as_uri()}, tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_rebalances_while_three_instances_start_and_stop(
    kafka_bootstrap: str, minio_endpoint: S3Endpoint, minio_bucket: str, tmp_path: Path
) -> None:
    """Three instances of one group join, leave gracefully, crash and come back while records
    flow: every rebalance moves partitions (revoke: commit, then takeover by the new owner)."""
    keys = s3_keys(minio_endpoint, minio_bucket)
    with scenario(kafka_bootstrap, keys, tmp_path, "rebalance") as s:
        a, b, c = s.instance("a"), s.instance("b"), s.instance("c")
        s.producer.start()
        a.start()
        _wait_ready(a)
        steps: list[tuple[str, Callable[[], object]]] = [
            ("start b", b.start),
            ("start c", c.start),
            ("stop a", lambda: a.terminate(60)),
            ("start a", a.start),
            ("kill c", c.kill),
            ("stop b", lambda: b.terminate(60)),
            ("start c", c.start),
            ("start b", b.start),
        ]
        for what, step in steps:
            result = step()
            if what.startswith("stop"):
                assert result == 0, f"{what} exited {result}"
            time.sleep(3)
        time.sleep(3)
        s.stop_all()
        revokes = sum(p.count(r": revoke\b") for p in s.procs)
        info(f"rebalance: {len(steps)} membership changes, {revokes} files rolled on revoke")
        assert revokes > 0
        check = s.finish()
        assert check.fences > 2 * PARTITIONS  # partitions moved many times


@pytest.fixture(scope="module")
def kip848_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A broker whose KIP-848 consumer groups time a silent member out after 6 s.

    With ``group.protocol=consumer`` the session timeout and heartbeat interval are the
    broker's (a client may not set them), and the broker refuses a group-level session
    timeout below ``group.consumer.min.session.timeout.ms`` (45 s by default, not dynamic):
    the 6 s / 1 s the classic instances of this module ask for need a broker of their own."""
    broker = KafkaBroker(
        tmp_path_factory.mktemp("kip848-kafka"),
        die_with_parent=True,
        extra_config={
            "group.consumer.session.timeout.ms": "6000",
            "group.consumer.min.session.timeout.ms": "6000",
            "group.consumer.heartbeat.interval.ms": "1000",
            "group.consumer.min.heartbeat.interval.ms": "1000",
        },
    )
    broker.start()
    yield broker
    broker.stop()


#: Assignment protocols besides the default cooperative-sticky (see the test above); None
#: removes a setting the classic protocol takes from the client.
PROTOCOLS: dict[str, dict[str, str | None]] = {
    "eager": {"consumer.partition.assignment.strategy": "range"},
    "kip848": {
        "consumer.group.protocol": "consumer",
        "consumer.session.timeout.ms": None,
        "consumer.heartbeat.interval.ms": None,
    },
}


def _owners(s: Scenario) -> dict[int, str]:
    """Each partition's owner by the instances' logs: the one that took it over last."""
    rx = re.compile(rf"^{re.escape(s.topic)}-(\d+): took over at seq")
    latest: dict[int, tuple[float, str]] = {}
    for proc in s.procs:
        for rec in proc.records():
            m = rx.match(rec.msg)
            if m and rec.ts >= latest.get(int(m.group(1)), (0.0, ""))[0]:
                latest[int(m.group(1))] = (rec.ts, proc.name)
    return {part: name for part, (_, name) in latest.items()}


def _wait_owners(s: Scenario, what: str, name: str, *, owns: bool) -> None:
    """Until instance ``name`` owns a partition (``owns``: it joined and took some over from
    the others) or none (it left: every partition it owned was taken over by another)."""

    def settled(owners: dict[int, str]) -> bool:
        if owns:
            return name in owners.values()
        return len(owners) == PARTITIONS and name not in owners.values()

    deadline = time.monotonic() + 30
    while not settled(owners := _owners(s)):
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.name}:\n{p.tail(15)}" for p in s.procs)
            raise TimeoutError(f"{s.name}: {what}: owners still {owners}\n{tails}")
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.integration
@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_rebalances_with_the_other_assignment_protocols(
    protocol: str,
    request: pytest.FixtureRequest,
    minio_endpoint: S3Endpoint,
    minio_bucket: str,
    tmp_path: Path,
) -> None:
    """Eager (``range``: every rebalance revokes and reassigns every partition) and KIP-848
    (the broker assigns, incrementally): instances join, one is killed (its partitions move
    once its session expires, its buffered records are consumed again by the new owner), one
    leaves gracefully and the killed one comes back, while records flow. Each step waits until
    partitions moved by it (who owns a partition: who took it over last, by the logs)."""
    if protocol == "kip848":
        bootstrap = request.getfixturevalue("kip848_broker").bootstrap
    else:
        bootstrap = request.getfixturevalue("kafka_bootstrap")
    keys = s3_keys(minio_endpoint, minio_bucket)
    with scenario(bootstrap, keys, tmp_path, protocol, PROTOCOLS[protocol]) as s:
        a, b, c = s.instance("a"), s.instance("b"), s.instance("c")
        s.producer.start()
        a.start()
        _wait_ready(a)
        steps: list[tuple[str, Callable[[], object], SinkProcess]] = [
            ("start b", b.start, b),
            ("start c", c.start, c),
            ("kill a", a.kill, a),
            ("stop b", lambda: b.terminate(60), b),
            ("start a", a.start, a),
        ]
        for what, step, proc in steps:
            joins = what.startswith("start")
            if not joins:  # it leaves with partitions of its own
                _wait_owners(s, f"before {what}", proc.name, owns=True)
            result = step()
            if what.startswith("stop"):
                assert result == 0, f"{what} exited {result}"
            _wait_owners(s, what, proc.name, owns=joins)
        s.stop_all()
        revokes = sum(p.count(r": revoke\b") for p in s.procs)
        info(f"{protocol}: {len(steps)} membership changes, {revokes} files rolled on revoke")
        assert revokes > 0
        check = s.finish()
        assert check.fences > PARTITIONS, "partitions never moved between instances"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_broker_restart_mid_run(
    kafka_broker: KafkaBroker, minio_endpoint: S3Endpoint, minio_bucket: str, tmp_path: Path
) -> None:
    """The broker (the rig's own, so it can be restarted; its port stays) goes down and comes
    back while two instances archive: they keep or regain their partitions and go on."""
    keys = s3_keys(minio_endpoint, minio_bucket)
    bootstrap = kafka_broker.bootstrap
    with scenario(bootstrap, keys, tmp_path, "restart") as s:
        s.producer.start()
        a, b = s.instance("a").start(), s.instance("b").start()
        _wait_ready(a, b)
        time.sleep(4)
        down = time.monotonic()
        kafka_broker.restart()
        restart_s = time.monotonic() - down
        back = time.time()
        # both instances commit again after the broker is back
        for p in (a, b):
            p.wait_for_log(r"committed seq", 90, after=back)
        time.sleep(3)
        s.stop_all()
        info(f"broker restart: {restart_s:.1f}s down; both instances committed again after it")
        s.finish()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_s3_faults(
    kafka_bootstrap: str, minio_endpoint: S3Endpoint, minio_bucket: str, tmp_path: Path
) -> None:
    """5% of S3 requests fail: answered 500 InternalError or 503 SlowDown without reaching
    MinIO, or executed by MinIO and then the connection reset (the write happened, the sink
    cannot know). Two instances archive through the faulty endpoint, and the final catch-up
    goes through it too."""
    with FaultProxy(minio_endpoint.url, rate=0.05, seed=7) as proxy:
        keys = s3_keys(minio_endpoint, minio_bucket, url=proxy.url)
        with scenario(kafka_bootstrap, keys, tmp_path, "faults") as s:
            s.producer.start()
            a, b = s.instance("a").start(), s.instance("b").start()
            _wait_ready(a, b)
            # on top of the random 5%: the responses of the steps that matter most are lost
            # after S3 executed them (the marker's conditional create, the publishing copy,
            # the staging delete)
            proxy.inject("drop", lambda r: r.is_conditional_put, times=4)
            proxy.inject("drop", lambda r: "x-amz-copy-source" in r.headers, times=3)
            proxy.inject("drop", lambda r: r.method == "DELETE", times=3)
            time.sleep(15)
            assert proxy.pending_injections() == 0, "not every targeted fault was used"
            s.stop_all()
            s.finish()
        counts = proxy.counts
    retried = sum(p.count(r"transient failure") for p in s.procs)
    failed = sum(p.count(r"commit failed") for p in s.procs)
    landed = sum(p.count(r"had landed before the retry") for p in s.procs)
    info(
        f"S3 faults: {counts['requests']} requests, {counts['injected_500']} x 500, "
        f"{counts['injected_503']} x 503, {counts['dropped_after_forward']} executed then reset; "
        f"{retried} retries logged, {landed} markers whose response was lost recognized as "
        f"landed, {failed} commits failed and were taken over again"
    )
    assert landed >= 1
    assert counts["injected_500"] and counts["injected_503"] and counts["dropped_after_forward"]
