"""Metrics that are true: ``/metrics`` checked against what was produced, consumed and written.

The sink runs in process (``Sink.run`` in a thread, ``start_http`` as ``s3sink run`` does) over a
known set of records with bad ones (undecodable values and tombstones, ``errors.tolerance=all``
with a dead-letter topic). Every count is compared with an independent source: the delivery
reports, the listing of the final files and their contents, the commit markers, the dead-letter
topic. Fencing, conflicts and retries are caused on purpose and counted by cause.
"""

from __future__ import annotations

import collections
import json
import time
from pathlib import Path

import pytest

from s3sink.clock import SystemClock
from s3sink.commitlog import PartitionLog
from s3sink.config import parse
from s3sink.errors import ConflictError
from s3sink.metrics import CountingLogStorage, Metrics
from s3sink.metrics import parse as parse_metrics
from s3sink.sink import storage_from_config
from s3sink.storage.memory import MemoryStorage
from s3sink.storage.retry import RetryPolicy
from s3sink.storage.s3 import S3Credentials, S3Storage
from s3sink.verify import verify
from tests.rig.archive import archived_lines, check_exactly_once, ids_of, markers, read_lines
from tests.rig.faultproxy import FaultProxy, ProxiedRequest
from tests.rig.kafka import consume, create_topic, end_offsets, produce_n, unique_name
from tests.rig.observe import Running, Scrape, get, listen_address, wait_for
from tests.rig.s3 import S3Endpoint
from tests.rig.tapproxy import TapProxy
from tests.test_lifecycle import S3Gate

N = 2400
PARTITIONS = 3


def _bad(i: int) -> bool:
    return i % 50 == 7


def _tombstone(i: int) -> bool:
    return i % 199 == 3


def _value(i: int) -> bytes | None:
    if _tombstone(i):
        return None
    if _bad(i):
        return b'{"id": %d, broken' % i
    return json.dumps({"id": i, "n": i % 4, "name": f"user-{i}"}).encode()


def _s3(endpoint: S3Endpoint, bucket: str, url: str | None = None) -> dict[str, str]:
    return {
        "s3.bucket.name": bucket,
        "store.url": url or endpoint.url,
        "s3.region": endpoint.region,
        "s3.path.style.access.enabled": "true",
        "aws.access.key.id": endpoint.access_key,
        "aws.secret.access.key": endpoint.secret_key,
    }


def test_metrics_match_what_was_produced_and_written(
    kafka_bootstrap: str, s3_endpoint: S3Endpoint, s3_bucket: str, running: list[Running]
) -> None:
    topic = create_topic(kafka_bootstrap, PARTITIONS)
    dlq = create_topic(kafka_bootstrap, 1, prefix="dlq")
    delivered = produce_n(
        kafka_bootstrap, topic, N, value=_value, partition=lambda i: i % PARTITIONS
    )
    per_p: dict[int, list[int]] = collections.defaultdict(list)  # partition -> record indexes
    for d in delivered:
        per_p[d.partition].append(d.seq)

    listen = listen_address()
    raw = {
        "name": unique_name("metrics"),
        "topics": topic,
        "bootstrap.servers": kafka_bootstrap,
        "value.converter": "json",
        "format.class": "json",
        "partitioner.class": "field",
        "partition.field.name": "n",
        "flush.size": "100",
        "errors.tolerance": "all",
        "errors.deadletterqueue.topic.name": dlq,
        "errors.deadletterqueue.topic.replication.factor": "1",
        "buffer.memory.bytes": "64MiB",
        "consumer.statistics.interval.ms": "300",
        "http.listen": listen,
        "shutdown.timeout.ms": "20000",
        **_s3(s3_endpoint, s3_bucket),
    }
    cfg = parse(raw, environ={})
    run = Running(cfg)
    running.append(run)

    def lag_settled(s: Scrape) -> bool:
        lag = s.series("consumer_lag")
        return (
            s.value("records_consumed_total") >= N
            and len(lag) == PARTITIONS
            and all(v == 0 for v in lag.values())
        )

    wait_for("all records consumed, lag 0", run.scrape, lag_settled, timeout=90)
    # files roll every flush.size good records; the rest stays open until the stop
    rolled = sum((len(idx) - sum(1 for i in idx if _bad(i) or _tombstone(i))) // 100 * 100
                 for idx in per_p.values())  # fmt: skip
    live = wait_for(
        "full files committed",
        run.scrape,
        lambda s: s.value("records_committed_total") == rolled,
    )
    assert get(listen, "/readyz") == (200, "ready\n")
    assert get(listen, "/healthz") == (200, "ok\n")
    assert live.value("ready") == 1
    assert live.value("assigned_partitions") == PARTITIONS
    assert live.value("paused_partitions") == 0
    assert live.value("buffer_memory_budget_bytes") == 64 * 1024 * 1024
    assert 0 <= live.value("buffer_memory_bytes") <= 64 * 1024 * 1024
    storage = storage_from_config(cfg)
    for p, idx in per_p.items():
        end = max(d.offset for d in delivered if d.partition == p) + 1
        assert live.value("consumer_lag", topic=topic, partition=str(p)) == 0
        # records not yet in a committed file: the end offset minus the log's end
        log_end = max(m.end for m in markers(storage, topic, p))
        assert live.value("committed_lag", topic=topic, partition=str(p)) == end - log_end
        assert len(idx) == end

    run.stop()
    # after the stop: not ready, per-partition gauges gone, everything committed
    assert get(listen, "/readyz")[0] == 503
    final = run.scrape()
    assert final.value("ready") == 0
    assert final.series("consumer_lag") == {}

    # -- what the sink says against what is there ------------------------------------------
    listing = list(storage.list(f"topics/{topic}/"))
    files_per_p: dict[int, list[str]] = collections.defaultdict(list)
    for info in listing:
        files_per_p[int(info.key.rsplit("/", 1)[1].split("+")[1])].append(info.key)
    lines = archived_lines(storage, "topics", topic)
    good = [i for i in range(N) if not _bad(i) and not _tombstone(i)]
    assert check_exactly_once(map(str, good), ids_of(lines)).ok

    for p, idx in per_p.items():
        lab = {"topic": topic, "partition": str(p)}
        records = [_value(i) for i in idx]
        keys_bytes = sum(len(b"key-%d" % i) for i in idx)
        n_bad = sum(1 for i in idx if _bad(i) or _tombstone(i))
        in_files = sum(len(read_lines(storage, k)) for k in files_per_p[p])
        commits = [m for m in markers(storage, topic, p) if m.kind == "commit"]

        assert final.value("records_consumed_total", **lab) == len(idx)
        assert final.value("bytes_consumed_total", **lab) == keys_bytes + sum(
            len(v) for v in records if v is not None
        )
        assert final.value("records_written_total", **lab) == len(idx) - n_bad
        assert final.value("records_committed_total", **lab) == in_files == len(idx) - n_bad
        assert final.value("records_committed_total", **lab) == sum(m.records for m in commits)
        assert final.value("files_committed_total", **lab) == len(files_per_p[p])
        assert final.value("files_committed_total", **lab) == sum(len(m.files) for m in commits)
        assert final.value("files_opened_total", **lab) == len(files_per_p[p])
        sizes = sum(i.size for i in listing if i.key in set(files_per_p[p]))
        assert final.value("bytes_written_total", **lab) == sizes
        assert final.value("bytes_committed_total", **lab) == sizes
        assert final.value("commits_total", **lab) == len(commits)
        assert final.value("bad_records_total", **lab) == n_bad
        assert final.value("dead_lettered_records_total", **lab) == n_bad
        reasons = final.by("rotations_total", "reason", **lab)
        assert sum(reasons.values()) == len(commits), reasons
        assert set(reasons) <= {"flush_size", "shutdown"}, reasons
        assert reasons.get("flush_size", 0) >= (len(idx) - n_bad) // 100 - 1
        assert final.value("takeovers_total", **lab) == 1
        assert final.value("fenced_total", **lab) == 0

    total_commits = final.value("commits_total")
    assert final.value("commit_seconds_count") == total_commits
    assert final.value("publish_seconds_count") == total_commits
    assert final.value("commit_seconds_bucket", le="+Inf") == total_commits
    assert final.value("takeover_seconds_count") == PARTITIONS
    assert final.value("storage_conflicts_total") == 0
    assert final.value("storage_retries_total") == 0
    assert final.value("commit_failures_total") == 0
    assert abs(final.value("last_commit_timestamp_seconds") - time.time()) < 120

    # the dead-letter topic holds exactly the bad records, per source partition
    dead = consume(kafka_bootstrap, dlq)
    by_source = collections.Counter(
        int(dict(r.headers)["__connect.errors.partition"] or b"-1") for r in dead
    )
    assert final.value("dead_lettered_records_total") == len(dead)
    for p, idx in per_p.items():
        assert by_source[p] == sum(1 for i in idx if _bad(i) or _tombstone(i))

    # the exposition format: HELP and TYPE for every family, parseable, exact integers
    for family in ("records_consumed_total", "consumer_lag", "commit_seconds"):
        assert f"# HELP s3sink_{family} " in live.text
    assert "# TYPE s3sink_commit_seconds histogram" in final.text
    assert "e+" not in final.text, "values must be exact, not rounded to 6 digits"
    assert verify(storage, cfg).ok


def test_fencing_and_conflicts_by_cause(
    kafka_bootstrap: str, tmp_path: Path, running: list[Running]
) -> None:
    """Another owner fences the partition: the next commit loses its marker slot; the sink
    counts the conflict and the fencing, takes the partition over again and goes on."""
    topic = create_topic(kafka_bootstrap, 1)

    def value(i: int) -> bytes:
        return json.dumps({"id": i}).encode()

    produce_n(kafka_bootstrap, topic, 50, value=value)
    listen = listen_address()
    cfg = parse(
        {
            "name": unique_name("fence"),
            "topics": topic,
            "bootstrap.servers": kafka_bootstrap,
            "storage.url": tmp_path.as_uri(),
            "flush.size": "10",
            "http.listen": listen,
        },
        environ={},
    )
    run = Running(cfg)
    running.append(run)
    wait_for(
        "50 records committed",
        run.scrape,
        lambda s: s.value("records_committed_total") == 50,
    )
    intruder = PartitionLog(
        storage_from_config(cfg), topic, 0, "intruder", "attempt-x", SystemClock()
    )
    intruder.takeover(None, lambda: 0)
    produce_n(kafka_bootstrap, topic, 20, value=lambda i: value(50 + i))
    s = wait_for(
        "70 records committed after a re-takeover",
        run.scrape,
        lambda s: s.value("records_committed_total") == 70,
    )
    lab = {"topic": topic, "partition": "0"}
    assert s.value("fenced_total", **lab) == 1
    assert s.by("storage_conflicts_total", "cause", **lab) == {"commit_marker": 1}
    assert s.value("takeovers_total", **lab) == 2
    assert s.value("takeover_seconds_count") == 2
    # the records of the lost commit were read again
    assert s.value("records_consumed_total", **lab) >= 80
    run.stop()
    storage = storage_from_config(cfg)
    assert check_exactly_once(
        map(str, range(70)), ids_of(archived_lines(storage, "topics", topic))
    ).ok
    assert verify(storage, cfg).ok


def test_storage_retries_by_cause(
    kafka_bootstrap: str, s3_endpoint: S3Endpoint, s3_bucket: str, running: list[Running]
) -> None:
    """S3 throttling and errors injected by a proxy are retried and counted by cause; a lost
    response to a marker write shows up as a conflict that the sink resolves as its own."""
    topic = create_topic(kafka_bootstrap, 1)
    produce_n(kafka_bootstrap, topic, 10, value=lambda i: json.dumps({"id": i}).encode())
    with FaultProxy(s3_endpoint.url) as proxy:

        def plain_put(r: ProxiedRequest) -> bool:
            return r.method == "PUT" and not r.is_conditional_put

        proxy.inject("503", lambda r: r.is_conditional_put, times=2)
        proxy.inject("500", plain_put, times=2)
        raw = {
            "name": unique_name("retry"),
            "topics": topic,
            "bootstrap.servers": kafka_bootstrap,
            "flush.size": "10",
            "http.listen": listen_address(),
            "s3.retry.backoff.ms": "10",
        }
        cfg = parse({**raw, **_s3(s3_endpoint, s3_bucket, url=proxy.url)}, environ={})
        run = Running(cfg)
        running.append(run)
        wait_for(
            "10 records committed",
            run.scrape,
            lambda s: s.value("records_committed_total") >= 10,
        )
        # the response to the next marker write is lost after S3 executed it
        proxy.inject("drop", lambda r: r.is_conditional_put and "/_s3sink/log/" in r.path)
        produce_n(kafka_bootstrap, topic, 20, value=lambda i: json.dumps({"id": 10 + i}).encode())
        s = wait_for(
            "30 records committed",
            run.scrape,
            lambda s: s.value("records_committed_total") == 30 and proxy.pending_injections() == 0,
        )
        run.stop()
        final = run.scrape()
    causes = final.by("storage_retries_total", "cause")
    assert causes.get("SlowDown") == 2, causes
    assert causes.get("InternalError") == 2, causes
    assert sum(causes.values()) == proxy.injected, (causes, proxy.counts)
    assert final.value("storage_retries_exhausted_total") == 0
    assert s.by("storage_conflicts_total", "cause") == {"commit_marker": 1}
    assert final.value("fenced_total") == 0
    assert final.value("commit_failures_total") == 0
    storage = storage_from_config(parse({**raw, **_s3(s3_endpoint, s3_bucket)}, environ={}))
    assert check_exactly_once(
        map(str, range(30)), ids_of(archived_lines(storage, "topics", topic))
    ).ok


def test_storage_timeouts_are_retried_and_counted_by_cause(
    kafka_bootstrap: str, s3_endpoint: S3Endpoint, s3_bucket: str, running: list[Running]
) -> None:
    """S3 takes a staging upload and a publishing copy and does not answer within the read
    timeout: the sink retries both, commits, and counts the retries under their cause."""
    topic = create_topic(kafka_bootstrap, 1)
    produce_n(kafka_bootstrap, topic, 20, value=lambda i: json.dumps({"id": i}).encode())
    with TapProxy(s3_endpoint.url) as proxy:
        proxy.stall(lambda m, p, h: m == "PUT" and "/_s3sink/staging/" in p, times=1, seconds=30)
        proxy.stall(lambda m, p, h: m == "PUT" and "x-amz-copy-source" in h, times=1, seconds=30)
        raw = {
            "name": unique_name("timeout"),
            "topics": topic,
            "bootstrap.servers": kafka_bootstrap,
            "flush.size": "10",
            "http.listen": listen_address(),
        }
        cfg = parse({**raw, **_s3(s3_endpoint, s3_bucket, url=proxy.url)}, environ={})
        storage = S3Storage(
            s3_bucket,
            endpoint_url=proxy.url,
            region=s3_endpoint.region,
            path_style=True,
            credentials=S3Credentials(s3_endpoint.access_key, s3_endpoint.secret_key),
            read_timeout_s=0.5,
            retry=RetryPolicy(max_attempts=5, base_delay_s=0.01),
        )
        run = Running(cfg, storage)
        running.append(run)
        s = wait_for(
            "20 records committed",
            run.scrape,
            lambda s: s.value("records_committed_total") == 20,
        )
        run.stop()
        final = run.scrape()
        assert proxy.stall_count == 2
    assert s.by("storage_retries_total", "cause") == {"ReadTimeoutError": 2}
    assert final.by("storage_retries_total", "cause") == {"ReadTimeoutError": 2}
    assert final.value("storage_retries_exhausted_total") == 0
    assert final.value("commit_failures_total") == 0
    direct = storage_from_config(parse({**raw, **_s3(s3_endpoint, s3_bucket)}, environ={}))
    assert check_exactly_once(
        map(str, range(20)), ids_of(archived_lines(direct, "topics", topic))
    ).ok


def test_lag_paused_partitions_and_buffered_bytes_against_the_truth(
    kafka_bootstrap: str, s3_endpoint: S3Endpoint, s3_bucket: str, running: list[Running]
) -> None:
    """S3 holds every request while records keep coming, under a 1 MiB budget.

    1. Everything consumed, files held: ``buffer_memory_bytes`` equals the bytes of the held
       files (their sizes once written) plus the open ones (their first lines, read back later).
    2. More records than the budget holds: the partitions pause (``paused_partitions`` > 0),
       and ``consumer_lag`` per partition is the broker's end offset minus what was consumed.
    3. S3 answers again: the partitions resume (0 paused), lag goes to 0, output exactly once.
    """
    parts, flush, first, second, extra = 3, 100, 130, 1000, 200
    pad = "x" * 200

    def value(i: int) -> bytes:
        return json.dumps({"id": i, "pad": pad}).encode()

    topic = create_topic(kafka_bootstrap, parts)
    with FaultProxy(s3_endpoint.url) as proxy:
        gate = S3Gate(proxy)
        try:
            raw = {
                "name": unique_name("behind"),
                "topics": topic,
                "bootstrap.servers": kafka_bootstrap,
                "format.class": "json",
                "value.converter": "json",
                "s3.compression.type": "none",
                "flush.size": str(flush),
                "rotate.schedule.interval.ms": "-1",
                "buffer.memory.bytes": "1MiB",
                # the budget is enforced between consumed batches: small ones pause in time
                "consume.batch.size": "50",
                "consumer.statistics.interval.ms": "200",
                "http.listen": listen_address(),
                "shutdown.timeout.ms": "60000",
            }
            cfg = parse({**raw, **_s3(s3_endpoint, s3_bucket, url=proxy.url)}, environ={})
            run = Running(cfg)
            running.append(run)
            wait_for("ready", run.scrape, lambda s: s.value("ready") == 1)
            gate.close()

            # 1. a quiescent moment: all consumed, one full file held and one open per partition
            produce_n(kafka_bootstrap, topic, first * parts, value=value,
                      partition=lambda i: i % parts)  # fmt: skip
            wait_for(
                "first records consumed and held",
                run.scrape,
                lambda s: (
                    s.value("records_consumed_total") == first * parts
                    and s.value("records_committed_total") == 0
                ),
            )
            held = wait_for(
                "buffered bytes settled",
                lambda: (run.scrape(), run.scrape()),
                lambda pair: (
                    pair[0].value("buffer_memory_bytes") == pair[1].value("buffer_memory_bytes") > 0
                ),
            )[1].value("buffer_memory_bytes")
            assert held <= 1024 * 1024

            # 2. more than the budget holds (sent to partitions 1.. only): consumption pauses
            # behind the held uploads; then records arrive for every partition while paused
            produced = first * parts
            produce_n(kafka_bootstrap, topic, second * (parts - 1),
                      value=lambda i: value(produced + i),
                      partition=lambda i: 1 + i % (parts - 1))  # fmt: skip
            produced += second * (parts - 1)

            def consumed(s: Scrape) -> dict[int, float]:
                return {
                    p: s.value("records_consumed_total", topic=topic, partition=str(p))
                    for p in range(parts)
                }

            def settled() -> tuple[Scrape, Scrape]:
                before = run.scrape()
                time.sleep(0.5)  # a few statistics intervals
                return before, run.scrape()

            def paused_and_still(pair: tuple[Scrape, Scrape]) -> bool:
                return (
                    pair[1].value("paused_partitions", reason="backpressure") == parts
                    and consumed(pair[0]) == consumed(pair[1])
                    and sum(consumed(pair[1]).values()) < produced
                )

            wait_for("paused behind the held uploads", settled, paused_and_still)
            produce_n(kafka_bootstrap, topic, extra * parts,
                      value=lambda i: value(produced + i),
                      partition=lambda i: i % parts)  # fmt: skip
            produced += extra * parts
            ends = end_offsets(kafka_bootstrap, topic)
            assert sum(ends.values()) == produced
            # still paused: nothing of the new records is consumed
            _, behind = wait_for("still paused", settled, paused_and_still)
            assert behind.value("paused_partitions", reason="recovery") == 0
            assert behind.value("records_committed_total") == 0
            truth = {p: ends[p] - c for p, c in consumed(behind).items()}
            assert truth[0] == extra

            def lag(s: Scrape) -> dict[int, float]:
                return {int(dict(ls)["partition"]): v for ls, v in s.series("consumer_lag").items()}

            # consumer_lag per partition: the broker's end offset minus the consumed position,
            # within the statistics interval (200 ms; allow many). The partitions are paused:
            # librdkafka does not fetch them, so their end offsets come from the broker
            try:
                wait_for("consumer_lag true", run.scrape, lambda s: lag(s) == truth, timeout=15)
            except TimeoutError:
                raise AssertionError(f"consumer_lag {lag(run.scrape())} != {truth}") from None

            # 3. S3 answers again
            gate.open()
            done = wait_for(
                "resumed, all consumed",
                run.scrape,
                lambda s: (
                    s.value("paused_partitions") == 0
                    and s.value("records_consumed_total") >= produced
                    and all(v == 0 for v in s.series("consumer_lag").values())
                    and len(s.series("consumer_lag")) == parts
                ),
                timeout=90,
            )
            assert done.value("storage_retries_exhausted_total") == 0
            run.stop()
        finally:
            gate.open()

    storage = storage_from_config(parse({**raw, **_s3(s3_endpoint, s3_bucket)}, environ={}))
    lines = archived_lines(storage, "topics", topic)
    assert check_exactly_once(map(str, range(produced)), ids_of(lines)).ok
    # what was buffered at the quiescent moment: per partition the full first file and the
    # first ``first - flush`` lines of the second one
    expected = 0
    for p in range(parts):
        files = sorted(
            (i for i in storage.list(f"topics/{topic}/") if f"+{p}+" in i.key),
            key=lambda i: i.key,
        )
        by_start = {int(i.key.rsplit("+", 1)[1].split(".")[0]): i for i in files}
        full = read_lines(storage, by_start[0].key)
        assert len(full) == flush
        assert by_start[0].size == sum(len(line) + 1 for line in full)
        expected += by_start[0].size
        open_lines = read_lines(storage, by_start[flush].key)[: first - flush]
        expected += sum(len(line) + 1 for line in open_lines)
    assert held == expected, (held, expected)


# -- units -------------------------------------------------------------------------------------


def test_render_is_exact_and_parses_back() -> None:
    m = Metrics()
    m.inc("bytes_written_total", 1234567891, tp="my-topic-3")
    m.inc("rotations_total", 2, tp="t-0", reason='we"ird\\re\nason')
    m.set("buffer_memory_budget_bytes", 268435456)
    m.set("consumer_lag", 5, tp="t-1")
    m.observe("commit_seconds", 0.3)
    m.observe("commit_seconds", 7.0)
    text = m.render()
    assert 's3sink_bytes_written_total{partition="3",topic="my-topic"} 1234567891' in text
    assert "s3sink_buffer_memory_budget_bytes 268435456" in text
    samples = parse_metrics(text)
    weird = (("partition", "0"), ("reason", 'we"ird\\re\nason'), ("topic", "t"))
    assert samples[("s3sink_rotations_total", weird)] == 2
    assert samples[("s3sink_commit_seconds_count", ())] == 2
    assert samples[("s3sink_commit_seconds_bucket", (("le", "0.5"),))] == 1
    assert samples[("s3sink_commit_seconds_bucket", (("le", "+Inf"),))] == 2
    assert samples[("s3sink_commit_seconds_sum", ())] == pytest.approx(7.3)
    m.forget("t-1")
    assert "consumer_lag" not in parse_metrics(m.render()).__repr__()
    seen: list[int] = []
    m.add_collector(lambda mm: seen.append(1))
    m.render()
    assert seen == [1]


def test_counting_log_storage_counts_lost_conditional_writes_by_marker_kind() -> None:
    m = Metrics()
    inner = MemoryStorage()
    s = CountingLogStorage(inner, m)
    key = "_s3sink/log/my-topic/2/00000000000000000001.json"
    s.put(key, json.dumps({"kind": "fence"}).encode(), if_none_match=True)
    for kind in ("fence", "commit", "commit"):
        with pytest.raises(ConflictError):
            s.put(key, json.dumps({"kind": kind}).encode(), if_none_match=True)
    assert m.total("storage_conflicts_total", cause="fence_marker", topic="my-topic") == 1
    assert m.total("storage_conflicts_total", cause="commit_marker", partition="2") == 2
    assert s.get(key)[0] == b'{"kind": "fence"}'  # everything else passes through
