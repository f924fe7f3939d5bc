"""Value and key decoders (``value.converter`` / ``key.converter``).

=====================  ===============================================================
``bytes``              ``org.apache.kafka.connect.converters.ByteArrayConverter``: as is
``string``             ``org.apache.kafka.connect.storage.StringConverter``: UTF-8 text
``json``               ``org.apache.kafka.connect.json.JsonConverter``: schemaless JSON
                       (inferred or ``value.schema``), or envelopes with
                       ``value.converter.schemas.enable=true``
``avro``               ``io.confluent.connect.avro.AvroConverter``
``jsonschema``         ``io.confluent.connect.json.JsonSchemaConverter``
``protobuf``           ``io.confluent.connect.protobuf.ProtobufConverter``
=====================  ===============================================================

The last three read the Confluent wire format and need
``value.converter.schema.registry.url``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from formats.decoders.base import BytesDecoder, Decoder
from s3sink.errors import ConfigError

if TYPE_CHECKING:
    from s3sink.config import SinkConfig

#: Converter names (ours and Kafka Connect's class names) -> decoder short names.
ALIASES = {
    "bytes": "bytes",
    "bytearray": "bytes",
    "org.apache.kafka.connect.converters.ByteArrayConverter": "bytes",
    "string": "string",
    "org.apache.kafka.connect.storage.StringConverter": "string",
    "json": "json",
    "org.apache.kafka.connect.json.JsonConverter": "json",
    "avro": "avro",
    "io.confluent.connect.avro.AvroConverter": "avro",
    "jsonschema": "jsonschema",
    "json_schema": "jsonschema",
    "io.confluent.connect.json.JsonSchemaConverter": "jsonschema",
    "protobuf": "protobuf",
    "io.confluent.connect.protobuf.ProtobufConverter": "protobuf",
}

REGISTRY_DECODERS = frozenset({"avro", "jsonschema", "protobuf"})


def decoder_name(converter: str, key: str = "value.converter") -> str:
    name = ALIASES.get(converter.strip()) or ALIASES.get(converter.strip().lower())
    if name is None:
        raise ConfigError(
            f"{key}: unknown converter {converter!r}; use bytes, string, json, avro, "
            "jsonschema, protobuf or a Kafka Connect converter class name",
            key=key,
        )
    return name


def _columns_needed(config: SinkConfig) -> bool:
    """Whether anything reads decoded columns (else the Avro decoder only validates)."""
    from formats import load_format
    from formats.avro import AvroFormat
    from partitioners import load_partitioner

    fmt = load_format(config)
    return not isinstance(fmt, AvroFormat) or load_partitioner(config).needs_values()


def _json_columns_needed(config: SinkConfig) -> bool:
    """Whether anything reads decoded JSON columns (JSON lines keep the values as written)."""
    from formats import load_format
    from formats.json import JsonFormat
    from partitioners import load_partitioner

    return (
        not isinstance(load_format(config), JsonFormat) or load_partitioner(config).needs_values()
    )


def load_value_decoder(config: SinkConfig) -> Decoder:
    name = decoder_name(config.value_converter)
    if name == "bytes":
        return BytesDecoder()
    if name == "string":
        from formats.decoders.simple import StringDecoder

        return StringDecoder()
    if name == "json":
        if config.value_converter_schemas_enable:
            from formats.decoders.connect_json import ConnectJsonDecoder

            return ConnectJsonDecoder()
        from formats.decoders.json_schemaless import SchemalessJsonDecoder, load_value_schema

        explicit = None if config.value_schema is None else load_value_schema(config.value_schema)
        return SchemalessJsonDecoder(explicit, columns=_json_columns_needed(config))
    url = config.value_converter_schema_registry_url
    if not url:
        raise ConfigError(
            f"value.converter.schema.registry.url: required with value.converter={name}",
            key="value.converter.schema.registry.url",
        )
    from formats.decoders.registry import Registry

    registry = Registry(url, config.value_converter_props)
    compat = config.schema_compatibility
    if name == "avro":
        from formats.decoders.avro import AvroDecoder

        return AvroDecoder(registry, compat, materialize=_columns_needed(config))
    if name == "jsonschema":
        from formats.decoders.jsonschema import JsonSchemaDecoder

        return JsonSchemaDecoder(registry, compat)
    from formats.decoders.protobuf import ProtobufDecoder

    return ProtobufDecoder(registry, compat)
