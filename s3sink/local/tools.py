"""Where the local stack caches what it downloads or builds, and the tools it needs to do so.

The cache (Kafka jars, the MinIO binary) lives in ``$S3SINK_CACHE_DIR`` or ``~/.cache/s3sink``.
Missing tools fail with one line that says what to install.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from s3sink.errors import FatalError

CACHE_ENV = "S3SINK_CACHE_DIR"


class LocalStackError(FatalError):
    """The local stack could not be prepared, started or stopped. The message says why."""


def cache_dir() -> Path:
    """The cache directory: ``$S3SINK_CACHE_DIR``, else ``$XDG_CACHE_HOME/s3sink``."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return (base / "s3sink").resolve()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (created if missing), held for the block.

    Two processes preparing the same cache or driving the same state directory take turns
    instead of downloading twice or starting two brokers.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def find_java() -> str:
    """The ``java`` executable (``$JAVA_HOME/bin/java`` first), version 17 or newer."""
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home) / "bin" / "java" if java_home else None
    java = str(candidate) if candidate and candidate.is_file() else shutil.which("java")
    if java is None:
        raise LocalStackError(
            "Java is not installed (no `java` on PATH or in $JAVA_HOME): the local Kafka "
            "broker needs Java 17 or newer, e.g. `apt-get install openjdk-17-jre-headless` "
            "or `brew install openjdk@17`"
        )
    major = _java_major_version(java)
    if major is not None and major < 17:
        raise LocalStackError(
            f"{java} is Java {major}; Apache Kafka 4 needs Java 17 or newer, e.g. "
            "`apt-get install openjdk-17-jre-headless` (or point JAVA_HOME at one)"
        )
    return java


@functools.cache
def _java_major_version(java: str) -> int | None:
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return None
    major = int(match.group(1))
    # Java 8 and older report "1.8.0_…".
    return int(match.group(2) or 0) if major == 1 else major


def find_maven() -> str:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LocalStackError(
            "Maven is not installed (no `mvn` on PATH): it resolves the Kafka broker jars "
            "from Maven Central; install Maven 3.6+, e.g. `apt-get install maven` or "
            "`brew install maven`"
        )
    return mvn


def find_go() -> str:
    go = shutil.which("go")
    if go is None:
        raise LocalStackError(
            "Go is not installed (no `go` on PATH): it builds MinIO once for `--s3 minio` "
            "and the MinIO tests; install Go 1.24+ from https://go.dev/dl/ or your package "
            "manager"
        )
    return go


def tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log file, for error messages ('' if unreadable)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
