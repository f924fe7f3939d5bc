"""Value and key decoders (``value.converter`` / ``key.converter``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from formats.decoders.base import BytesDecoder, Decoder
from s3sink.errors import ConfigError

if TYPE_CHECKING:
    from s3sink.config import SinkConfig

#: Converter names (ours and Kafka Connect's class names) -> decoder short names.
ALIASES = {
    "bytes": "bytes",
    "org.apache.kafka.connect.converters.ByteArrayConverter": "bytes",
}


def load_value_decoder(config: SinkConfig) -> Decoder:
    name = ALIASES.get(config.value_converter, config.value_converter)
    if name == "bytes":
        return BytesDecoder()
    raise ConfigError(
        f"value.converter: unknown converter {config.value_converter!r}; use bytes",
        key="value.converter",
    )
