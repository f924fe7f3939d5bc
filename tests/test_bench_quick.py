"""``bench/bench.py --quick`` runs end to end: it prints the table and writes the JSON.

No thresholds: the figures depend on the machine and its load (see ``bench/README.md``). The
benchmark uses the rig's broker and MinIO (through ``KAFKA_BOOTSTRAP_SERVERS`` and
``S3_ENDPOINT_URL``) and its own Schema Registry test server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from s3sink.local import S3Endpoint

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_bench_quick_prints_the_table_and_writes_json(
    kafka_bootstrap: str, minio_endpoint: S3Endpoint, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("S3SINK_")}
    env.update(minio_endpoint.env())
    env["KAFKA_BOOTSTRAP_SERVERS"] = kafka_bootstrap
    results = tmp_path / "results"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "bench.py"),
            "--quick",
            "--state-dir",
            str(tmp_path / "state"),
            "--results",
            str(results),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=480,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    out = proc.stdout
    assert "records/s" in out and "ceiling json" in out
    for label in ("JSON -> JSON lines", "JSON -> Parquet zstd", "Avro -> Parquet zstd"):
        assert label in out
    files = list(results.glob("bench-quick-*.json"))
    assert len(files) == 1
    data = json.loads(files[0].read_text())
    assert data["quick"] is True
    cases = {(r["case"], r["backend"]) for r in data["rows"]}
    for case in ("json-jsonl", "json-parquet", "avro-parquet", "avro-avro"):
        assert (case, "local") in cases and (case, "minio") in cases
    assert {"naive-parquet", "memory", "filesize"} <= {r["case"] for r in data["rows"]}
    assert all(r["ok"] for r in data["rows"]), [r for r in data["rows"] if not r["ok"]]
    assert data["ceilings"]["json"]["records_per_s"] > 0
    assert data["machine"]["nproc"]
