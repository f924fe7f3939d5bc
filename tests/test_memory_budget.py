"""The consumer's prefetch takes a share of ``buffer.memory.bytes``; the files get the rest."""

from __future__ import annotations

from s3sink.config import SinkConfig
from s3sink.memory import configure_arrow_memory, files_budget, prefetch_config
from s3sink.sink import consumer_config

MiB = 1024 * 1024


def test_prefetch_is_a_share_of_the_budget() -> None:
    backoff = {"fetch.queue.backoff.ms": 10}
    assert prefetch_config(256 * MiB, {}) == {
        "queued.max.messages.kbytes": 8 * 1024,
        "queued.min.messages": 32 * 1024,
        "fetch.max.bytes": 4 * MiB,
        **backoff,
    }
    # capped at librdkafka's defaults, floored for tiny budgets
    assert prefetch_config(4096 * MiB, {}) == {
        "queued.max.messages.kbytes": 65536,
        "queued.min.messages": 4 * 65536,
        "fetch.max.bytes": 52_428_800,
        **backoff,
    }
    assert prefetch_config(2 * MiB, {}) == {
        "queued.max.messages.kbytes": 1024,
        "queued.min.messages": 10_000,
        "fetch.max.bytes": MiB,
        **backoff,
    }
    user = {"fetch.max.bytes": 5, "queued.max.messages.kbytes": 7, "fetch.queue.backoff.ms": 1}
    assert prefetch_config(256 * MiB, user) == {}


def test_files_get_the_rest() -> None:
    # the prefetch is charged at what librdkafka really holds: 3 x (8 MiB + 4 MiB)
    conf = prefetch_config(256 * MiB, {})
    assert files_budget(256 * MiB, conf) == 256 * MiB - 36 * MiB
    assert files_budget(8 * MiB, {"queued.max.messages.kbytes": 65536}) == 2 * MiB
    # unreadable settings: librdkafka's defaults, at least a quarter for the files
    assert files_budget(256 * MiB, {"fetch.max.bytes": "x"}) == 64 * MiB
    assert files_budget(1024 * MiB, {"fetch.max.bytes": "x"}) == 1024 * MiB - 3 * (
        64 * MiB + 52_428_800
    )


def test_user_settings_win() -> None:
    cfg = SinkConfig(
        bootstrap_servers="x",
        consumer={"queued.max.messages.kbytes": "1000"},
    )
    conf = consumer_config(cfg, catchup=True)
    assert conf["queued.max.messages.kbytes"] == "1000"
    assert "queued.min.messages" not in conf
    assert conf["fetch.max.bytes"] == 4 * MiB


def test_arrow_memory_is_configured_once() -> None:
    configure_arrow_memory()
    configure_arrow_memory()
