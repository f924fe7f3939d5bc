"""Fast unit tests of the local stack's plumbing: tools, ports, pid files, configuration."""

from __future__ import annotations

import os
import re
import socket
import sys
from pathlib import Path

import pytest

from s3sink.cli import main
from s3sink.local.kafka import (
    KAFKA_VERSION,
    ensure_kafka_jars,
    kafka_jars_dir,
    new_cluster_id,
    server_properties,
)
from s3sink.local.process import LOOPBACK, ManagedProcess, pick_port, port_is_free
from s3sink.local.stack import StackEnv
from s3sink.local.tools import LocalStackError, cache_dir, find_go, find_java, find_maven


@pytest.fixture
def no_tools(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No java, mvn or go on PATH, and an empty cache."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("S3SINK_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


@pytest.mark.parametrize(
    ("find", "tool", "install"),
    [(find_java, "Java", "openjdk-17"), (find_maven, "Maven", "maven"), (find_go, "Go", "go.dev")],
)
def test_missing_tools_fail_with_one_line_naming_what_to_install(
    no_tools: Path, find: object, tool: str, install: str
) -> None:
    assert callable(find)
    with pytest.raises(LocalStackError) as err:
        find()
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{tool} is not installed")
    assert install in message


def test_local_up_without_maven_exits_2_with_one_line_and_starts_nothing(
    no_tools: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = no_tools / "state"
    assert main(["local", "up", "--state-dir", str(state)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip().splitlines() == [err.strip()]
    assert "Maven is not installed" in err
    assert not list(state.glob("*/*.pid")), "nothing was started"


def _cached_jar_set(complete: bool) -> tuple[Path, dict[str, bytes]]:
    """A jar set in the (empty) cache as ``ensure_kafka_jars`` leaves it, with or without the
    marker of a finished resolution."""
    libs = kafka_jars_dir()
    libs.mkdir(parents=True)
    jars = {
        f"kafka_2.13-{KAFKA_VERSION}.jar": b"broker",
        f"kafka-clients-{KAFKA_VERSION}.jar": b"clients",
        "log4j-core-2.25.3.jar": b"log4j",
    }
    for name, data in jars.items():
        (libs / name).write_bytes(data)
    if complete:
        (libs.parent / ".complete").write_text(f"{len(jars)} jars\n")
    return libs, jars


def test_a_complete_jar_cache_is_reused_without_maven(no_tools: Path) -> None:
    libs, jars = _cached_jar_set(complete=True)
    # no mvn (nor java) on PATH: resolving again would fail with "Maven is not installed"
    assert ensure_kafka_jars() == libs
    assert ensure_kafka_jars(KAFKA_VERSION) == libs
    assert {p.name: p.read_bytes() for p in libs.iterdir()} == jars, "the cache was rebuilt"
    assert not list(libs.parent.parent.glob("*.partial")), "a resolution was started"


def test_an_unfinished_jar_cache_is_resolved_again(no_tools: Path) -> None:
    """Jars without the marker (an interrupted resolution) are not trusted: Maven runs again,
    so with no ``mvn`` on PATH the same cache fails with the one-line message."""
    _cached_jar_set(complete=False)
    with pytest.raises(LocalStackError, match=r"^Maven is not installed"):
        ensure_kafka_jars()


def test_cache_dir_honours_the_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("S3SINK_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("S3SINK_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "s3sink"


def test_cluster_ids_look_like_kafka_uuids() -> None:
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for cluster_id in ids:
        assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", cluster_id), cluster_id


def test_server_properties_make_a_single_node_kraft_broker_on_loopback(tmp_path: Path) -> None:
    props = server_properties(
        port=9092, controller_port=9093, data_dir=tmp_path, extra={"num.partitions": "3"}
    )
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:9093"
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "share.coordinator.state.topic.min.isr",
    ):
        assert props[key] == "1", key
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["log.dirs"] == str(tmp_path)
    assert props["num.partitions"] == "3", "extra settings override the defaults"


def test_pick_port_keeps_a_free_preferred_port_and_avoids_a_taken_one() -> None:
    with socket.socket() as holder:
        holder.bind((LOOPBACK, 0))
        holder.listen()
        taken = holder.getsockname()[1]
        assert not port_is_free(taken)
        other = pick_port(taken)
        assert other != taken
    assert pick_port(other) == other
    assert pick_port(other, taken=[other]) != other


def test_a_pid_file_pointing_at_a_foreign_process_is_never_signalled(tmp_path: Path) -> None:
    proc = ManagedProcess("kafka", tmp_path)
    # Our own pid is alive but its command line lacks the marker: not ours to stop.
    proc.pid_path.write_text(f'{{"pid": {os.getpid()}, "markers": ["kafka.Kafka", "{tmp_path}"]}}')
    assert proc.pid() is None
    assert proc.stop() is False
    assert not proc.pid_path.exists()


def test_spawned_process_is_tracked_and_stopped(tmp_path: Path) -> None:
    proc = ManagedProcess("sleeper", tmp_path)
    marker = f"# {tmp_path}"
    pid = proc.spawn(
        [sys.executable, "-c", "import time; time.sleep(60)", marker], markers=[marker]
    )
    assert proc.pid() == pid
    # A second supervisor reading the same pid file (a later `s3sink local down`) sees it too.
    assert ManagedProcess("sleeper", tmp_path).pid() == pid
    assert proc.stop(timeout=10) is True
    assert proc.pid() is None
    assert not proc.pid_path.exists()


def test_stack_env_lines_are_shell_safe() -> None:
    from s3sink.local.s3 import S3Endpoint

    env = StackEnv("127.0.0.1:1", S3Endpoint("http://127.0.0.1:2", "key", "se cret'$x"))
    lines = env.shell_lines()
    assert lines[0] == "export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:1"
    assert lines[3] == "export AWS_SECRET_ACCESS_KEY='se cret'\"'\"'$x'"
