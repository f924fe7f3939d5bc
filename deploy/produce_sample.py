"""Produce sample order events (schemaless JSON) to Kafka, for the compose demo.

    python deploy/produce_sample.py --bootstrap-servers localhost:9092 --topic orders --count 10000

Creates the topic if it is missing, keys each record by customer (so a customer's orders stay in
one partition) and spreads record timestamps over the last ``--spread-hours`` hours, so a time
partitioner writes several hourly folders. The records are a pure function of ``--seed``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

CURRENCIES = ("EUR", "USD", "GBP", "JPY")
STATUSES = ("created", "paid", "shipped", "delivered", "cancelled")
HOUR_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class Sample:
    key: bytes
    value: bytes
    timestamp_ms: int


def samples(count: int, seed: int, now_ms: int, spread_hours: float) -> Iterator[Sample]:
    """``count`` order events with timestamps in ``[now - spread_hours, now]``, oldest first."""
    rng = random.Random(seed)
    spread_ms = int(spread_hours * HOUR_MS)
    for i in range(count):
        ts = now_ms - spread_ms + (spread_ms * i) // max(count, 1)
        customer = f"c{rng.randrange(1000):04d}"
        order = {
            "order_id": f"o{seed}-{i:08d}",
            "customer_id": customer,
            "amount": round(rng.uniform(1, 500), 2),
            "currency": rng.choice(CURRENCIES),
            "status": rng.choice(STATUSES),
            "items": rng.randrange(1, 6),
            "created_at": ts,
        }
        value = json.dumps(order, separators=(",", ":")).encode()
        yield Sample(customer.encode(), value, ts)


def ensure_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    if topic in admin.list_topics(timeout=30).topics:
        return
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions)])
    for future in futures.values():
        try:
            future.result(timeout=30)
        except Exception as exc:  # a concurrent creator got there first
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise


def produce(bootstrap: str, topic: str, records: Iterator[Sample], rate: float) -> int:
    """Send ``records``; returns the number that failed delivery."""
    from confluent_kafka import Producer

    failed = 0

    def on_delivery(err: Any, _msg: Any) -> None:
        nonlocal failed
        if err is not None:
            failed += 1

    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20}
    )
    interval = 1.0 / rate if rate > 0 else 0.0
    for sample in records:
        while True:
            try:
                producer.produce(
                    topic,
                    key=sample.key,
                    value=sample.value,
                    timestamp=sample.timestamp_ms,
                    on_delivery=on_delivery,
                )
                break
            except BufferError:  # local queue full: let deliveries drain
                producer.poll(0.5)
        producer.poll(0)
        if interval:
            time.sleep(interval)
    remaining = int(producer.flush(60))
    return failed + remaining


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument(
        "--bootstrap-servers",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"),
        help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP_SERVERS or localhost:9092)",
    )
    p.add_argument("--topic", default="orders")
    p.add_argument("--partitions", type=int, default=3, help="partitions if the topic is created")
    p.add_argument("--count", type=int, default=10_000)
    p.add_argument("--rate", type=float, default=0.0, help="records per second; 0: unthrottled")
    p.add_argument("--spread-hours", type=float, default=3.0)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    if args.count < 0 or args.partitions < 1 or args.spread_hours < 0:
        p.error("--count must be >= 0, --partitions >= 1 and --spread-hours >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    ensure_topic(args.bootstrap_servers, args.topic, args.partitions)
    now_ms = int(time.time() * 1000)
    records = samples(args.count, args.seed, now_ms, args.spread_hours)
    failed = produce(args.bootstrap_servers, args.topic, records, args.rate)
    print(f"produced {args.count - failed} of {args.count} records to {args.topic}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
