"""A real Apache Kafka broker (KRaft, one node as broker and controller) on loopback.

The broker's jars come from Maven Central through ``mvn dependency:copy-dependencies`` on a
tiny generated pom and are cached per Kafka version (:func:`ensure_kafka_jars`). A broker keeps
its configuration, data, logs and chosen ports in ``<state dir>/kafka``, so stopping and
starting it again on the same state directory keeps topics, records, committed offsets and,
when the port is still free, the bootstrap address.
"""

from __future__ import annotations

import base64
import importlib.resources
import logging
import os
import shlex
import shutil
import subprocess
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from s3sink.local.process import (
    LOOPBACK,
    ManagedProcess,
    pick_port,
    port_accepts,
    port_is_free,
    read_json,
    wait_until,
    write_json,
)
from s3sink.local.tools import (
    LocalStackError,
    cache_dir,
    file_lock,
    find_java,
    find_maven,
    tail,
)

KAFKA_VERSION = "4.1.2"
SCALA_VERSION = "2.13"
#: The log4j2 version Kafka 4.1.2 itself depends on; its SLF4J 1.7 binding must match it.
LOG4J_VERSION = "2.25.3"
DEPENDENCY_PLUGIN_VERSION = "3.8.1"
DEFAULT_HEAP_OPTS = "-Xmx512m -Xms128m"

_COMPLETE = ".complete"

log = logging.getLogger(__name__)


def kafka_jars_dir(version: str = KAFKA_VERSION) -> Path:
    return cache_dir() / "kafka" / version / "libs"


def ensure_kafka_jars(version: str = KAFKA_VERSION) -> Path:
    """The directory holding the broker's classpath; resolves it with Maven the first time.

    Reuses the cache on later calls without touching the network. Concurrent callers wait
    for one another. ``mvn`` honours ``MAVEN_OPTS`` (e.g. ``-Dmaven.repo.local=...``).
    """
    libs = kafka_jars_dir(version)
    home = libs.parent
    if (home / _COMPLETE).exists():
        return libs
    with file_lock(home.parent / f"{version}.lock"):
        if (home / _COMPLETE).exists():
            return libs
        mvn = find_maven()
        find_java()
        log.info("resolving Apache Kafka %s jars from Maven Central into %s (once)", version, home)
        work = home.parent / f"{version}.partial"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        pom = work / "pom.xml"
        pom.write_text(_render_pom(version))
        mvn_log = work / "mvn.log"
        argv = [
            mvn,
            "--batch-mode",
            "--no-transfer-progress",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={work / 'libs'}",
        ]
        with mvn_log.open("wb") as out:
            code = subprocess.run(
                argv, stdout=out, stderr=subprocess.STDOUT, cwd=work, check=False
            ).returncode
        jars = sorted((work / "libs").glob("*.jar"))
        if code != 0 or not any(j.name.startswith(f"kafka_{SCALA_VERSION}-") for j in jars):
            raise LocalStackError(
                f"could not resolve Apache Kafka {version} with Maven (exit {code}); is Maven "
                f"Central reachable? Full log: {mvn_log}\n{tail(mvn_log)}"
            )
        shutil.rmtree(home, ignore_errors=True)
        work.rename(home)
        (home / _COMPLETE).write_text(f"{len(jars)} jars\n")
    return libs


def _render_pom(version: str) -> str:
    template = importlib.resources.files("s3sink.local").joinpath("kafka-pom.xml").read_text()
    replacements = {
        "@KAFKA_VERSION@": version,
        "@SCALA_VERSION@": SCALA_VERSION,
        "@LOG4J_VERSION@": LOG4J_VERSION,
        "@DEPENDENCY_PLUGIN_VERSION@": DEPENDENCY_PLUGIN_VERSION,
    }
    for placeholder, value in replacements.items():
        template = template.replace(placeholder, value)
    return template


def new_cluster_id() -> str:
    """A Kafka cluster id: a random UUID in URL-safe base64 (as ``kafka-storage random-uuid``)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


def server_properties(
    *,
    port: int,
    controller_port: int,
    data_dir: Path,
    extra: Mapping[str, str] | None = None,
    listeners: Mapping[str, tuple[str, int]] | None = None,
) -> dict[str, str]:
    """The broker configuration: one node, loopback only, tuned for tests on a small machine.

    ``listeners`` adds client listeners beside ``PLAINTEXT``: name -> (security protocol, port),
    e.g. ``{"SASL_SSL": ("SASL_SSL", 9094)}``; their ``listener.name.<name>.*`` settings go in
    ``extra``.
    """
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"{LOOPBACK}:{controller_port}",
        "listeners": f"PLAINTEXT://{LOOPBACK}:{port},CONTROLLER://{LOOPBACK}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        # One node: every internal topic has a single replica.
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # After a crash (kill -9) the new incarnation cannot register until the old one's
        # session expires: keep that short so crash-restart tests take seconds, not ~10 s.
        "broker.heartbeat.interval.ms": "500",
        "broker.session.timeout.ms": "3000",
        # An archive under test must not lose old records (records with old timestamps
        # would otherwise be deleted after 7 days of *record* time).
        "log.retention.ms": "-1",
        "log.cleaner.dedupe.buffer.size": str(32 * 1024 * 1024),
    }
    for name, (protocol, lport) in (listeners or {}).items():
        props["listeners"] += f",{name}://{LOOPBACK}:{lport}"
        props["advertised.listeners"] += f",{name}://{LOOPBACK}:{lport}"
        props["listener.security.protocol.map"] += f",{name}:{protocol}"
    props.update(extra or {})
    return props


_LOG4J2 = """\
# Written by s3sink local; the broker's log goes to ${sys:kafka.logs.dir}/server.log.
status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.filePattern = ${sys:kafka.logs.dir}/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
"""


class KafkaBroker:
    """One Apache Kafka broker+controller on loopback, its files under ``state_dir/kafka``.

    ``start()`` reuses a broker of this state directory that already runs (idempotent);
    ``stop()`` stops it gracefully (``kill=True``: SIGKILL, as a crash); ``restart()`` both.
    With ``die_with_parent`` the broker is killed when the starting process dies (test rigs).
    ``extra_listeners`` (name -> security protocol, e.g. ``{"SASL_SSL": "SASL_SSL"}``) opens
    more client listeners on their own ports (:meth:`listener_bootstrap`); configure them with
    ``listener.name.<name lower-cased>.*`` keys in ``extra_config``.
    """

    def __init__(
        self,
        state_dir: Path | str,
        port: int | None = None,
        *,
        version: str = KAFKA_VERSION,
        heap_opts: str | None = None,
        extra_config: Mapping[str, str] | None = None,
        die_with_parent: bool = False,
        extra_listeners: Mapping[str, str] | None = None,
    ) -> None:
        self.home = Path(state_dir).resolve() / "kafka"
        self.version = version
        self.heap_opts = heap_opts or os.environ.get("KAFKA_HEAP_OPTS") or DEFAULT_HEAP_OPTS
        self.extra_config = dict(extra_config or {})
        self.extra_listeners = dict(extra_listeners or {})
        self.die_with_parent = die_with_parent
        self.data_dir = self.home / "data"
        self.logs_dir = self.home / "logs"
        self.config_path = self.home / "server.properties"
        self.state_path = self.home / "kafka.json"
        self.process = ManagedProcess("kafka", self.home)
        self._requested_port = port

    # -- addresses ---------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return read_json(self.state_path)

    @property
    def port(self) -> int:
        port = self._state().get("port")
        if not isinstance(port, int):
            raise LocalStackError(f"the Kafka broker in {self.home} was never started")
        return port

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:<port>`` for ``bootstrap.servers``."""
        return f"{LOOPBACK}:{self.port}"

    def listener_bootstrap(self, name: str) -> str:
        """``127.0.0.1:<port>`` of the extra listener ``name``."""
        ports = self._state().get("listener_ports") or {}
        port = ports.get(name) if isinstance(ports, dict) else None
        if not isinstance(port, int):
            raise LocalStackError(f"the Kafka broker in {self.home} has no listener {name}")
        return f"{LOOPBACK}:{port}"

    @property
    def log_path(self) -> Path:
        return self.logs_dir / "server.log"

    def running(self) -> bool:
        return self.process.running()

    def pid(self) -> int | None:
        return self.process.pid()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> KafkaBroker:
        """Start the broker (or adopt the one running on this state dir); wait until it answers."""
        self.home.mkdir(parents=True, exist_ok=True)
        with file_lock(self.home / ".lock"):
            if not self.process.running():
                self._launch()
            wait_until(self._answers, timeout=timeout, process=self.process, what="answer")
            # From now on this object keeps its address: a restart fails loudly rather than
            # moving to another port behind the back of clients holding the bootstrap string.
            self._requested_port = self.port
        return self

    def stop(self, *, kill: bool = False, timeout: float = 60.0) -> bool:
        """Stop the broker; returns whether it was running. Data and ports stay recorded."""
        with file_lock(self.home / ".lock"):
            return self.process.stop(timeout=timeout, kill=kill)

    def restart(self, *, kill: bool = False, timeout: float = 120.0) -> KafkaBroker:
        self.stop(kill=kill)
        return self.start(timeout=timeout)

    def purge(self) -> None:
        """Stop the broker and delete its data, logs and configuration."""
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)

    def _launch(self) -> None:
        libs = ensure_kafka_jars(self.version)
        java = find_java()
        state = self._state()
        recorded_port = state.get("port") if isinstance(state.get("port"), int) else None
        if self._requested_port is not None:
            port = self._requested_port
            if not port_is_free(port):
                raise LocalStackError(
                    f"port {port} for Kafka is in use by another process; stop it or choose "
                    "another port"
                )
        else:
            port = pick_port(recorded_port)
        controller_port = pick_port(state.get("controller_port"), taken=[port])
        if recorded_port is not None and port != recorded_port:
            log.warning("port %d is taken, Kafka moves to port %d", recorded_port, port)
        recorded_listeners = state.get("listener_ports")
        if not isinstance(recorded_listeners, dict):
            recorded_listeners = {}
        taken = [port, controller_port]
        listener_ports: dict[str, int] = {}
        for name in self.extra_listeners:
            listener_ports[name] = pick_port(recorded_listeners.get(name), taken=taken)
            taken.append(listener_ports[name])
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        props = server_properties(
            port=port,
            controller_port=controller_port,
            data_dir=self.data_dir,
            extra=self.extra_config,
            listeners={n: (p, listener_ports[n]) for n, p in self.extra_listeners.items()},
        )
        self.config_path.write_text(
            "# Written by s3sink local; regenerated on every start.\n"
            + "".join(f"{key}={value}\n" for key, value in props.items())
        )
        log4j = self.home / "log4j2.properties"
        log4j.write_text(_LOG4J2)
        jvm = [
            java,
            *shlex.split(self.heap_opts),
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile=file:{log4j}",
            f"-Dkafka.logs.dir={self.logs_dir}",
            "-cp",
            f"{libs}/*",
        ]
        cluster_id = state.get("cluster_id")
        if not (self.data_dir / "meta.properties").exists():
            cluster_id = new_cluster_id()
            fmt = subprocess.run(
                [*jvm, "kafka.tools.StorageTool", "format", "-t", cluster_id,
                 "-c", str(self.config_path), "--standalone"],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if fmt.returncode != 0:
                raise LocalStackError(
                    f"formatting Kafka storage in {self.data_dir} failed: "
                    f"{(fmt.stderr or fmt.stdout).strip()}"
                )
        write_json(
            self.state_path,
            {"port": port, "controller_port": controller_port, "cluster_id": cluster_id,
             "version": self.version, "listener_ports": listener_ports},
        )  # fmt: skip
        self.process.spawn(
            [*jvm, "kafka.Kafka", str(self.config_path)],
            markers=["kafka.Kafka", str(self.config_path)],
            cwd=self.home,
            die_with_parent=self.die_with_parent,
        )

    def _answers(self) -> bool:
        """True once the broker answers a metadata request on its client port."""
        port = self.port
        if not port_accepts(port):
            return False
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": f"{LOOPBACK}:{port}", "log_level": 3})
        try:
            metadata = admin.list_topics(timeout=5)
        except Exception:  # KafkaException while the broker finishes starting
            return False
        return bool(metadata.brokers)

    def describe(self) -> str:
        pid = self.pid()
        if pid is None:
            return f"kafka: stopped (state in {self.home})"
        return f"kafka: running, pid {pid}, bootstrap {self.bootstrap}, logs {self.log_path}"
