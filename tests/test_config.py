"""Configuration: sources, precedence, validation messages, secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from s3sink.config import load_config, parse, parse_properties
from s3sink.errors import ConfigError

BASE = {"topics": "t", "s3.bucket.name": "b", "bootstrap.servers": "127.0.0.1:9092"}


def test_three_file_kinds_give_the_same_config(tmp_path: Path) -> None:
    connect = tmp_path / "c.json"
    connect.write_text(json.dumps({"name": "x", "config": {**BASE, "flush.size": "7"}}))
    props = tmp_path / "c.properties"
    props.write_text("name=x\n" + "".join(f"{k}={v}\n" for k, v in BASE.items()) + "flush.size 7\n")
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text(
        "name: x\ntopics: [t]\ns3:\n  bucket:\n    name: b\n"
        "bootstrap.servers: 127.0.0.1:9092\nflush.size: 7\n"
    )
    configs = [load_config(p, environ={}) for p in (connect, props, yaml_file)]
    assert configs[0] == configs[1] == configs[2]
    assert configs[0].flush_size == 7
    assert configs[0].effective_group_id == "s3sink-x"


def test_precedence_file_env_flags() -> None:
    env = {"S3SINK_FLUSH_SIZE": "20", "S3SINK_CONSUMER_SASL_PASSWORD": "pw"}
    cfg = parse({**BASE, "flush.size": "10"}, environ=env)
    assert cfg.flush_size == 20
    assert cfg.consumer["sasl.password"] == "pw"
    assert (
        parse({**BASE, "flush.size": "10"}, environ=env, overrides={"flush.size": "30"}).flush_size
        == 30
    )


def test_errors_name_key_and_fix() -> None:
    with pytest.raises(ConfigError) as err:
        parse({**BASE, "flush.sise": "1", "parquet.codec": "brotli", "flush.size": "x"}, environ={})
    text = str(err.value)
    assert "flush.sise: unknown key; did you mean flush.size?" in text
    assert "parquet.codec: expected one of none, snappy, gzip, zstd, lz4" in text
    assert "flush.size: expected a whole number" in text
    with pytest.raises(ConfigError, match=r"bootstrap\.servers: required"):
        parse({"topics": "t", "s3.bucket.name": "b"}, environ={})
    with pytest.raises(ConfigError, match="topics: required"):
        parse({"s3.bucket.name": "b", "bootstrap.servers": "x:1"}, environ={})
    with pytest.raises(ConfigError, match="transforms"):
        parse({**BASE, "transforms": "a", "transforms.a.type": "x"}, environ={})


def test_connect_only_keys_are_noted() -> None:
    cfg = parse({**BASE, "connector.class": "x", "tasks.max": "4"}, environ={})
    assert any(n.startswith("connector.class") for n in cfg.notes)
    assert any(n.startswith("tasks.max") for n in cfg.notes)


def test_secrets_are_redacted_and_not_echoed() -> None:
    cfg = parse(
        {
            **BASE,
            "aws.access.key.id": "AKIAXXX",
            "aws.secret.access.key": "s3cr3t",
            "consumer.sasl.password": "hunter2",
            "value.converter.basic.auth.user.info": "u:p",
        },
        environ={},
    )
    shown = cfg.redacted()
    assert shown["aws.secret.access.key"] == "[redacted]"
    assert shown["consumer.sasl.password"] == "[redacted]"
    assert shown["value.converter.basic.auth.user.info"] == "[redacted]"
    assert "s3cr3t" not in repr(shown) and "hunter2" not in repr(shown)
    with pytest.raises(ConfigError) as err:
        parse({**BASE, "aws.secret.access.key": "s3cr3t"}, environ={})
    assert "s3cr3t" not in str(err.value)


def test_sizes_and_properties_escapes() -> None:
    cfg = parse({**BASE, "file.max.bytes": "64MiB", "buffer.memory.bytes": "1GB"}, environ={})
    assert cfg.file_max_bytes == 64 * 1024 * 1024
    assert cfg.buffer_memory_bytes == 10**9
    props = parse_properties("a.b = x\\\n  y\n# c\n! d\nkey\\=with=v\nsep=\\t\n")
    assert props == {"a.b": "xy", "key=with": "v", "sep": "\t"}
