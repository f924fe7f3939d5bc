"""The local stack: a real Apache Kafka broker and an S3 endpoint on loopback.

Used by ``s3sink local up|down|status`` and by the test rig (``tests/conftest.py``), so demos,
tests and benchmarks all run against the same real components::

    broker = KafkaBroker(state_dir).start()      # broker.bootstrap -> "127.0.0.1:<port>"
    s3 = MotoServer(state_dir).start()           # or MinioServer; s3.endpoint -> S3Endpoint
    ...
    broker.stop(); s3.stop()

:func:`ensure_kafka_jars` and :func:`ensure_minio_binary` only download or build into the cache
(``$S3SINK_CACHE_DIR``, default ``~/.cache/s3sink``).
"""

from s3sink.local.kafka import KAFKA_VERSION, KafkaBroker, ensure_kafka_jars
from s3sink.local.s3 import (
    MINIO_VERSION,
    MinioServer,
    MotoServer,
    S3Endpoint,
    S3Kind,
    S3Server,
    ensure_minio_binary,
    s3_server,
)
from s3sink.local.stack import LocalStack, StackEnv
from s3sink.local.tools import LocalStackError, cache_dir

__all__ = [
    "KAFKA_VERSION",
    "MINIO_VERSION",
    "KafkaBroker",
    "LocalStack",
    "LocalStackError",
    "MinioServer",
    "MotoServer",
    "S3Endpoint",
    "S3Kind",
    "S3Server",
    "StackEnv",
    "cache_dir",
    "ensure_kafka_jars",
    "ensure_minio_binary",
    "s3_server",
]
