"""Everything a :class:`~s3sink.writer.PartitionWriter` needs, built once from the config."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from formats import load_format
from formats.decoders import load_value_decoder
from formats.sidecar import load_sidecar_formats
from partitioners import load_partitioner
from s3sink.rotation import RotationPolicy

if TYPE_CHECKING:
    from formats.base import Format
    from formats.decoders.base import Decoder
    from partitioners.base import Partitioner
    from s3sink.clock import Clock
    from s3sink.committer import Committer
    from s3sink.config import SinkConfig
    from s3sink.metrics import Metrics
    from s3sink.storage.base import Storage
    from s3sink.writer import DeadLetter


@dataclass
class SinkContext:
    config: SinkConfig
    format: Format
    partitioner: Partitioner
    decoder: Decoder
    storage: Storage
    clock: Clock
    metrics: Metrics
    policy: RotationPolicy
    committer: Committer
    dead_letter: DeadLetter | None = None
    #: Called before a marker is created, so that dead letters are delivered first.
    before_commit: Callable[[], None] | None = None
    #: Keys and headers files written next to each data file (store.kafka.keys/headers).
    sidecars: Mapping[str, Format] = field(default_factory=dict)
    #: Whether a change of schema between two parts rolls the open files.
    rolls_on_schema_change: bool = True


def policy_from(config: SinkConfig) -> RotationPolicy:
    return RotationPolicy(
        flush_size=config.flush_size,
        file_max_bytes=config.file_max_bytes,
        rotate_interval_ms=config.rotate_interval_ms,
        schedule_interval_ms=config.rotate_schedule_interval_ms,
        timezone=config.timezone,
    )


def build_context(
    config: SinkConfig,
    storage: Storage,
    clock: Clock,
    metrics: Metrics,
    committer: Committer,
    dead_letter: DeadLetter | None = None,
    before_commit: Callable[[], None] | None = None,
) -> SinkContext:
    fmt = load_format(config)
    rolls = getattr(fmt, "rolls_on_schema_change", fmt.needs_values)
    return SinkContext(
        config=config,
        format=fmt,
        sidecars=load_sidecar_formats(config),
        rolls_on_schema_change=bool(rolls()),
        partitioner=load_partitioner(config),
        decoder=load_value_decoder(config),
        storage=storage,
        clock=clock,
        metrics=metrics,
        policy=policy_from(config),
        committer=committer,
        dead_letter=dead_letter,
        before_commit=before_commit,
    )
