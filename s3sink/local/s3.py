"""A real S3 HTTP endpoint on loopback: moto's server (default) or MinIO.

Moto is quick to start and keeps objects in memory: stopping it discards them. Its
conditional writes are checked but not atomic under concurrency, so race and fencing tests use
MinIO, built once from the Go module proxy with ``go install`` (:func:`ensure_minio_binary`)
and cached; MinIO keeps its objects in ``<state dir>/minio/data``.
"""

from __future__ import annotations

import abc
import logging
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from s3sink.local.process import (
    LOOPBACK,
    ManagedProcess,
    pick_port,
    read_json,
    wait_until,
    write_json,
)
from s3sink.local.tools import LocalStackError, cache_dir, file_lock, find_go, tail

#: Pinned so every machine builds the same MinIO (the Go module proxy serves it immutably).
MINIO_MODULE = "github.com/minio/minio"
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"

#: Credentials of the local endpoints. Loopback only; never use them anywhere else.
LOCAL_ACCESS_KEY = "s3sink-local"
LOCAL_SECRET_KEY = "s3sink-local-secret"  # noqa: S105 - a fixed local-only test credential
LOCAL_REGION = "us-east-1"

S3Kind = Literal["moto", "minio"]
S3_KINDS: tuple[S3Kind, ...] = ("moto", "minio")

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class S3Endpoint:
    """Where an S3-compatible endpoint answers and the credentials it accepts."""

    url: str
    access_key: str
    secret_key: str = field(repr=False)  # kept out of logs and test reports
    region: str = LOCAL_REGION

    def env(self) -> dict[str, str]:
        """The environment variables boto3, the AWS CLI and s3sink read for this endpoint.

        ``AWS_ENDPOINT_URL_S3`` makes plain boto3 clients and ``aws s3`` use it unconfigured.
        """
        return {
            "S3_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL_S3": self.url,
        }

    def __repr__(self) -> str:  # keep the secret out of logs and test reports
        return (
            f"S3Endpoint(url={self.url!r}, access_key={self.access_key!r}, region={self.region!r})"
        )


def minio_binary_path() -> Path:
    return cache_dir() / "bin" / "minio"


def _built_version(binary: Path) -> str | None:
    """The MinIO module version a cached binary was built from (recorded next to it)."""
    stamp = binary.with_name("minio.version")
    if stamp.exists():
        return stamp.read_text().strip()
    go = shutil.which("go")
    if go is None or not binary.exists():
        return None
    out = subprocess.run(
        [go, "version", "-m", str(binary)], capture_output=True, text=True, check=False
    )
    for line in out.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[0] == "mod" and fields[1] == MINIO_MODULE:
            stamp.write_text(fields[2] + "\n")
            return fields[2]
    return None


def ensure_minio_binary(version: str = MINIO_VERSION) -> Path:
    """The cached ``minio`` binary, built with ``go install`` the first time (a few minutes)."""
    binary = minio_binary_path()
    if binary.exists() and _built_version(binary) == version:
        return binary
    with file_lock(binary.parent / "minio.lock"):
        if binary.exists() and _built_version(binary) == version:
            return binary
        go = find_go()
        log.info("building MinIO %s with `go install` into %s (once, a few minutes)",
                 version, binary.parent)  # fmt: skip
        build_log = binary.parent / "minio-build.log"
        env = dict(os.environ, GOBIN=str(binary.parent), CGO_ENABLED="0")
        binary.with_name("minio.version").unlink(missing_ok=True)
        with build_log.open("wb") as out:
            code = subprocess.run(
                [go, "install", f"{MINIO_MODULE}@{version}"],
                stdout=out, stderr=subprocess.STDOUT, env=env, check=False,
            ).returncode  # fmt: skip
        if code != 0 or not binary.exists():
            raise LocalStackError(
                f"building MinIO failed (go install exit {code}); is the Go module proxy "
                f"reachable? Full log: {build_log}\n{tail(build_log)}"
            )
        binary.with_name("minio.version").write_text(version + "\n")
    return binary


class S3Server(abc.ABC):
    """An S3 endpoint process of the local stack, its files under ``state_dir/<kind>``."""

    kind: ClassVar[S3Kind]

    def __init__(
        self, state_dir: Path | str, port: int | None = None, *, die_with_parent: bool = False
    ) -> None:
        self.home = Path(state_dir).resolve() / self.kind
        self.state_path = self.home / f"{self.kind}.json"
        self.process = ManagedProcess(self.kind, self.home)
        self.die_with_parent = die_with_parent
        self._requested_port = port
        self.access_key = LOCAL_ACCESS_KEY
        self.secret_key = LOCAL_SECRET_KEY
        self.region = LOCAL_REGION

    @property
    def port(self) -> int:
        port = read_json(self.state_path).get("port")
        if not isinstance(port, int):
            raise LocalStackError(f"the {self.kind} server in {self.home} was never started")
        return port

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def endpoint(self) -> S3Endpoint:
        return S3Endpoint(self.endpoint_url, self.access_key, self.secret_key, self.region)

    def running(self) -> bool:
        return self.process.running()

    def pid(self) -> int | None:
        return self.process.pid()

    def start(self, timeout: float = 60.0) -> S3Server:
        """Start the server (or adopt the one running on this state dir); wait until it answers."""
        self.home.mkdir(parents=True, exist_ok=True)
        with file_lock(self.home / ".lock"):
            if not self.process.running():
                recorded = read_json(self.state_path).get("port")
                port = self._requested_port or pick_port(
                    recorded if isinstance(recorded, int) else None
                )
                write_json(self.state_path, {"port": port})
                argv, env, markers = self._command(port)
                self.process.spawn(
                    argv, markers=markers, env=env, cwd=self.home,
                    die_with_parent=self.die_with_parent,
                )  # fmt: skip
            wait_until(self._answers, timeout=timeout, process=self.process, what="answer HTTP")
            self._requested_port = self.port  # restarts of this object keep the address
        return self

    def stop(self, timeout: float = 30.0) -> bool:
        with file_lock(self.home / ".lock"):
            return self.process.stop(timeout=timeout)

    def purge(self) -> None:
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)

    @abc.abstractmethod
    def _command(self, port: int) -> tuple[list[str], dict[str, str], list[str]]:
        """argv, extra environment, and the command-line markers that identify it as ours."""

    def _health_path(self) -> str:
        return "/"

    def _answers(self) -> bool:
        url = self.endpoint_url + self._health_path()
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
                status: int = response.status
        except urllib.error.HTTPError as exc:  # any HTTP answer means it serves
            status = exc.code
        except (OSError, ValueError):
            return False
        return 100 <= status < 600

    def describe(self) -> str:
        pid = self.pid()
        if pid is None:
            return f"s3 ({self.kind}): stopped (state in {self.home})"
        return (
            f"s3 ({self.kind}): running, pid {pid}, endpoint {self.endpoint_url}, "
            f"logs {self.process.log_path}"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.home})"


class MotoServer(S3Server):
    """moto's S3 server in a child Python process (objects live in its memory)."""

    kind: ClassVar[S3Kind] = "moto"

    def _command(self, port: int) -> tuple[list[str], dict[str, str], list[str]]:
        argv = [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)]
        return argv, {}, ["moto.server", f"-p {port}"]


class MinioServer(S3Server):
    """A MinIO server (single node, single drive) with its data in ``state_dir/minio/data``."""

    kind: ClassVar[S3Kind] = "minio"

    def _command(self, port: int) -> tuple[list[str], dict[str, str], list[str]]:
        binary = ensure_minio_binary()
        data = self.home / "data"
        data.mkdir(parents=True, exist_ok=True)
        argv = [
            str(binary), "server", str(data),
            "--address", f"{LOOPBACK}:{port}",
            "--console-address", f"{LOOPBACK}:{pick_port(None, taken=[port])}",
            "--quiet",
        ]  # fmt: skip
        env = {
            "MINIO_ROOT_USER": self.access_key,
            "MINIO_ROOT_PASSWORD": self.secret_key,
            "MINIO_REGION": self.region,
            "MINIO_BROWSER": "off",
            "MINIO_UPDATE": "off",
        }
        return argv, env, [str(binary), str(data)]

    def _health_path(self) -> str:
        return "/minio/health/ready"

    def _answers(self) -> bool:
        url = self.endpoint_url + self._health_path()
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
                return bool(response.status == 200)
        except (OSError, ValueError):
            return False


def s3_server(
    kind: S3Kind, state_dir: Path | str, port: int | None = None, *, die_with_parent: bool = False
) -> S3Server:
    """The S3 server of ``kind`` (``moto`` or ``minio``) for ``state_dir``."""
    servers: dict[str, type[S3Server]] = {"moto": MotoServer, "minio": MinioServer}
    if kind not in servers:
        raise LocalStackError(f"unknown S3 server {kind!r}; choose one of {', '.join(servers)}")
    return servers[kind](state_dir, port, die_with_parent=die_with_parent)
