"""Session fixtures: a real Kafka broker and real S3 endpoints, started with ``s3sink.local``.

* ``kafka_bootstrap``: ``KAFKA_BOOTSTRAP_SERVERS`` if set, else the rig's own broker.
* ``kafka_broker``: the rig's own broker object (always ours, so tests may restart it; a test
  that stops it must start it again before it returns).
* ``second_bootstrap``: another cluster, for cross-cluster restores:
  ``KAFKA_SECOND_BOOTSTRAP_SERVERS`` if set, else ``second_broker``, a second broker of the rig
  (started once for the session, on first use).
* ``s3_endpoint``: ``S3_ENDPOINT_URL`` (+ ``AWS_*``) if set, else a moto server.
  ``s3_client`` and the function-scoped ``s3_bucket`` (a fresh bucket) build on it.
* ``minio_endpoint`` / ``minio_client`` / ``minio_bucket``: a MinIO server, whose conditional
  writes are atomic under concurrency (built once with ``go install`` and cached).

Tests using these fixtures are marked ``integration`` (and ``minio``) automatically, so
``pytest -m "not integration"`` runs the fast unit tests alone.

Figures the crash tests compute (``tests.rig.sinkproc.info`` / ``figures``) go to JSON reports
under ``.cache/test-reports/``; the terminal summary prints every report the session wrote.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from s3sink.local import KafkaBroker, MinioServer, MotoServer, S3Endpoint
from tests.rig.observe import Running
from tests.rig.s3 import create_bucket, endpoint_from_env
from tests.rig.s3 import s3_client as s3_client_for

if TYPE_CHECKING:
    from types import ModuleType

    from mypy_boto3_s3 import S3Client

_KAFKA = {"kafka_bootstrap", "kafka_broker", "second_bootstrap", "second_broker"}
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


# -- figures ---------------------------------------------------------------------------------


def _figures_rig() -> ModuleType | None:
    """The module that writes the figure reports, if a test of this session loaded it."""
    return sys.modules.get("tests.rig.sinkproc")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """A test that wrote figures gets its outcome in its report."""
    rig = _figures_rig()
    if rig is None or not (report.when == "call" or report.failed):
        return
    if rig.report_path(report.nodeid) in rig.written_reports:
        outcome: str = "xfailed" if hasattr(report, "wasxfail") else report.outcome
        if report.when != "call":
            outcome = f"{outcome} in {report.when}"
        rig.update_report(report.nodeid, outcome=outcome)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Every figure report this session wrote (CI logs show them; the JSON files stay)."""
    rig = _figures_rig()
    paths: list[Path] = list(rig.written_reports) if rig is not None else []
    if not paths:
        return
    terminalreporter.write_sep("=", "figures")
    root = Path(str(terminalreporter.config.rootpath))
    for path in paths:
        data = json.loads(path.read_text())
        shown = path.relative_to(root) if path.is_relative_to(root) else path
        outcome = data.get("outcome") or "unfinished"
        terminalreporter.write_line(f"{data['test']} ({outcome}) -> {shown}")
        for line in data.get("lines", []):
            terminalreporter.write_line(f"    {line}")
        values = data.get("figures") or {}
        if values:
            terminalreporter.write_line(
                "    figures: " + ", ".join(f"{k}={v}" for k, v in values.items())
            )


# -- Kafka -----------------------------------------------------------------------------------


def _broker(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[KafkaBroker]:
    broker = KafkaBroker(tmp_path_factory.mktemp(name), die_with_parent=True)
    broker.start()
    yield broker
    broker.stop()


def _bootstrap(request: pytest.FixtureRequest, env: str, fixture: str) -> str:
    """``$env`` if set (an external cluster), else the bootstrap of the rig's ``fixture``."""
    external = os.environ.get(env)
    if external:
        return external
    broker: KafkaBroker = request.getfixturevalue(fixture)
    return broker.bootstrap


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """The rig's own Apache Kafka broker (never an external one), running for the session."""
    yield from _broker(tmp_path_factory, "kafka-stack")


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest) -> str:
    """``bootstrap.servers`` of a real broker: ``$KAFKA_BOOTSTRAP_SERVERS`` or the rig's own."""
    return _bootstrap(request, "KAFKA_BOOTSTRAP_SERVERS", "kafka_broker")


@pytest.fixture(scope="session")
def second_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A second broker of the rig (another cluster), running for the rest of the session."""
    yield from _broker(tmp_path_factory, "kafka-second")


@pytest.fixture(scope="session")
def second_bootstrap(request: pytest.FixtureRequest) -> str:
    """``bootstrap.servers`` of another cluster: ``$KAFKA_SECOND_BOOTSTRAP_SERVERS`` or the
    rig's second broker."""
    return _bootstrap(request, "KAFKA_SECOND_BOOTSTRAP_SERVERS", "second_broker")


@pytest.fixture
def running() -> Iterator[list[Running]]:
    """Sinks a test starts with :class:`tests.rig.observe.Running`: closed after it."""
    started: list[Running] = []
    yield started
    for r in started:
        r.close()


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
