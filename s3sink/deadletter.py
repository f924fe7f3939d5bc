"""Dead-letter topic: bad records go to ``errors.deadletterqueue.topic.name`` with their
original key, value and headers, plus Kafka Connect's ``__connect.errors.*`` context headers.

Delivery is confirmed before the commit that covers those offsets (``flush``), so a bad record
is never lost; after a crash it may be sent again (at least once, as in Kafka Connect).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Producer

from s3sink.config import SinkConfig
from s3sink.errors import RetriableError
from s3sink.records import RecordBatch


def make_producer(config: SinkConfig) -> Any:
    from s3sink.kafkaconf import shared_client_config
    from s3sink.sink import consumer_config

    # the consumer's connection settings (bootstrap, security, TLS, SASL, network) apply to
    # the producer too, unless given for it under producer.*
    conf = shared_client_config(consumer_config(config, catchup=False))
    conf["enable.idempotence"] = True
    conf["client.id"] = f"s3sink-{config.name}-dlq"
    conf.update(config.producer)
    return Producer(conf, logger=logging.getLogger("s3sink.kafka"))


def send_dead_letters(
    producer: Any, config: SinkConfig, batch: RecordBatch, reasons: Sequence[str]
) -> None:
    topic = config.errors_deadletterqueue_topic_name
    if topic is None:
        raise ValueError("no dead-letter topic configured")
    for i in range(len(batch)):
        headers = list(batch.headers[i] or [])
        if config.errors_deadletterqueue_context_headers_enable:
            headers += [
                ("__connect.errors.topic", batch.topic.encode()),
                ("__connect.errors.partition", str(batch.partition).encode()),
                ("__connect.errors.offset", str(batch.offsets[i]).encode()),
                ("__connect.errors.connector.name", config.name.encode()),
                ("__connect.errors.stage", b"VALUE_CONVERTER"),
                ("__connect.errors.exception.message", reasons[i].encode()),
            ]
        while True:
            try:
                producer.produce(
                    topic,
                    value=batch.values[i],
                    key=batch.keys[i],
                    headers=headers,
                    timestamp=batch.timestamps[i] if batch.timestamps[i] > 0 else 0,
                )
                break
            except BufferError:
                producer.poll(0.1)
    producer.poll(0)


def flush(producer: Any, timeout: float = 30.0) -> None:
    remaining = producer.flush(timeout)
    if remaining:
        raise RetriableError(f"{remaining} dead-letter records not yet delivered")
