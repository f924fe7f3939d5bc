"""``s3sink demo``: the main job on the embedded default, end to end.

Brings up the local stack (a real Apache Kafka broker and a local S3 endpoint), produces sample
order events to a topic, archives them with ``catchup`` into the bucket exactly as ``s3sink
run`` would, verifies the commit log against the listing, and queries the output with DuckDB.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

DEMO_TOPIC = "demo-orders"
DEMO_BUCKET = "s3sink-demo"
COUNTRIES = ("FR", "DE", "US", "JP", "BR", "IN", "GB", "ES")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="local Kafka + S3, sample data, catch-up, verify and a query over the output",
    )
    p.add_argument("--records", type=int, default=50_000, help="sample records to produce")
    p.add_argument("--state-dir", default=None, help="local stack state (default .s3sink-local)")
    p.add_argument("--format", default="parquet", help="format.class of the output")
    p.set_defaults(handler=cmd_demo)


def _sample(i: int, rng: random.Random, base_ms: int) -> bytes:
    return json.dumps(
        {
            "id": i,
            "created_at": base_ms + i * 37,
            "country": rng.choice(COUNTRIES),
            "amount": round(rng.uniform(1, 500), 2),
            "customer": {"id": rng.randrange(1, 5000), "tier": rng.choice(("gold", "basic"))},
        },
        separators=(",", ":"),
    ).encode()


def _say(msg: str) -> None:
    sys.stderr.write(f"demo: {msg}\n")
    sys.stderr.flush()


def cmd_demo(args: argparse.Namespace) -> int:
    import boto3
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    from s3sink.config import parse
    from s3sink.local.stack import LocalStack
    from s3sink.logs import setup_logging
    from s3sink.sink import Sink, storage_from_config
    from s3sink.verify import verify

    setup_logging("text", "WARNING")
    _say("starting the local stack (Apache Kafka + S3 endpoint) ...")
    env = LocalStack(Path(args.state_dir) if args.state_dir else None).up()
    s3 = env.s3
    client = boto3.client(
        "s3",
        endpoint_url=s3.url,
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
        region_name=s3.region,
    )
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if DEMO_BUCKET not in existing:
        client.create_bucket(Bucket=DEMO_BUCKET)

    topic = f"{DEMO_TOPIC}-{int(time.time())}"
    admin = AdminClient({"bootstrap.servers": env.bootstrap_servers})
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result()
    _say(f"producing {args.records:,} sample orders to topic {topic} (3 partitions) ...")
    producer = Producer(
        {"bootstrap.servers": env.bootstrap_servers, "linger.ms": 20, "enable.idempotence": True}
    )
    rng = random.Random(7)
    base = int(time.time() * 1000) - args.records * 37
    for i in range(args.records):
        while True:
            try:
                producer.produce(topic, key=str(i % 1000).encode(), value=_sample(i, rng, base))
                break
            except BufferError:
                producer.poll(0.1)
    if producer.flush(60):
        raise SystemExit("demo: the broker did not acknowledge every record")

    raw = {
        "name": "demo",
        "topics": topic,
        "bootstrap.servers": env.bootstrap_servers,
        "s3.bucket.name": DEMO_BUCKET,
        "store.url": s3.url,
        "s3.region": s3.region,
        "s3.path.style.access.enabled": "true",
        "aws.access.key.id": s3.access_key,
        "aws.secret.access.key": s3.secret_key,
        "format.class": args.format,
        "value.converter": "json",
        "flush.size": "10000",
        "http.listen": "none",
    }
    cfg = parse(raw, environ={})
    _say(f"archiving with `s3sink catchup` ({args.format}) into s3://{DEMO_BUCKET}/topics/ ...")
    summary = Sink(cfg).run(catchup=True)
    print(summary.text())

    storage = storage_from_config(cfg)
    report = verify(storage, cfg, topics=[topic])
    print(report.text().splitlines()[-1])

    _query(storage, cfg.topics_dir, topic, args.format)
    _say(
        "done. The stack keeps running: `s3sink local status`, `s3sink local down` to stop "
        "it. Config used (secrets redacted):"
    )
    for k, v in cfg.redacted().items():
        if k in raw:
            sys.stderr.write(f"    {k}={v}\n")
    return 0 if report.ok else 1


def _query(storage: Any, topics_dir: str, topic: str, fmt: str) -> None:
    """Download the data files and query them with DuckDB, as a lake reader would."""
    import tempfile

    import duckdb

    with tempfile.TemporaryDirectory() as tmp:
        for info in storage.list(f"{topics_dir}/{topic}/"):
            dest = Path(tmp) / info.key
            dest.parent.mkdir(parents=True, exist_ok=True)
            data, _ = storage.get(info.key)
            dest.write_bytes(data)
        root = Path(tmp) / topics_dir / topic
        reader = (
            f"read_parquet('{root}/**/*.parquet', hive_partitioning=true)"
            if fmt == "parquet"
            else f"read_json_auto('{root}/**/*.json', hive_partitioning=true)"
        )
        select = "SELECT country, count(*) AS orders, round(sum(amount), 2) AS revenue FROM "
        sql = select + reader + " GROUP BY country ORDER BY orders DESC"
        shown = sql.replace(str(root), f"s3://{DEMO_BUCKET}/{topics_dir}/{topic}")
        print(f"\nDuckDB> {shown}")
        con = duckdb.connect()
        rows = con.execute(sql).fetchall()
        print(f"{'country':<8} {'orders':>8} {'revenue':>12}")
        for country, orders, revenue in rows:
            print(f"{country:<8} {orders:>8} {revenue:>12,.2f}")
        count_sql = f"SELECT count(*), count(DISTINCT id) FROM {reader}"  # noqa: S608
        total = con.execute(count_sql).fetchone()
        if total is not None:
            print(f"total rows {total[0]:,}, distinct ids {total[1]:,}")
