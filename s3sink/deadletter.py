"""Dead-letter topic: bad records go to ``errors.deadletterqueue.topic.name`` with their
original key, value and headers, plus Kafka Connect's ``__connect.errors.*`` context headers.

Delivery is confirmed before the commit that covers those offsets (``flush``), so a bad record
is never lost; after a crash it may be sent again (at least once, as in Kafka Connect).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from s3sink.config import SinkConfig
from s3sink.errors import FatalError, RecordError, RetriableError
from s3sink.records import RecordBatch

log = logging.getLogger("s3sink.deadletter")

# what Kafka Connect puts in __connect.errors.exception.class.name: the class of the error
EXCEPTION_CLASS = f"{RecordError.__module__}.{RecordError.__qualname__}".encode()


def make_producer(config: SinkConfig) -> Any:
    from s3sink.kafkaconf import shared_client_config
    from s3sink.sink import consumer_config

    # the consumer's connection settings (bootstrap, security, TLS, SASL, network) apply to
    # the producer too, unless given for it under producer.*
    conf = shared_client_config(consumer_config(config, catchup=False))
    ensure_topic(config, dict(conf))
    conf["enable.idempotence"] = True
    conf["client.id"] = f"s3sink-{config.name}-dlq"
    conf.update(config.producer)
    return Producer(conf, logger=logging.getLogger("s3sink.kafka"))


def ensure_topic(config: SinkConfig, client_conf: dict[str, Any], timeout: float = 30.0) -> None:
    """Create the dead-letter topic if it does not exist, as Kafka Connect does: one partition,
    ``errors.deadletterqueue.topic.replication.factor`` replicas (fewer when the cluster has
    fewer brokers, with a warning: a single-broker development cluster still works)."""
    topic = config.errors_deadletterqueue_topic_name
    if not topic:
        return
    admin = AdminClient(client_conf, logger=logging.getLogger("s3sink.kafka"))
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise RetriableError(
            f"dead-letter topic {topic}: cannot read the cluster's topics: {exc}"
        ) from exc
    if topic in metadata.topics and metadata.topics[topic].error is None:
        return
    wanted = config.errors_deadletterqueue_topic_replication_factor
    brokers = max(1, len(metadata.brokers))
    factor = min(wanted, brokers)
    if factor < wanted:
        log.warning(
            "dead-letter topic %s: errors.deadletterqueue.topic.replication.factor=%d but the "
            "cluster has %d broker(s); creating it with replication factor %d",
            topic,
            wanted,
            brokers,
            factor,
        )
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=1, replication_factor=factor)],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    try:
        futures[topic].result(timeout)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return
        raise FatalError(
            f"dead-letter topic {topic} does not exist and cannot be created ({exc}); create it "
            "or grant the sink's principal CREATE on it (errors.deadletterqueue.topic.name)"
        ) from exc
    log.info("dead-letter topic %s created (1 partition, replication factor %d)", topic, factor)


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
                ("__connect.errors.exception.class.name", EXCEPTION_CLASS),
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
