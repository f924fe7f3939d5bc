"""Every command in the README is run by a test, or sits in an explicit allow-list here.

The README's ``sh`` blocks are split into command lines (continuations joined, heredoc bodies
left to the line that opens them). Each heading in :data:`RUNNERS` belongs to a test that runs
every line under it, as the README writes it: only hostnames, addresses and bucket names are
swapped, by an explicit :class:`Swap` map that checks the rest of the text is the README's.
Lines that cannot run here (Docker, Terraform, a Kafka distribution's scripts, ``make test``
itself) are listed in :data:`NOT_RUN` with the files they use, which must exist; a new command
in the README fails :func:`test_every_command_is_run_or_listed` until it is run or listed.

This module also runs the quick start, the batch-job and the querying commands against the
rig's broker and S3 endpoint, and ``make demo``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
import yaml

from s3sink.cli import build_parser
from tests.rig.kafka import create_topic, produce_n
from tests.rig.s3 import S3Endpoint, s3_client
from tests.test_readme import fenced_blocks

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"


# -- the README's command lines --------------------------------------------------------------


def command_lines(text: str | None = None) -> list[tuple[str, str]]:
    """``(heading, line)`` for every command of every ``sh`` block, in order."""
    out: list[tuple[str, str]] = []
    for heading, lang, body in fenced_blocks(text):
        if lang != "sh":
            continue
        lines = body.splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            i += 1
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            while line.rstrip().endswith("\\"):
                line = line.rstrip()[:-1].rstrip() + " " + lines[i].strip()
                i += 1
            heredoc = re.search(r"<<-?'?(\w+)'?", line)
            if heredoc:
                while lines[i].strip() != heredoc.group(1):
                    i += 1
                i += 1
            out.append((heading, line.strip()))
    return out


def commands_under(*headings: str) -> list[str]:
    """The command lines under the given headings (exact heading lines), README order."""
    found = [line for heading, line in command_lines() if heading in headings]
    assert found, f"no commands under {headings}"
    return found


def heredoc(opening: str, heading: str) -> str:
    """The body of the heredoc opened by ``opening`` under ``heading``."""
    for h, lang, body in fenced_blocks():
        if h == heading and lang == "sh" and opening in body:
            m = re.search(re.escape(opening) + r"\n(.*?)\n(\w+)\n", body, re.S)
            assert m is not None
            return m.group(1) + "\n"
    raise AssertionError(f"no heredoc {opening!r} under {heading}")


#: Headings whose commands a test runs, line by line (each runner checks it ran them all).
RUNNERS = {
    "# s3sink": "tests/test_readme_commands.py::test_make_demo_runs_the_main_job",
    "## Quick start with your own cluster": (
        "tests/test_readme_commands.py::test_quick_start_batch_and_query_commands"
    ),
    "## Running as a batch job": (
        "tests/test_readme_commands.py::test_quick_start_batch_and_query_commands"
    ),
    "### Querying: Athena, Spark, Trino, DuckDB": (
        "tests/test_readme_commands.py::test_quick_start_batch_and_query_commands"
    ),
    "## Migrating from the Confluent S3 sink": (
        "tests/test_readme_replay.py::test_migration_backup_and_restore_commands"
    ),
    "### 1. Archive with the `backup` format": (
        "tests/test_readme_replay.py::test_migration_backup_and_restore_commands"
    ),
    "### 2. Restore": "tests/test_readme_replay.py::test_migration_backup_and_restore_commands",
    "### 4. From other formats": (
        "tests/test_readme_replay.py::test_migration_backup_and_restore_commands"
    ),
    "## Local stack": "tests/test_readme_local.py::test_local_stack_block",
    "#### Athena": "tests/test_readme_commands.py::test_athena_ddl_example",
}


@dataclass(frozen=True)
class NotRun:
    why: str
    #: Files of the repository the command uses (they must exist).
    files: tuple[str, ...] = ()


#: Command lines no test runs, each with why; exactly these lines of the README are not run.
NOT_RUN = {
    "make test": NotRun("the whole suite, this test included", ("Makefile",)),
    "pip install -c constraints.txt .          # or: make install (a .venv for development)": (
        NotRun("the test environment is this install (make install)", ("constraints.txt",))
    ),
    "docker build -t s3sink .": NotRun("needs Docker", ("Dockerfile",)),
    'docker run --rm -v "$PWD/deploy/s3sink.properties:/etc/s3sink/config.properties:ro" '
    "s3sink run -c /etc/s3sink/config.properties": NotRun(
        "needs Docker", ("Dockerfile", "deploy/s3sink.properties")
    ),
    "docker compose up --build -d      # Kafka, MinIO, s3sink and a sample producer": NotRun(
        "needs Docker", ("compose.yaml", "Dockerfile", "deploy/s3sink.properties")
    ),
    "docker compose down -v": NotRun("needs Docker", ("compose.yaml",)),
    "cd terraform/examples/basic && cp terraform.tfvars.example terraform.tfvars   "
    "# then fill it in": NotRun(
        "prepares terraform apply", ("terraform/examples/basic/terraform.tfvars.example",)
    ),
    "terraform init && terraform apply": NotRun(
        "needs an AWS account", ("terraform/examples/basic/main.tf",)
    ),
    "kafka-topics.sh --bootstrap-server dr-kafka-1:9092 --create --topic orders --partitions 12": (
        NotRun("a Kafka distribution's script: the restore test creates that topic with the admin")
    ),
}


def test_every_command_is_run_or_listed() -> None:
    lines = command_lines()
    unknown = [(h, line) for h, line in lines if h not in RUNNERS and line not in NOT_RUN]
    assert not unknown, (
        f"README commands no test runs (run them, or list them in NOT_RUN): {unknown}"
    )
    not_run = {line for _h, line in lines if line in NOT_RUN}
    assert not_run == set(NOT_RUN), f"NOT_RUN lines gone from the README: {set(NOT_RUN) - not_run}"
    headings = {h for h, _line in lines}
    assert set(RUNNERS) <= headings, f"RUNNERS headings with no commands: {set(RUNNERS) - headings}"


def test_not_run_commands_use_files_that_exist() -> None:
    for line, entry in NOT_RUN.items():
        for name in entry.files:
            assert (REPO / name).is_file(), f"{line}: {name} does not exist"
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^test: ", makefile, re.M) and re.search(r"^install: ", makefile, re.M)


def test_every_s3sink_command_parses() -> None:
    """Each ``s3sink`` line is a valid command line of the CLI (an option renamed fails here)."""
    parser = build_parser()
    for _h, line in command_lines():
        words = shlex.split(line, comments=True)
        while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
            words.pop(0)
        if words and words[0] == "s3sink" and "$(" not in line:
            parser.parse_args(words[1:])


def test_scheduled_commands_are_the_batch_command() -> None:
    """The crontab line and the Kubernetes CronJob run the batch-job command that is tested."""
    batch = commands_under("## Running as a batch job")
    blocks = [(h, lang, b) for h, lang, b in fenced_blocks() if h == "## Running as a batch job"]
    cron = [b for _h, lang, b in blocks if lang == "crontab"]
    assert len(cron) == 1
    fields = cron[0].strip().split(None, 5)
    m = re.fullmatch(r"cd \S+ && (.*?) >> \S+ 2>&1", fields[5])
    assert m is not None, fields
    assert m.group(1) in batch
    jobs = [yaml.safe_load(b) for _h, lang, b in blocks if lang == "yaml"]
    assert len(jobs) == 1 and jobs[0]["kind"] == "CronJob"
    spec = jobs[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    args = container["args"]
    assert build_parser().parse_args(args).command == "catchup"
    mounted = container["volumeMounts"][0]["mountPath"]
    assert ["s3sink", *args] == [
        w.replace("sink.properties", f"{mounted}/sink.properties") for w in shlex.split(m.group(1))
    ]
    assert 'ENTRYPOINT ["s3sink"]' in (REPO / "Dockerfile").read_text()


# -- running lines -----------------------------------------------------------------------------


class Swap:
    """The explicit map of addresses and names swapped in README text, and its check."""

    def __init__(self, mapping: Mapping[str, str]) -> None:
        self.mapping = dict(mapping)

    def __call__(self, text: str) -> str:
        pattern = "|".join(re.escape(k) for k in sorted(self.mapping, key=len, reverse=True))
        used: dict[str, str] = {}

        def swap(m: re.Match[str]) -> str:
            used[m.group(0)] = self.mapping[m.group(0)]
            return used[m.group(0)]

        swapped = re.sub(pattern, swap, text) if self.mapping else text
        # swapping back the values used gives the README's text again: nothing else changed
        back = {v: k for k, v in used.items()}
        assert len(back) == len(used), f"two names swapped to one value in {text!r}"
        restored = (
            re.sub(
                "|".join(re.escape(k) for k in sorted(back, key=len, reverse=True)),
                lambda m: back[m.group(0)],
                swapped,
            )
            if back
            else swapped
        )
        assert restored == text, "the swap map changed more than addresses and names"
        return swapped


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def s3sink_argv(line: str, env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """``NAME=value ... s3sink ARGS  # comment`` -> the argv to run and its environment."""
    words = shlex.split(line, comments=True)
    full = dict(env)
    while re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        name, _, value = words.pop(0).partition("=")
        full[name] = value
    assert words[0] == "s3sink", line
    return [sys.executable, "-m", "s3sink", *words[1:]], full


def run_line(
    line: str, env: Mapping[str, str], cwd: Path, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    argv, full = s3sink_argv(line, env)
    return subprocess.run(
        argv, check=False, cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout
    )


def run_until(
    line: str, env: Mapping[str, str], cwd: Path, ready: Callable[[], bool], timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """Start a long-running ``s3sink run`` line, wait for ``ready``, SIGTERM it, return how it
    ended (it must stop by itself)."""
    argv, full = s3sink_argv(line, env)
    proc = subprocess.Popen(
        argv, cwd=cwd, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            if proc.poll() is not None:
                out, err = proc.communicate()
                raise AssertionError(f"{line} exited {proc.returncode}: {err[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{line}: not ready after {timeout} s")
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def metric_total(port: int, name: str) -> float:
    """Sum of a metric's series on a sink's ``/metrics`` (0 while it is not listening)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except (urllib.error.URLError, OSError):
        return 0.0
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(f"s3sink_{name}{{") or line.startswith(f"s3sink_{name} ")
    )


def http_ok(port: int, path: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def download(endpoint: S3Endpoint, bucket: str, prefix: str, dest: Path) -> Path:
    """A local copy of ``s3://bucket/prefix`` (DuckDB's httpfs is not installed offline)."""
    client = s3_client(endpoint)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            target = dest / bucket / obj["Key"]
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, obj["Key"], str(target))
    return dest / bucket


class MoreOrders:
    """Ready condition of a running sink: once it is ready, produce; true when the sink has
    consumed 100 records."""

    def __init__(self, port: int, produce: Callable[[], None]) -> None:
        self.port, self.produce, self.sent = port, produce, False

    def __call__(self) -> bool:
        if not self.sent:
            if not http_ok(self.port, "/readyz"):
                return False
            self.produce()
            self.sent = True
        return metric_total(self.port, "records_consumed_total") >= 100


# -- quick start, batch job, querying ----------------------------------------------------------

QUICK = "## Quick start with your own cluster"
BATCH = "## Running as a batch job"
QUERY = "### Querying: Athena, Spark, Trino, DuckDB"


@pytest.mark.slow
def test_quick_start_batch_and_query_commands(
    kafka_bootstrap: str, s3_endpoint: S3Endpoint, s3_bucket: str, tmp_path: Path
) -> None:
    """The quick start's sink.properties against the rig (addresses, bucket and topic through
    ``S3SINK_*`` variables, as the README says), then every line of the quick start, the batch
    job and the querying sections; the DuckDB query runs over a copy of the output."""
    (tmp_path / "sink.properties").write_text(heredoc("cat > sink.properties <<'CONF'", QUICK))
    topic = create_topic(kafka_bootstrap, 2, prefix="orders")
    hour = 3_600_000
    base = 1_767_225_600_000  # 2026-01-01T00:00:00Z

    def orders(n: int, first: int) -> None:
        produce_n(
            kafka_bootstrap,
            topic,
            n,
            value=lambda i: json.dumps(
                {"id": first + i, "amount": (first + i) / 4, "country": "FR"}
            ).encode(),
            timestamp_ms=lambda i: base + ((first + i) % 2) * hour,
        )

    orders(500, 0)
    port = free_port()
    env = {
        **os.environ,
        "S3SINK_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "S3SINK_TOPICS": topic,
        "S3SINK_S3_BUCKET_NAME": s3_bucket,
        "S3SINK_STORE_URL": s3_endpoint.url,
        "S3SINK_S3_PATH_STYLE_ACCESS_ENABLED": "true",
        "S3SINK_HTTP_LISTEN": f"127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": s3_endpoint.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_endpoint.secret_key,
    }
    lines = commands_under(QUICK, BATCH, QUERY)
    ran: list[str] = []
    outputs: dict[str, str] = {}
    for line in lines:
        if line in NOT_RUN:
            continue
        ran.append(line)
        if line.startswith("cat > sink.properties"):
            continue  # written above, from the heredoc's body
        words = shlex.split(line, comments=True)
        if words[1] == "run":
            # archive what arrives while it runs: once ready, 100 more orders; when they are
            # consumed, SIGTERM (it commits them on the way out)
            done = run_until(line, env, tmp_path, MoreOrders(port, lambda: orders(100, 500)))
            assert done.returncode == 0, done.stderr[-3000:]
            orders(50, 600)  # for the batch job's catch-up
            continue
        done = run_line(line, env, tmp_path)
        assert done.returncode == 0, f"{line}: {done.stderr[-3000:]}"
        outputs[line.split("#")[0].strip()] = done.stdout
    assert ran == [line for line in lines if line not in NOT_RUN]
    assert "format.class=parquet" in outputs["s3sink config check -c sink.properties"]
    assert "catch-up done: 500 records" in outputs["s3sink catchup -c sink.properties"]
    assert ": OK" in outputs["s3sink verify -c sink.properties"]
    batch = outputs["s3sink catchup -c sink.properties --no-progress"]
    assert re.fullmatch(
        r"catch-up done: 50 records in \d+ files, \d+ commits, 2 partitions, .*, 0 bad records\n",
        batch,
    ), batch
    athena = outputs["s3sink ddl -c sink.properties --engine athena"]
    assert "CREATE EXTERNAL TABLE" in athena and "projection.enabled" in athena
    assert "USING parquet" in outputs["s3sink ddl -c sink.properties --engine spark"]
    assert "partitioned_by" in outputs["s3sink ddl -c sink.properties --engine trino"]

    # DuckDB: the httpfs statements parse; the query runs over a copy of the bucket
    sql = [b for h, lang, b in fenced_blocks() if h == QUERY and lang == "sql"]
    assert len(sql) == 1
    statements = duckdb.extract_statements(sql[0])
    assert len(statements) == 4
    local = download(s3_endpoint, s3_bucket, "topics/", tmp_path / "copy")
    select = Swap({"s3://my-datalake": local.as_posix(), "/orders/": f"/{topic}/"})(
        statements[3].query
    )
    rows = duckdb.connect().execute(select).fetchall()
    amounts = {h: sum(i / 4 for i in range(650) if i % 2 == h) for h in (0, 1)}
    assert [(h, n, round(r, 2)) for h, n, r in rows] == [
        (0, 325, round(amounts[0], 2)),
        (1, 325, round(amounts[1], 2)),
    ]


@pytest.mark.slow
def test_catchup_exits_2_on_a_bad_record(
    kafka_bootstrap: str, s3_endpoint: S3Endpoint, s3_bucket: str, tmp_path: Path
) -> None:
    """The batch job's documented exit code for a fatal error: 2, with one ``s3sink: error:``
    line (a value that is not JSON, with ``errors.tolerance=none``)."""
    (tmp_path / "sink.properties").write_text(heredoc("cat > sink.properties <<'CONF'", QUICK))
    topic = create_topic(kafka_bootstrap, 1, prefix="orders")
    produce_n(kafka_bootstrap, topic, 3, value=lambda i: b"{not json" if i == 1 else b"{}")
    env = {
        **os.environ,
        "S3SINK_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "S3SINK_TOPICS": topic,
        "S3SINK_S3_BUCKET_NAME": s3_bucket,
        "S3SINK_STORE_URL": s3_endpoint.url,
        "S3SINK_HTTP_LISTEN": "none",
        "AWS_ACCESS_KEY_ID": s3_endpoint.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_endpoint.secret_key,
    }
    (line,) = commands_under(BATCH)
    done = run_line(line, env, tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    errors = [x for x in done.stderr.splitlines() if x.startswith("s3sink: error:")]
    assert len(errors) == 1 and "offset 1" in errors[0], done.stderr[-3000:]
    assert "catch-up done" not in done.stdout


def test_athena_ddl_example(tmp_path: Path) -> None:
    """The Athena DDL shown under the partitioners is what its ``s3sink ddl`` line prints for
    the quick start's config (columns given by hand: no output needed)."""
    (tmp_path / "sink.properties").write_text(heredoc("cat > sink.properties <<'CONF'", QUICK))
    (line,) = commands_under("#### Athena")
    done = run_line(line, {**os.environ, "S3SINK_HTTP_LISTEN": "none"}, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    (shown,) = [b for h, lang, b in fenced_blocks() if h == "#### Athena" and lang == "sql"]
    assert done.stdout == shown


@pytest.mark.slow
@pytest.mark.integration
def test_make_demo_runs_the_main_job(tmp_path: Path) -> None:
    """``make demo`` runs ``s3sink demo``: its own local stack, sample data, catch-up, verify
    and a DuckDB query over the output; ``s3sink local down`` stops the stack."""
    assert [x for x in commands_under("# s3sink") if x not in NOT_RUN] == ["make demo"]
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
