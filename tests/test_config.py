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


# -- key.converter ---------------------------------------------------------------------------

EXAMPLES = Path("/work/shared/examples")


@pytest.mark.parametrize(
    ("value", "short"),
    [
        ("bytes", "bytes"),
        ("org.apache.kafka.connect.converters.ByteArrayConverter", "bytes"),
        ("String", "string"),
        ("org.apache.kafka.connect.storage.StringConverter", "string"),
        ("json", "json"),
        ("org.apache.kafka.connect.json.JsonConverter", "json"),
        ("io.confluent.connect.avro.AvroConverter", "avro"),
        ("io.confluent.connect.json.JsonSchemaConverter", "jsonschema"),
        ("protobuf", "protobuf"),
    ],
)
def test_key_converter_accepts_what_the_decoders_accept(value: str, short: str) -> None:
    from formats.decoders import decoder_name

    cfg = parse({**BASE, "key.converter": value}, environ={})
    assert cfg.key_converter == short == decoder_name(value, "key.converter")


def test_key_converter_rejects_anything_else_in_one_line() -> None:
    from formats.decoders import ALIASES

    with pytest.raises(ConfigError) as err:
        parse({**BASE, "key.converter": "org.apache.kafka.connect.storage.StringConvertor"}, {})
    lines = str(err.value).splitlines()
    assert len(lines) == 2, lines  # the heading and one line for the key
    line = lines[1].strip()
    assert line.startswith("key.converter: unknown converter")
    assert "did you mean org.apache.kafka.connect.storage.StringConverter?" in line
    assert all(name in line for name in ALIASES if name not in ("bytearray", "json_schema"))
    with pytest.raises(ConfigError, match=r"key\.converter: unknown converter 'nope'") as err:
        parse({**BASE, "key.converter": "nope"}, environ={})
    assert "did you mean" not in str(err.value)


def test_value_converter_is_checked_when_the_config_is_read() -> None:
    # kept as written (the decoders map class names themselves), refused at start-up if unknown
    cfg = parse({**BASE, "value.converter": " io.confluent.connect.avro.AvroConverter "}, {})
    assert cfg.value_converter == "io.confluent.connect.avro.AvroConverter"
    with pytest.raises(ConfigError) as err:
        parse({**BASE, "value.converter": "jsn"}, environ={})
    lines = str(err.value).splitlines()
    assert len(lines) == 2, lines
    line = lines[1].strip()
    assert line.startswith("value.converter: unknown converter 'jsn' (did you mean json?)"), line


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.name)
def test_connect_examples_load_unchanged(example: Path) -> None:
    from formats.decoders import decoder_name

    raw = json.loads(example.read_text())["config"]
    cfg = load_config(example, environ={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092"})
    if "key.converter" in raw:
        assert cfg.key_converter == decoder_name(raw["key.converter"], "key.converter")


# -- keys whose meaning differs from Kafka Connect's -------------------------------------------


def _note(cfg_notes: tuple[str, ...], start: str) -> str:
    found = [n for n in cfg_notes if n.startswith(start)]
    assert len(found) == 1, cfg_notes
    return found[0]


def test_changed_meanings_are_noted_only_when_they_apply() -> None:
    plain = parse({**BASE, "errors.tolerance": "all", "errors.deadletterqueue.topic.name": "d"}, {})
    assert plain.notes == ()
    cfg = parse(
        {
            **BASE,
            "errors.tolerance": "all",
            "store.kafka.keys": "true",
            "store.kafka.headers": "true",
            "topics.dir": "raw",
            "key.converter": "io.confluent.connect.avro.AvroConverter",
            "key.converter.schema.registry.url": "http://registry:8081",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "rotate.interval.ms": "600000",
            "rotate.schedule.interval.ms": "3600000",
        },
        environ={},
    )
    assert "_s3sink/errors/<topic>/<partition>/" in _note(cfg.notes, "errors.tolerance=all")
    assert "Kafka Connect drops them" in _note(cfg.notes, "errors.tolerance=all")
    assert "raw/_keys/<topic>/" in _note(cfg.notes, "store.kafka.keys")
    assert "raw/_headers/<topic>/" in _note(cfg.notes, "store.kafka.headers")
    key_note = _note(cfg.notes, "key.converter=avro")
    assert "as its bytes" in key_note and "5-byte Schema Registry header" in key_note
    assert "key.converter.schema.registry.url is not used" in key_note
    assert "schemas.enable=true" in _note(cfg.notes, "value.converter=JsonConverter")
    assert "ignores rotate.interval.ms" in _note(cfg.notes, "rotate.interval.ms")
    assert "exactly-once" in _note(cfg.notes, "rotate.schedule.interval.ms")
    # a time-based partitioner: rotate.interval.ms means what it means in Kafka Connect
    timed = parse(
        {
            **BASE,
            "rotate.interval.ms": "600000",
            "partitioner.class": "io.confluent.connect.storage.partitioner.HourlyPartitioner",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter.schemas.enable": "true",
            "key.converter": "org.apache.kafka.connect.storage.StringConverter",
        },
        environ={},
    )
    assert timed.notes == ()


def test_notes_name_where_the_writer_really_puts_keys_headers_and_bad_records() -> None:
    """The paths the notes give are where a partition writer writes (real writer and commit
    protocol over in-memory storage), and keys with a decoding key.converter land as bytes."""
    import base64
    import re

    from s3sink.clock import ManualClock
    from s3sink.commitlog import PartitionLog
    from s3sink.committer import Committer
    from s3sink.context import build_context
    from s3sink.metrics import Metrics
    from s3sink.records import RecordBatch
    from s3sink.rotation import RotationReason
    from s3sink.storage.memory import MemoryStorage
    from s3sink.writer import PartitionWriter

    config = parse(
        {
            **BASE,
            "topics": "orders",
            "storage.url": "memory://",
            "topics.dir": "raw",
            "format.class": "json",
            "value.converter": "json",
            "errors.tolerance": "all",
            "store.kafka.keys": "true",
            "store.kafka.headers": "true",
            "key.converter": "avro",
        },
        environ={},
    )
    avro_key = b"\x00\x00\x00\x00\x01\x02k"  # a Schema Registry wire-format key
    values: list[bytes | None] = [b'{"id":0}', b"not json", b'{"id":2}']
    batch = RecordBatch(
        "orders", 0, [0, 1, 2], [1_700_000_000_000] * 3, [1] * 3, [avro_key] * 3, values,
        [[("h", b"v")]] * 3,
    )  # fmt: skip
    storage = MemoryStorage()
    clock = ManualClock(1_700_000_000_000)
    committer = Committer(2, clock, Metrics(), lambda w, m: None)
    ctx = build_context(config, storage, clock, Metrics(), committer)
    plog = PartitionLog(storage, "orders", 0, "test", "attempt-1", clock)
    writer = PartitionWriter(ctx, "orders", 0, plog, plog.takeover(None, lambda: 0).fence.end)
    writer.append(batch)
    writer.seal(RotationReason.FLUSH_SIZE)
    assert committer.wait_idle(None, 30) and writer.failure is None, writer.failure
    listed = [i.key for i in storage.list("")]

    def matching(template: str) -> list[str]:
        rx = re.escape(template).replace("<topic>", "orders").replace("<partition>", "0")
        rx = rx.replace(re.escape("<partition path>"), "[^/]+")
        rx = rx.replace(re.escape("<data file name>"), r"orders\+0\+\d+")
        rx = rx.replace(re.escape("<extension>"), r"\.json")
        return [k for k in listed if re.fullmatch(rx, k)]

    errors_dir = re.search(r"under (\S+/)", _note(config.notes, "errors.tolerance=all"))
    assert errors_dir is not None
    error_files = [k for k in listed if k.startswith(errors_dir.group(1).split("<topic>")[0])]
    assert [k for k in error_files if k.startswith("_s3sink/errors/orders/0/")] == error_files
    assert len(error_files) == 1, listed
    bad = [json.loads(line) for line in storage.get(error_files[0])[0].splitlines()]
    assert [base64.b64decode(b["value"]) for b in bad] == [b"not json"]
    for kind in ("keys", "headers"):
        tree = re.search(
            r"sibling tree, (.+?), not next", _note(config.notes, f"store.kafka.{kind}")
        )
        assert tree is not None
        assert len(matching(tree.group(1))) == 1, (tree.group(1), listed)
    keys_file = matching("raw/_keys/<topic>/<partition path>/<data file name>.keys<extension>")
    lines = storage.get(keys_file[0])[0].splitlines()
    assert [base64.b64decode(json.loads(line)) for line in lines] == [avro_key, avro_key]
