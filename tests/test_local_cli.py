"""``s3sink local up|status|down`` as a user runs it: separate processes, eval-able output."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from s3sink.local.s3 import S3Endpoint
from tests.rig.kafka import consume, create_topic, produce_n
from tests.rig.s3 import create_bucket, s3_client

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
EXPORTED = [
    "KAFKA_BOOTSTRAP_SERVERS",
    "S3_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL_S3",
]


def local(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    for name in EXPORTED:  # the CLI must not depend on an environment pointing elsewhere
        env.pop(name, None)
    result = subprocess.run(
        [sys.executable, "-m", "s3sink", "local", *args],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    if check and result.returncode != 0:
        raise AssertionError(f"s3sink local {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stderr}")  # fmt: skip
    return result


def exports(stdout: str) -> dict[str, str]:
    """Parse ``export NAME=value`` lines; every stdout line must be one (stdout is eval-able)."""
    out: dict[str, str] = {}
    for line in stdout.splitlines():
        words = shlex.split(line)
        assert len(words) == 2 and words[0] == "export", f"not an export line: {line!r}"
        name, _, value = words[1].partition("=")
        out[name] = value
    return out


def pids(state_dir: Path) -> dict[str, int]:
    found = {}
    for pid_file in state_dir.glob("*/*.pid"):
        found[pid_file.stem] = json.loads(pid_file.read_text())["pid"]
    return found


def gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        stat = Path(f"/proc/{pid}/stat")
        if stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return True  # exited; its parent has not reaped it yet
        time.sleep(0.1)
    return False


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "stack"
    yield directory
    local("down", "--purge", "--state-dir", str(directory), check=False)


def test_up_status_down_with_moto(state_dir: Path) -> None:
    up = local("up", "--state-dir", str(state_dir))
    env = exports(up.stdout)
    assert list(env) == EXPORTED
    assert env["KAFKA_BOOTSTRAP_SERVERS"].startswith("127.0.0.1:")
    assert env["S3_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    # A shell can eval it.
    shell = subprocess.run(
        ["bash", "-c", 'eval "$1"; echo "$KAFKA_BOOTSTRAP_SERVERS $S3_ENDPOINT_URL"', "-",
         up.stdout],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert shell.stdout.split() == [env["KAFKA_BOOTSTRAP_SERVERS"], env["S3_ENDPOINT_URL"]]

    # The printed variables reach a working broker and a working S3 endpoint.
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    topic = create_topic(bootstrap, partitions=2)
    produce_n(bootstrap, topic, 10)
    assert len(consume(bootstrap, topic)) == 10
    endpoint = S3Endpoint(
        env["S3_ENDPOINT_URL"], env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"],
        env["AWS_DEFAULT_REGION"],
    )  # fmt: skip
    bucket = create_bucket(endpoint)
    s3_client(endpoint).put_object(Bucket=bucket, Key="hello", Body=b"world")
    # A plain boto3 client configured only by the exported environment finds it too.
    plain = subprocess.run(
        [sys.executable, "-c", "import boto3, sys; b = boto3.client('s3').get_object("
         "Bucket=sys.argv[1], Key='hello')['Body'].read(); sys.stdout.write(b.decode())", bucket],
        env={**os.environ, **env}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert plain.stdout == "world"

    # up is idempotent: same processes, same output.
    running = pids(state_dir)
    assert set(running) == {"kafka", "moto"}
    again = local("up", "--state-dir", str(state_dir))
    assert exports(again.stdout) == env
    assert pids(state_dir) == running

    status = local("status", "--state-dir", str(state_dir))
    assert f"bootstrap {bootstrap}" in status.stdout
    assert f"endpoint {env['S3_ENDPOINT_URL']}" in status.stdout

    down = local("down", "--state-dir", str(state_dir))
    assert "stopped moto, kafka" in down.stderr
    for name, pid in running.items():
        assert gone(pid), f"{name} (pid {pid}) still runs after down"
    assert local("status", "--state-dir", str(state_dir), check=False).returncode == 3

    # down + up on the same state dir: same address, the topic and its records are still there.
    back = exports(local("up", "--state-dir", str(state_dir)).stdout)
    assert back["KAFKA_BOOTSTRAP_SERVERS"] == bootstrap
    assert sorted(r.value or b"" for r in consume(bootstrap, topic)) == sorted(
        b"value-%d" % i for i in range(10)
    )
    restarted = pids(state_dir)
    local("down", "--purge", "--state-dir", str(state_dir))
    for name, pid in restarted.items():
        assert gone(pid), f"{name} (pid {pid}) still runs after down --purge"
    assert not state_dir.exists()


@pytest.mark.minio
def test_up_with_minio_keeps_objects_across_down_and_up(state_dir: Path) -> None:
    env = exports(local("up", "--s3", "minio", "--state-dir", str(state_dir)).stdout)
    endpoint = S3Endpoint(
        env["S3_ENDPOINT_URL"], env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"],
        env["AWS_DEFAULT_REGION"],
    )  # fmt: skip
    bucket = create_bucket(endpoint)
    s3_client(endpoint).put_object(Bucket=bucket, Key="kept", Body=b"on disk")

    switch = local("up", "--s3", "moto", "--state-dir", str(state_dir), check=False)
    assert switch.returncode == 2
    assert "already runs minio" in switch.stderr
    assert len(switch.stderr.strip().splitlines()) == 1, "one clear line"

    local("down", "--state-dir", str(state_dir))
    again = exports(local("up", "--state-dir", str(state_dir)).stdout)  # remembers minio
    assert again["S3_ENDPOINT_URL"] == env["S3_ENDPOINT_URL"]
    body = s3_client(endpoint).get_object(Bucket=bucket, Key="kept")["Body"].read()
    assert body == b"on disk"
