"""Logs: JSON lines off a terminal, text on one; topic and partition as fields on every line
about a partition; no secret ever in logs, errors, ``config check`` or ``/metrics``."""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from s3sink.config import parse
from s3sink.errors import FencedError
from s3sink.logs import (
    REDACTED,
    JsonFormatter,
    PartitionName,
    Scrubber,
    TextFormatter,
    scrub,
    secret_values,
    use_json,
)
from tests.rig.kafka import create_topic, produce_n, unique_name
from tests.rig.observe import get, listen_address, scrape, wait_for
from tests.rig.s3 import S3Endpoint
from tests.rig.sinkproc import SinkProcess, write_config

ROOT = Path(__file__).resolve().parents[1]


def _record(msg: str, *args: object, **kw: object) -> logging.LogRecord:
    rec = logging.LogRecord("s3sink.test", logging.INFO, __file__, 1, msg, args, None)
    rec.__dict__.update(kw)
    return rec


# -- units -------------------------------------------------------------------------------------


def test_format_choice_follows_the_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert use_json("auto", io.StringIO())
    assert not use_json("auto", Tty())
    assert use_json("json", Tty())
    assert not use_json("text", io.StringIO())


def test_text_on_a_real_terminal_json_on_a_pipe() -> None:
    code = (
        "import logging; from s3sink.logs import setup_logging; setup_logging('auto'); "
        "logging.getLogger('s3sink.t').info('hello %s', 'there')"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    piped = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    rec = json.loads(piped.stderr)
    assert rec["msg"] == "hello there"
    assert rec["level"] == "info"
    assert rec["logger"] == "s3sink.t"

    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=follower, stdout=follower, stderr=follower, env=env
        )
        os.close(follower)
        out = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        assert proc.wait(30) == 0
    finally:
        os.close(leader)
    line = out.decode().strip()
    assert not line.startswith("{"), line
    assert line.endswith("INFO s3sink.t: hello there"), line


def test_partition_fields_from_the_name_extra_or_exception() -> None:
    fmt = JsonFormatter()
    tp = PartitionName("orders-eu", 7)
    assert tp == "orders-eu-7"
    out = json.loads(fmt.format(_record("%s: committed seq %d", tp, 3)))
    assert out["msg"] == "orders-eu-7: committed seq 3"
    assert (out["topic"], out["partition"]) == ("orders-eu", 7)
    out = json.loads(fmt.format(_record("rolled", topic="t", partition=0)))
    assert (out["topic"], out["partition"]) == ("t", 0)
    rec = _record("fenced")
    try:
        raise FencedError("pay", 2, "slot taken")
    except FencedError:
        rec.exc_info = sys.exc_info()
    out = json.loads(fmt.format(rec))
    assert (out["topic"], out["partition"]) == ("pay", 2)
    assert "slot taken" in out["exc"]
    out = json.loads(fmt.format(_record("assigned %d partition(s)", 3)))
    assert "topic" not in out
    assert "partition" not in out
    # text stays readable: the partition is in the message
    text = TextFormatter().format(_record("%s: committed", tp))
    assert "orders-eu-7: committed" in text


def test_scrubber_removes_secrets_raw_and_json_escaped() -> None:
    s = Scrubber(['pa"ss\\wörd', "abc"])  # too short to scrub: would match everywhere
    assert s('x pa"ss\\wörd y') == f"x {REDACTED} y"
    assert s(json.dumps({"m": 'pa"ss\\wörd'})) == json.dumps({"m": REDACTED})
    assert s(json.dumps({"m": 'pa"ss\\wörd'}, ensure_ascii=False)) == json.dumps({"m": REDACTED})
    assert s("abc") == "abc"


def test_secret_values_of_a_config() -> None:
    cfg = parse(
        {
            "topics": "t",
            "bootstrap.servers": "b:9092",
            "storage.url": "s3://bucket/prefix",
            "aws.access.key.id": "AKIAEXAMPLE",
            "aws.secret.access.key": "aws-secret-value",
            "consumer.security.protocol": "SASL_SSL",
            "consumer.sasl.mechanism": "SCRAM-SHA-512",
            "consumer.sasl.username": "alice",
            "consumer.sasl.password": "kafka-password",
            "consumer.ssl.key.password": "key-password",
            "consumer.sasl.jaas.config": "x required password='jaas-pw';",
            "value.converter.basic.auth.user.info": "bob:registry-pw",
        },
        environ={},
    )
    found = set(secret_values(cfg))
    assert {"aws-secret-value", "kafka-password", "key-password", "registry-pw"} <= found
    assert "x required password='jaas-pw';" in found
    assert not {"SCRAM-SHA-512", "alice", "SASL_SSL"} & found


# -- the real thing ------------------------------------------------------------------------------


def test_run_logs_json_with_partitions_and_never_a_secret(
    kafka_bootstrap: str, s3_endpoint: S3Endpoint, s3_bucket: str, tmp_path: Path
) -> None:
    topic = create_topic(kafka_bootstrap, 2)

    def value(i: int) -> bytes:
        return b"{broken" if i % 40 == 5 else json.dumps({"id": i, "n": i % 3}).encode()

    produce_n(kafka_bootstrap, topic, 400, value=value, partition=lambda i: i % 2)
    password = f"kafka-PASSWORD-{uuid.uuid4().hex}"
    listen = listen_address()
    config = {
        "name": unique_name("logs"),
        "topics": topic,
        "bootstrap.servers": kafka_bootstrap,
        "value.converter": "json",
        "partitioner.class": "field",
        "partition.field.name": "n",
        "format.class": "json",
        "flush.size": "50",
        "errors.tolerance": "all",
        "log.level": "DEBUG",
        "log.format": "auto",
        "http.listen": listen,
        "consumer.sasl.username": "alice",
        "consumer.sasl.password": password,
        "consumer.statistics.interval.ms": "500",
        "s3.bucket.name": s3_bucket,
        "store.url": s3_endpoint.url,
        "s3.region": s3_endpoint.region,
        "s3.path.style.access.enabled": "true",
        "aws.access.key.id": s3_endpoint.access_key,
        "aws.secret.access.key": s3_endpoint.secret_key,
    }
    secrets = [password, s3_endpoint.secret_key]
    with SinkProcess(config, tmp_path, "logs") as proc:
        proc.start()
        metrics = wait_for(
            "every record consumed",
            lambda: scrape(listen),
            lambda s: s.value("records_consumed_total") == 400,
        )
        health = get(listen, "/healthz")
        ready = get(listen, "/readyz")
        assert proc.terminate(60) == 0
        text = proc.text()
    assert (health, ready) == ((200, "ok\n"), (200, "ready\n"))
    for secret in secrets:
        assert secret not in text
        assert secret not in metrics.text
        assert json.dumps(secret)[1:-1] not in text

    lines = [line for line in text.splitlines() if line and not line.startswith("--- start")]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert {"ts", "level", "logger", "msg"} <= set(records[0])
    about = [r for r in records if f"{topic}-" in r["msg"]]
    assert about, "no log line about a partition"
    for r in about:
        assert r.get("topic") == topic, r
        assert r.get("partition") in (0, 1), r
    msgs = " | ".join(r["msg"] for r in about)
    for what in ("took over", "rolling", "committed seq", "bad record"):
        assert what in msgs, what
    assert any("SIGTERM" in r["msg"] for r in records)


def test_config_check_and_errors_never_show_secrets(tmp_path: Path) -> None:
    password = f"kafka-PASSWORD-{uuid.uuid4().hex}"
    aws = f"aws-SECRET-{uuid.uuid4().hex}"
    config = {
        "name": "redaction",
        "topics": "t",
        "bootstrap.servers": "127.0.0.1:1",
        "storage.url": tmp_path.as_uri(),
        "aws.access.key.id": "AKIAEXAMPLE",
        "aws.secret.access.key": aws,
        "consumer.security.protocol": "SASL_SSL",
        "consumer.sasl.mechanism": "PLAIN",
        "consumer.sasl.username": "alice",
        "consumer.sasl.password": password,
    }
    path = write_config(tmp_path / "c.json", config)
    env = {k: v for k, v in os.environ.items() if not k.startswith("S3SINK_")}

    def s3sink(*args: str, extra_env: dict[str, str] | None = None) -> tuple[int, str]:
        r = subprocess.run(
            [sys.executable, "-m", "s3sink", *args],
            capture_output=True,
            text=True,
            env={**env, **(extra_env or {})},
            timeout=60,
            check=False,
        )
        return r.returncode, r.stdout + r.stderr

    code, out = s3sink("config", "check", "-c", str(path))
    assert code == 0, out
    assert f"consumer.sasl.password={REDACTED}" in out
    assert f"aws.secret.access.key={REDACTED}" in out
    # a secret given on the command line or in the environment is redacted the same way
    code, out2 = s3sink(
        "config", "check", "-c", str(path), "-s", f"consumer.ssl.key.password={password}x",
        extra_env={"S3SINK_CONSUMER_SASL_OAUTHBEARER_CLIENT_SECRET": f"{aws}y"},
    )  # fmt: skip
    assert code == 0, out2
    # errors: a bad value next to the secrets names the key, never a secret
    code, out3 = s3sink("config", "check", "-c", str(path), "-s", "flush.size=lots")
    assert code == 2
    assert "flush.size" in out3
    code, out4 = s3sink("verify", "-c", str(path), "-s", "aws.access.key.id=")
    for o in (out, out2, out3, out4):
        assert password not in o
        assert aws not in o


def test_uncaught_errors_are_logged_scrubbed() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("s3sink.test.scrub")
    logger.addHandler(handler)
    logger.propagate = False
    scrub.add(["hunter2-but-longer"])
    try:
        try:
            raise RuntimeError("connect failed with password hunter2-but-longer")
        except RuntimeError:
            logger.exception("boom %s", "hunter2-but-longer")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert "hunter2-but-longer" not in out
    assert out.count(REDACTED) >= 2
    rec = json.loads(out)
    assert rec["msg"] == f"boom {REDACTED}"


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_kafka_client_logs_go_through_the_formatter(fmt: str) -> None:
    """librdkafka's own lines (logger=s3sink.kafka) are formatted and scrubbed like ours."""
    code = (
        "import logging, sys; from s3sink.logs import setup_logging; "
        f"setup_logging('{fmt}', 'DEBUG', ['sasl-secret-xyz']); "
        "from confluent_kafka import Producer; "
        "p = Producer({'bootstrap.servers': '127.0.0.1:1', 'sasl.password': 'sasl-secret-xyz', "
        "'debug': 'conf', 'log_level': 7}, logger=logging.getLogger('s3sink.kafka')); "
        "p.poll(0.5); p.flush(0.1)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert "sasl-secret-xyz" not in r.stderr + r.stdout
    kafka_lines = [line for line in r.stderr.splitlines() if "s3sink.kafka" in line]
    assert kafka_lines, r.stderr[-2000:]
    if fmt == "json":
        assert all(json.loads(line)["logger"] == "s3sink.kafka" for line in kafka_lines)
