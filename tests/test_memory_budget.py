"""The consumer's prefetch takes a share of ``buffer.memory.bytes``; the files get the rest,
and no consumed batch, however large, takes them far past it."""

from __future__ import annotations

import json
import logging
import re
import threading
import time

import pytest

from s3sink.config import SinkConfig, parse
from s3sink.memory import configure_arrow_memory, files_budget, prefetch_config
from s3sink.sink import SLICE_SHARE, Sink, consumer_config, storage_from_config
from tests.rig.archive import archived_lines, check_exactly_once, ids_of
from tests.rig.faultproxy import FaultProxy
from tests.rig.kafka import create_topic, produce_n, unique_name
from tests.rig.observe import Running, Scrape, listen_address, wait_for
from tests.rig.s3 import S3Endpoint
from tests.test_lifecycle import S3Gate
from tests.test_metrics import _s3

MiB = 1024 * 1024


def test_prefetch_is_a_share_of_the_budget() -> None:
    backoff = {"fetch.queue.backoff.ms": 10}
    assert prefetch_config(256 * MiB, {}) == {
        "queued.max.messages.kbytes": 8 * 1024,
        "queued.min.messages": 32 * 1024,
        "fetch.max.bytes": 4 * MiB,
        **backoff,
    }
    # capped at librdkafka's defaults, floored for tiny budgets
    assert prefetch_config(4096 * MiB, {}) == {
        "queued.max.messages.kbytes": 65536,
        "queued.min.messages": 4 * 65536,
        "fetch.max.bytes": 52_428_800,
        **backoff,
    }
    assert prefetch_config(2 * MiB, {}) == {
        "queued.max.messages.kbytes": 1024,
        "queued.min.messages": 10_000,
        "fetch.max.bytes": MiB,
        **backoff,
    }
    user = {"fetch.max.bytes": 5, "queued.max.messages.kbytes": 7, "fetch.queue.backoff.ms": 1}
    assert prefetch_config(256 * MiB, user) == {}


def test_files_get_the_rest() -> None:
    # the prefetch is charged at what librdkafka really holds: 3 x (8 MiB + 4 MiB)
    conf = prefetch_config(256 * MiB, {})
    assert files_budget(256 * MiB, conf) == 256 * MiB - 36 * MiB
    assert files_budget(8 * MiB, {"queued.max.messages.kbytes": 65536}) == 2 * MiB
    # unreadable settings: librdkafka's defaults, at least a quarter for the files
    assert files_budget(256 * MiB, {"fetch.max.bytes": "x"}) == 64 * MiB
    assert files_budget(1024 * MiB, {"fetch.max.bytes": "x"}) == 1024 * MiB - 3 * (
        64 * MiB + 52_428_800
    )


def test_user_settings_win() -> None:
    cfg = SinkConfig(
        bootstrap_servers="x",
        consumer={"queued.max.messages.kbytes": "1000"},
    )
    conf = consumer_config(cfg, catchup=True)
    assert conf["queued.max.messages.kbytes"] == "1000"
    assert "queued.min.messages" not in conf
    assert conf["fetch.max.bytes"] == 4 * MiB


def test_arrow_memory_is_configured_once() -> None:
    configure_arrow_memory()
    configure_arrow_memory()


# -- the budget within one consumed batch ---------------------------------------------------

#: What the buffered bytes may pass the budget by: the last slice of a consumed batch appended
#: before the check that finds the budget full, at most 1/SLICE_SHARE of it (and a record)
#: times the format's encoded/raw size ratio (about 1 here: JSON lines from JSON).
MARGIN = 1 / 8
assert 1 / SLICE_SHARE < MARGIN


class GateOnReady(Sink):
    """Closes the S3 gate once the partitions are taken over: on the consumer thread, before
    it hands any record to a writer (takeovers need S3, the records' uploads must not get it).
    """

    def __init__(self, config: SinkConfig, gate: S3Gate) -> None:
        super().__init__(config)
        self.gate = gate

    def _set_ready(self, ready: bool) -> None:
        if ready:
            self.gate.close()
        super()._set_ready(ready)


class BufferedSampler:
    """Samples, from outside the consumer loop, what the budget counts: the open files of every
    writer, the pending commits and the S3 parts in flight (as ``Sink._enforce_memory`` sums
    them), and the ``buffer_memory_bytes`` gauge; keeps the largest of each."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.peak = 0
        self.peak_gauge = 0.0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="buffered-sampler", daemon=True)
        self._thread.start()

    def counted(self) -> int | None:
        sink = self.sink
        try:
            open_bytes = sum(w.memory() for w in list(sink.state.writers.values()))
        except RuntimeError:  # a file opened or sealed while iterating: sample again
            return None
        parts = getattr(sink.storage, "memory_bytes", None)
        return open_bytes + sink.committer.memory() + (int(parts()) if parts else 0)

    def _run(self) -> None:
        while not self._stop.wait(0.001):
            value = self.counted()
            if value is None:
                continue
            self.samples += 1
            self.peak = max(self.peak, value)
            gauge = self.sink.metrics.gauge("buffer_memory_bytes")
            if gauge is not None:
                self.peak_gauge = max(self.peak_gauge, gauge)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def test_budget_holds_within_a_consumed_batch(
    kafka_bootstrap: str,
    s3_endpoint: S3Endpoint,
    s3_bucket: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """1 MiB budget, the default ``consume.batch.size`` (10,000), ~1 KiB values: one consumed
    batch holds ~2 MiB (librdkafka's queue and a fetch). S3 holds every request once the
    partitions are taken over, so nothing buffered can be freed: the sink must stop taking
    records in the middle of a batch. The buffered bytes never pass the budget by more than
    :data:`MARGIN`; once S3 answers, every record is archived exactly once."""
    caplog.set_level(logging.DEBUG, logger="s3sink.sink")
    parts, n = 2, 3000
    pad = "x" * 1000
    topic = create_topic(kafka_bootstrap, parts)
    # all there before the sink starts: its first batches are as large as the prefetch allows
    produce_n(
        kafka_bootstrap,
        topic,
        n,
        value=lambda i: json.dumps({"id": i, "pad": pad}).encode(),
        partition=lambda i: i % parts,
    )
    budget = MiB
    with FaultProxy(s3_endpoint.url) as proxy:
        gate = S3Gate(proxy)
        try:
            raw = {
                "name": unique_name("budget"),
                "topics": topic,
                "bootstrap.servers": kafka_bootstrap,
                "format.class": "json",
                "value.converter": "json",
                "s3.compression.type": "none",
                "flush.size": "1000000",
                "rotate.schedule.interval.ms": "-1",
                "buffer.memory.bytes": str(budget),
                "consumer.statistics.interval.ms": "200",
                "http.listen": listen_address(),
                "shutdown.timeout.ms": "60000",
            }
            cfg = parse({**raw, **_s3(s3_endpoint, s3_bucket, url=proxy.url)}, environ={})
            assert cfg.consume_batch_size == 10_000
            sink = GateOnReady(cfg, gate)
            run = Running(cfg, sink=sink)
            sampler = BufferedSampler(sink)
            try:
                assert sink.ready.wait(60)

                def consumed(s: Scrape) -> float:
                    return s.value("records_consumed_total")

                def stalled() -> tuple[Scrape, Scrape]:
                    before = run.scrape()
                    time.sleep(0.5)
                    return before, run.scrape()

                # behind the held uploads: consumption stops short of the end
                _, held = wait_for(
                    "consumption stopped behind the held uploads",
                    stalled,
                    lambda pair: (
                        0 < consumed(pair[0]) == consumed(pair[1]) < n
                        and pair[1].value("paused_partitions", reason="backpressure") > 0
                    ),
                )
                assert held.value("records_committed_total") == 0
                assert gate.held > 0

                # nothing committed: committed_lag counts every offset, pending commits and
                # open files alike; consumer_lag what was not consumed (held records included)
                def lags(s: Scrape, name: str) -> dict[int, float]:
                    return {int(p): v for p, v in s.by(name, "partition", topic=topic).items()}

                per_p = n // parts
                lagged = wait_for(
                    "committed_lag of the held partitions",
                    run.scrape,
                    lambda s: lags(s, "committed_lag") == {p: per_p for p in range(parts)},
                    timeout=10,
                )
                assert lags(lagged, "consumer_lag") == {
                    p: per_p - lagged.value("records_consumed_total", partition=str(p))
                    for p in range(parts)
                }
                gated_peak = sampler.peak
                gate.open()
                wait_for(
                    "all records consumed and committed",
                    run.scrape,
                    lambda s: consumed(s) == n and s.value("records_committed_total") > 0,
                    timeout=90,
                )
                run.stop()
            finally:
                sampler.stop()
                run.close()
        finally:
            gate.open()

    # the open files and commits get what the prefetch leaves of the budget (a quarter of
    # 1 MiB); within it the sink holds them to MARGIN, and so to the budget with MARGIN
    files = files_budget(budget, consumer_config(cfg, catchup=False))
    assert files == budget // 4
    limit = files * (1 + MARGIN)
    assert sampler.samples > 100
    assert 0 < gated_peak <= sampler.peak <= limit <= budget * (1 + MARGIN), (
        gated_peak,
        sampler.peak,
        limit,
    )
    assert sampler.peak_gauge <= limit, sampler.peak_gauge
    # the budget filled up in the middle of a consumed batch: its rest was held, not appended
    held_counts = [
        int(m.group(1))
        for r in caplog.records
        if (m := re.search(r"memory budget full; (\d+) consumed records held", r.getMessage()))
    ]
    assert held_counts and max(held_counts) >= 100, held_counts
    storage = storage_from_config(parse({**raw, **_s3(s3_endpoint, s3_bucket)}, environ={}))
    lines = archived_lines(storage, "topics", topic)
    assert check_exactly_once(map(str, range(n)), ids_of(lines)).ok
