"""Session fixtures: a real Kafka broker and real S3 endpoints, started with ``s3sink.local``.

* ``kafka_bootstrap``: ``KAFKA_BOOTSTRAP_SERVERS`` if set, else the rig's own broker.
* ``kafka_broker``: the rig's own broker object (always ours, so tests may restart it; a test
  that stops it must start it again before it returns).
* ``s3_endpoint``: ``S3_ENDPOINT_URL`` (+ ``AWS_*``) if set, else a moto server.
  ``s3_client`` and the function-scoped ``s3_bucket`` (a fresh bucket) build on it.
* ``minio_endpoint`` / ``minio_client`` / ``minio_bucket``: a MinIO server, whose conditional
  writes are atomic under concurrency (built once with ``go install`` and cached).

Tests using these fixtures are marked ``integration`` (and ``minio``) automatically, so
``pytest -m "not integration"`` runs the fast unit tests alone.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from s3sink.local import KafkaBroker, MinioServer, MotoServer, S3Endpoint
from tests.rig.s3 import create_bucket, endpoint_from_env
from tests.rig.s3 import s3_client as s3_client_for

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_KAFKA = {"kafka_bootstrap", "kafka_broker"}
_S3 = {"s3_endpoint", "s3_client", "s3_bucket"}
_MINIO = {"minio_endpoint", "minio_client", "minio_bucket"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by the real components they use (before ``-m`` selects)."""
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if used & (_KAFKA | _S3 | _MINIO):
            item.add_marker(pytest.mark.integration)
        if used & _MINIO:
            item.add_marker(pytest.mark.minio)


# -- Kafka -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """The rig's own Apache Kafka broker (never an external one), running for the session."""
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka-stack"), die_with_parent=True)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest) -> str:
    """``bootstrap.servers`` of a real broker: ``$KAFKA_BOOTSTRAP_SERVERS`` or the rig's own."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        return external
    broker: KafkaBroker = request.getfixturevalue("kafka_broker")
    return broker.bootstrap


# -- S3 --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """A real S3 HTTP endpoint: ``$S3_ENDPOINT_URL`` or a moto server for the session."""
    external = endpoint_from_env()
    if external is not None:
        yield external
        return
    server = MotoServer(tmp_path_factory.mktemp("moto-stack"), die_with_parent=True).start()
    yield server.endpoint
    server.stop()


@pytest.fixture(scope="session")
def s3_client(s3_endpoint: S3Endpoint) -> S3Client:
    return s3_client_for(s3_endpoint)


@pytest.fixture
def s3_bucket(s3_endpoint: S3Endpoint) -> str:
    """A new, empty bucket on ``s3_endpoint`` for this test."""
    return create_bucket(s3_endpoint)


@pytest.fixture(scope="session")
def minio_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """A MinIO server for the session (atomic conditional writes, for race tests)."""
    server = MinioServer(tmp_path_factory.mktemp("minio-stack"), die_with_parent=True).start()
    yield server.endpoint
    server.stop()


@pytest.fixture(scope="session")
def minio_client(minio_endpoint: S3Endpoint) -> S3Client:
    return s3_client_for(minio_endpoint)


@pytest.fixture
def minio_bucket(minio_endpoint: S3Endpoint) -> str:
    """A new, empty bucket on ``minio_endpoint`` for this test."""
    return create_bucket(minio_endpoint)
