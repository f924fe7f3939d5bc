"""Spark for the reader tests: the spark-avro jar and a local SparkSession.

Spark reads Avro only through the external ``spark-avro`` module, which pyspark from PyPI does
not ship. :func:`ensure_spark_avro_jar` resolves it from Maven Central with
``mvn dependency:copy`` the first time (the artifact ``org.apache.spark:spark-avro_2.13:<v>`` of
the installed pyspark's version ``<v>``) into ``<cache>/spark/<v>/`` (``$S3SINK_CACHE_DIR`` or
``~/.cache/s3sink``) and reuses it later without touching the network. When Maven Central has no
jar of that exact version, the nearest older release of the same major version is taken (a Maven
version range ``[<major>.0.0,<v>)``, highest first) and the cache says so (:attr:`AvroJar.note`);
delete the directory to resolve again.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from s3sink.local.kafka import DEPENDENCY_PLUGIN_VERSION
from s3sink.local.tools import LocalStackError, cache_dir, file_lock, find_maven, tail

__all__ = [
    "AvroJar",
    "avro_jar_dir",
    "ensure_spark_avro_jar",
    "local_session",
    "pyspark_version",
    "statements",
]

SCALA_VERSION = "2.13"
GROUP = "org.apache.spark"
ARTIFACT = f"spark-avro_{SCALA_VERSION}"
_COMPLETE = ".complete"
_DEPENDENCY_PLUGIN = f"org.apache.maven.plugins:maven-dependency-plugin:{DEPENDENCY_PLUGIN_VERSION}"


@dataclass(frozen=True, slots=True)
class AvroJar:
    """The resolved jar: its path, its version, and why it is not the wanted one (or '')."""

    path: Path
    version: str
    wanted: str
    note: str = ""

    @property
    def exact(self) -> bool:
        return self.version == self.wanted


def pyspark_version() -> str:
    import pyspark

    return str(pyspark.__version__)


def avro_jar_dir(spark_version: str) -> Path:
    return cache_dir() / "spark" / spark_version


def _read_cache(home: Path, wanted: str) -> AvroJar | None:
    marker = home / _COMPLETE
    if not marker.exists():
        return None
    version, _, note = marker.read_text().partition("\n")
    jar = home / f"{ARTIFACT}-{version.strip()}.jar"
    if not jar.is_file():
        return None
    return AvroJar(jar, version.strip(), wanted, note.strip())


def _mvn(argv: list[str], log: Path, cwd: Path, timeout: float) -> int:
    with log.open("ab") as out:
        try:
            return subprocess.run(
                argv, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, check=False, timeout=timeout
            ).returncode
        except subprocess.TimeoutExpired:
            out.write(f"\n(mvn did not finish within {timeout:.0f}s)\n".encode())
            return -1


def _copy_exact(mvn: str, version: str, work: Path, timeout: float) -> int:
    """``mvn dependency:copy`` of exactly ``version`` (the jar alone, no dependencies)."""
    return _mvn(
        [
            mvn,
            "--batch-mode",
            "--no-transfer-progress",
            f"{_DEPENDENCY_PLUGIN}:copy",
            f"-Dartifact={GROUP}:{ARTIFACT}:{version}",
            f"-DoutputDirectory={work}",
        ],
        work / "mvn.log",
        work,
        timeout,
    )


_RANGE_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>s3sink.tests</groupId>
  <artifactId>spark-avro-nearest</artifactId>
  <version>1</version>
  <dependencies>
    <dependency>
      <groupId>{group}</groupId>
      <artifactId>{artifact}</artifactId>
      <version>{range}</version>
      <exclusions><exclusion><groupId>*</groupId><artifactId>*</artifactId></exclusion></exclusions>
    </dependency>
  </dependencies>
</project>
"""


def _copy_nearest(mvn: str, version: str, work: Path, timeout: float) -> int:
    """The newest release in ``[<major>.0.0,<version>)``: Maven reads the artifact's version
    list from Central and takes the highest in the range (the jar alone, no dependencies)."""
    major = version.split(".", 1)[0]
    pom = work / "pom.xml"
    pom.write_text(
        _RANGE_POM.format(group=GROUP, artifact=ARTIFACT, range=f"[{major}.0.0,{version})")
    )
    return _mvn(
        [
            mvn,
            "--batch-mode",
            "--no-transfer-progress",
            "-f",
            str(pom),
            f"{_DEPENDENCY_PLUGIN}:copy-dependencies",
            "-DexcludeTransitive=true",
            f"-DoutputDirectory={work}",
        ],
        work / "mvn.log",
        work,
        timeout,
    )


def _jars(work: Path) -> list[Path]:
    return sorted(work.glob(f"{ARTIFACT}-*.jar"))


def ensure_spark_avro_jar(version: str | None = None, *, timeout: float = 300.0) -> AvroJar:
    """The spark-avro jar for Spark ``version`` (default: the installed pyspark's), resolved
    from Maven Central once and cached; concurrent callers wait for one another.

    Raises :class:`LocalStackError` with Maven's output when neither the exact version nor an
    older release of the same major version can be resolved.
    """
    wanted = version or pyspark_version()
    home = avro_jar_dir(wanted)
    cached = _read_cache(home, wanted)
    if cached is not None:
        return cached
    with file_lock(home.parent / f"{wanted}.lock"):
        cached = _read_cache(home, wanted)
        if cached is not None:
            return cached
        mvn = find_maven()
        work = home.parent / f"{wanted}.partial"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        note = ""
        code = _copy_exact(mvn, wanted, work, timeout)
        if code != 0 or not _jars(work):
            note = f"{GROUP}:{ARTIFACT}:{wanted} is not on Maven Central (mvn exit {code})"
            code = _copy_nearest(mvn, wanted, work, timeout)
        jars = _jars(work)
        if code != 0 or len(jars) != 1:
            raise LocalStackError(
                f"could not resolve {GROUP}:{ARTIFACT}:{wanted}, nor an older "
                f"{wanted.split('.', 1)[0]}.x release, with Maven (exit {code}); is Maven "
                f"Central reachable? Full log: {work / 'mvn.log'}\n{tail(work / 'mvn.log')}"
            )
        resolved = jars[0].name.removeprefix(f"{ARTIFACT}-").removesuffix(".jar")
        if note:
            note += f"; using {resolved}, the newest older {wanted.split('.', 1)[0]}.x release"
        (work / _COMPLETE).write_text(f"{resolved}\n{note}\n")
        shutil.rmtree(home, ignore_errors=True)
        work.rename(home)
    found = _read_cache(home, wanted)
    assert found is not None
    return found


def local_session(app: str, warehouse: Path, jars: Iterable[Path] = ()) -> Any:
    """A ``local[2]`` SparkSession on loopback with its own warehouse and Derby home, UTC
    session time zone, and ``jars`` on the classpath.

    ``spark.jars`` only reaches the driver's class loader when the session starts the JVM; when
    an earlier session of the same Python process started it, the jars are also added with
    ``ADD JAR`` (which puts them on the session's class loader), so the order in which test
    modules run does not matter.
    """
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    paths = [str(j) for j in jars]
    jvm_started = SparkContext._gateway is not None
    builder = (
        SparkSession.builder.master("local[2]")
        .appName(app)
        .config("spark.ui.enabled", "false")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.memory", "768m")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.warehouse.dir", warehouse.as_uri())
        .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={warehouse}")
    )
    if paths:
        builder = builder.config("spark.jars", ",".join(paths))
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    if jvm_started:
        for path in paths:
            session.sql(f"ADD JAR '{path}'")
    return session


def statements(ddl_text: str) -> list[str]:
    """The statements of ``s3sink ddl`` output (comment lines dropped), without semicolons."""
    body = "\n".join(line for line in ddl_text.splitlines() if not line.startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]
