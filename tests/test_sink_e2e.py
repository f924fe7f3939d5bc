"""End to end, in process: a real broker, real storage (moto S3 and the filesystem)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from s3sink.config import parse
from s3sink.sink import Sink, storage_from_config
from s3sink.verify import verify
from tests.rig.archive import (
    archived_lines,
    check_exactly_once,
    ids_of,
    markers,
    staging_left,
)
from tests.rig.kafka import create_topic, produce_n, unique_name
from tests.rig.s3 import S3Endpoint

N = 3000


def _value(i: int) -> bytes:
    return json.dumps({"id": i, "name": f"user-{i}", "n": i % 7}).encode()


def _config(bootstrap: str, topic: str, storage: dict[str, str], **extra: str) -> dict[str, str]:
    raw = {
        "name": unique_name("sink"),
        "topics": topic,
        "bootstrap.servers": bootstrap,
        "flush.size": "400",
        "format.class": "json",
        "http.listen": "none",
        "shutdown.timeout.ms": "20000",
    }
    raw.update(storage)
    raw.update(extra)
    return raw


def _s3(endpoint: S3Endpoint, bucket: str) -> dict[str, str]:
    return {
        "s3.bucket.name": bucket,
        "store.url": endpoint.url,
        "s3.region": endpoint.region,
        "s3.path.style.access.enabled": "true",
        "aws.access.key.id": endpoint.access_key,
        "aws.secret.access.key": endpoint.secret_key,
    }


@pytest.mark.parametrize("backend", ["s3", "file"])
def test_catchup_archives_every_record_once(
    backend: str, kafka_bootstrap: str, s3_endpoint: S3Endpoint, s3_bucket: str, tmp_path: Path
) -> None:
    topic = create_topic(kafka_bootstrap, 3)
    produce_n(kafka_bootstrap, topic, N, value=_value)
    storage_keys = (
        _s3(s3_endpoint, s3_bucket) if backend == "s3" else {"storage.url": tmp_path.as_uri()}
    )
    cfg = parse(_config(kafka_bootstrap, topic, storage_keys), environ={})
    summary = Sink(cfg).run(catchup=True)
    assert summary.records == N

    storage = storage_from_config(cfg)
    lines = archived_lines(storage, "topics", topic)
    result = check_exactly_once([str(i) for i in range(N)], ids_of(lines))
    assert result.ok, str(result)
    # files are Confluent-named and hold flush.size records each (plus a last partial one)
    keys = [i.key for i in storage.list(f"topics/{topic}/")]
    assert all(k.split("/")[2].startswith("partition=") for k in keys)
    for p in range(3):
        ms = [m for m in markers(storage, topic, p) if m.kind == "commit"]
        assert ms, f"no commit for partition {p}"
        assert all(f.records <= 400 for m in ms for f in m.files)
    assert staging_left(storage) == []
    report = verify(storage, cfg)
    assert report.ok, report.text()

    # a second catch-up finds nothing new and writes nothing
    again = Sink(cfg).run(catchup=True)
    assert again.records == 0
    assert check_exactly_once(
        [str(i) for i in range(N)], ids_of(archived_lines(storage, "topics", topic))
    ).ok
