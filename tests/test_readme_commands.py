"""The README's commands, run as a user would: the quick start's sink.properties against the
rig's broker and S3 endpoint (addresses swapped through S3SINK_* variables, as the README says),
then every ``s3sink`` line of the quick start and of the querying section."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.rig.kafka import create_topic, produce_n
from tests.rig.s3 import S3Endpoint

README = Path(__file__).resolve().parent.parent / "README.md"


def _block_after(heading: str) -> str:
    text = README.read_text()
    start = text.index(heading)
    m = re.search(r"```sh\n(.*?)```", text[start:], re.S)
    assert m is not None, f"no sh block after {heading}"
    return m.group(1)


def _s3sink_lines(block: str) -> list[list[str]]:
    lines = []
    for line in block.splitlines():
        if line.startswith("s3sink "):
            lines.append(shlex.split(line.split("#", 1)[0]))
    return lines


@pytest.mark.slow
def test_readme_quick_start_and_query_commands(
    kafka_bootstrap: str, s3_endpoint: S3Endpoint, s3_bucket: str, tmp_path: Path
) -> None:
    quick = _block_after("## Quick start with your own cluster")
    props = re.search(r"cat > sink.properties <<'CONF'\n(.*?)\nCONF", quick, re.S)
    assert props is not None
    (tmp_path / "sink.properties").write_text(props.group(1) + "\n")

    topic = create_topic(kafka_bootstrap, 2, prefix="orders")
    hour = 3_600_000
    base = 1_767_225_600_000
    produce_n(
        kafka_bootstrap,
        topic,
        500,
        value=lambda i: json.dumps({"id": i, "amount": i / 4, "country": "FR"}).encode(),
        timestamp_ms=lambda i: base + (i % 2) * hour,
    )
    env = {
        **os.environ,
        "S3SINK_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "S3SINK_TOPICS": topic,
        "S3SINK_S3_BUCKET_NAME": s3_bucket,
        "S3SINK_STORE_URL": s3_endpoint.url,
        "S3SINK_S3_PATH_STYLE_ACCESS_ENABLED": "true",
        "S3SINK_HTTP_LISTEN": "127.0.0.1:0",
        "AWS_ACCESS_KEY_ID": s3_endpoint.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_endpoint.secret_key,
    }
    commands = _s3sink_lines(quick) + _s3sink_lines(_block_after("### Querying: Athena"))
    assert [c[1] for c in commands] == ["config", "catchup", "run", "verify", "ddl", "ddl", "ddl"]
    outputs: dict[str, str] = {}
    for argv in commands:
        cmd = [sys.executable, "-m", "s3sink", *argv[1:]]
        if argv[1] == "run":
            proc = subprocess.Popen(
                cmd,
                cwd=tmp_path,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            time.sleep(8)
            proc.send_signal(signal.SIGTERM)
            _out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err[-2000:]
            continue
        done = subprocess.run(
            cmd, check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
        )
        assert done.returncode == 0, f"{argv}: {done.stderr[-2000:]}"
        outputs[" ".join(argv[1:])] = done.stdout
    assert "format.class=parquet" in outputs["config check -c sink.properties"]
    assert "catch-up done: 500 records" in outputs["catchup -c sink.properties"]
    assert ": OK" in outputs["verify -c sink.properties"]
    athena = outputs["ddl -c sink.properties --engine athena"]
    assert "CREATE EXTERNAL TABLE" in athena and "projection.enabled" in athena
    assert "USING parquet" in outputs["ddl -c sink.properties --engine spark"]
    assert "partitioned_by" in outputs["ddl -c sink.properties --engine trino"]


@pytest.mark.slow
def test_make_demo_runs_the_main_job(tmp_path: Path) -> None:
    """``make demo`` runs ``s3sink demo``: its own local stack, sample data, catch-up, verify
    and a DuckDB query over the output; ``s3sink local down`` stops the stack."""
    makefile = (README.parent / "Makefile").read_text()
    assert re.search(r"^demo: .*\n\t\$\(BIN\)/s3sink demo$", makefile, re.M)
    state = tmp_path / "stack"
    demo = [sys.executable, "-m", "s3sink", "demo", "--records", "3000", "--state-dir", str(state)]
    try:
        done = subprocess.run(demo, check=False, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "catch-up done: 3000 records" in done.stdout
        assert "3 partitions, 3000 records committed: OK" in done.stdout
        assert "total rows 3,000, distinct ids 3,000" in done.stdout
    finally:
        down = [
            sys.executable,
            "-m",
            "s3sink",
            "local",
            "down",
            "--state-dir",
            str(state),
            "--purge",
        ]
        subprocess.run(down, check=False, capture_output=True, timeout=120)
