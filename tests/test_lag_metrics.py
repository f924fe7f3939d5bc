"""``consumer_lag`` and ``committed_lag`` on partitions written in transactions.

A transaction ends with a control record, and an aborted one leaves records a read_committed
consumer is never handed: the last offsets of such a partition hold no record, so a writer's
position (the offset after its last record) stays below the end offset (the last stable offset)
for ever. The lags must still reach 0 once everything is consumed and committed, and while
records are buffered ``committed_lag`` must count every offset the broker has past the log's
end. Values are checked exactly against the broker's end offsets and the commit markers.
"""

from __future__ import annotations

import json
import time

from confluent_kafka import KafkaError, Message, Producer

from s3sink.config import parse
from s3sink.sink import storage_from_config
from tests.rig.archive import archived_lines, check_exactly_once, ids_of, markers
from tests.rig.kafka import create_topic, end_offsets, unique_name
from tests.rig.observe import Running, Scrape, listen_address, wait_for
from tests.rig.s3 import S3Endpoint
from tests.test_metrics import _s3

PARTITIONS = 2
#: Records per file (per partition): the first roll happens in the second committed batch.
FLUSH = 40


class Transactions:
    """A transactional producer writing ``n`` records to each partition per transaction."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.producer = Producer(
            {"bootstrap.servers": bootstrap, "transactional.id": unique_name("txn")}
        )
        self.producer.init_transactions(30)
        self.next_id = 0
        #: ids of the records in committed transactions
        self.committed: list[str] = []

    def run(self, n: int, *, commit: bool) -> None:
        failed: list[KafkaError] = []

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                failed.append(err)

        ids = []
        self.producer.begin_transaction()
        for _ in range(n):
            for p in range(PARTITIONS):
                value = json.dumps({"id": self.next_id}).encode()
                self.producer.produce(self.topic, value, partition=p, on_delivery=on_delivery)
                ids.append(str(self.next_id))
                self.next_id += 1
        assert self.producer.flush(30) == 0 and not failed, failed
        if commit:
            self.producer.commit_transaction(30)
            self.committed.extend(ids)
        else:
            self.producer.abort_transaction(30)


def _lags(s: Scrape, name: str, topic: str) -> dict[int, float]:
    return {int(p): v for p, v in s.by(name, "partition", topic=topic).items()}


def test_lags_reach_zero_after_control_records_and_count_buffered_offsets(
    kafka_bootstrap: str, s3_endpoint: S3Endpoint, s3_bucket: str, running: list[Running]
) -> None:
    topic = create_topic(kafka_bootstrap, PARTITIONS)
    txn = Transactions(kafka_bootstrap, topic)
    raw = {
        "name": unique_name("lag"),
        "topics": topic,
        "bootstrap.servers": kafka_bootstrap,
        "format.class": "json",
        "flush.size": str(FLUSH),
        "rotate.schedule.interval.ms": "-1",
        "consumer.statistics.interval.ms": "200",
        "http.listen": listen_address(),
        "shutdown.timeout.ms": "20000",
        **_s3(s3_endpoint, s3_bucket),
    }
    cfg = parse(raw, environ={})
    storage = storage_from_config(cfg)
    run = Running(cfg)
    running.append(run)
    consumed = 0

    def settle(what: str, committed_lag: dict[int, int]) -> Scrape:
        """Wait until every record is consumed and the lags are the expected ones, then check
        that they stay so over several statistics intervals."""
        expected = {p: 0 for p in range(PARTITIONS)}

        def ok(s: Scrape) -> bool:
            return (
                s.value("records_consumed_total") == consumed
                and _lags(s, "consumer_lag", topic) == expected
                and _lags(s, "committed_lag", topic) == committed_lag
            )

        wait_for(what, run.scrape, ok, timeout=60)
        # and still so after later statistics (every 200 ms) and loop turns: the end offsets
        # may have been a statistics interval old at the first match (the consumer can reach
        # the end before a transaction's control record is written), so the values must hold
        # again once several intervals have passed, not merely once
        time.sleep(1.0)
        end = wait_for(f"{what}, a second later", run.scrape, ok, timeout=10)
        assert end.value("records_consumed_total") == consumed
        return end

    def log_end(p: int) -> int:
        return max(m.end for m in markers(storage, topic, p))

    # 15 records per partition committed, 5 aborted: offsets 0-14 records, 15 control,
    # 16-20 aborted, 21 control; the 15 records stay buffered (flush.size 40)
    txn.run(15, commit=True)
    txn.run(5, commit=False)
    consumed += 15 * PARTITIONS
    ends = end_offsets(kafka_bootstrap, topic)
    assert ends == {p: 22 for p in range(PARTITIONS)}
    # nothing committed: every offset of the partition is behind the log
    settle("15 records buffered per partition", {p: 22 for p in range(PARTITIONS)})
    assert {p: log_end(p) for p in range(PARTITIONS)} == {p: 0 for p in range(PARTITIONS)}

    # 25 more: the file rolls at its 40th record (offset 46); the control record (47), an
    # aborted transaction (48-52) and its control record (53) follow
    txn.run(25, commit=True)
    txn.run(5, commit=False)
    consumed += 25 * PARTITIONS
    assert end_offsets(kafka_bootstrap, topic) == {p: 54 for p in range(PARTITIONS)}
    # everything below the end offset is consumed and committed: both lags 0
    settle("everything archived", {p: 0 for p in range(PARTITIONS)})
    assert {p: log_end(p) for p in range(PARTITIONS)} == {p: 47 for p in range(PARTITIONS)}

    # 10 more buffered (54-63), control record 64. The log still ends at 47, but 47-53 hold
    # nothing to archive (they were read with nothing left open or pending): the lag counts
    # the offsets from 54 on, the 10 buffered records and the control record
    txn.run(10, commit=True)
    consumed += 10 * PARTITIONS
    assert end_offsets(kafka_bootstrap, topic) == {p: 65 for p in range(PARTITIONS)}
    settle("10 records buffered after a commit", {p: 65 - 54 for p in range(PARTITIONS)})
    assert {p: log_end(p) for p in range(PARTITIONS)} == {p: 47 for p in range(PARTITIONS)}

    run.stop()
    result = check_exactly_once(txn.committed, ids_of(archived_lines(storage, "topics", topic)))
    assert result.ok, result
