"""The ``_kafka`` metadata of ``store.kafka.metadata=true``, in each format's terms.

Fields: ``topic``, ``partition``, ``offset``, ``timestamp`` (UTC, millisecond precision; null
when the record has none), ``timestamp_type`` (``CreateTime``, ``LogAppendTime`` or
``NoTimestampType``), ``key`` and ``headers`` (a list of ``{key, value}``). Keys and header
values are bytes (Parquet ``BYTE_ARRAY``, Avro ``bytes``, base64 text in JSON) unless
``key.converter`` is ``string``, which makes the key text.
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

import pyarrow as pa

if TYPE_CHECKING:
    from s3sink.config import SinkConfig
    from s3sink.records import RecordBatch

COLUMN = "_kafka"
TIMESTAMP_TYPES = ("NoTimestampType", "CreateTime", "LogAppendTime")
STRING_KEY_CONVERTERS = frozenset({"string", "org.apache.kafka.connect.storage.StringConverter"})

HEADER_TYPE = pa.struct([pa.field("key", pa.string()), pa.field("value", pa.binary())])


def key_as_text(config: SinkConfig) -> bool:
    return config.key_converter in STRING_KEY_CONVERTERS


def arrow_type(text_key: bool) -> pa.DataType:
    return pa.struct(
        [
            pa.field("topic", pa.string(), nullable=False),
            pa.field("partition", pa.int32(), nullable=False),
            pa.field("offset", pa.int64(), nullable=False),
            pa.field("timestamp", pa.timestamp("ms", "UTC")),
            pa.field("timestamp_type", pa.string()),
            pa.field("key", pa.string() if text_key else pa.binary()),
            pa.field("headers", pa.list_(HEADER_TYPE)),
        ]
    )


def _ts_type(t: int) -> str:
    return TIMESTAMP_TYPES[t] if 0 <= t < len(TIMESTAMP_TYPES) else str(t)


def _text(b: bytes | None) -> str | None:
    return None if b is None else b.decode("utf-8", "replace")


def arrow_column(batch: RecordBatch, text_key: bool) -> pa.StructArray:
    """The ``_kafka`` struct column of a batch, built column-wise."""
    n = len(batch)
    ts = pa.array(batch.timestamps, pa.int64())
    ts_valid = [t >= 0 for t in batch.timestamps]
    timestamps = pa.array(
        [t if ok else None for t, ok in zip(batch.timestamps, ts_valid, strict=True)]
        if not all(ts_valid)
        else ts,
        pa.int64(),
    ).cast(pa.timestamp("ms", "UTC"))
    keys: list[Any] = [_text(k) for k in batch.keys] if text_key else batch.keys
    headers = [[(k, v) for k, v in (h or ())] for h in batch.headers]
    typ = arrow_type(text_key)
    return pa.StructArray.from_arrays(
        [
            pa.array([batch.topic] * n, pa.string()),
            pa.array([batch.partition] * n, pa.int32()),
            pa.array(batch.offsets, pa.int64()),
            timestamps,
            pa.array([_ts_type(t) for t in batch.timestamp_types], pa.string()),
            pa.array(keys, pa.string() if text_key else pa.binary()),
            pa.array(headers, pa.list_(HEADER_TYPE)),
        ],
        fields=list(typ),
    )


def avro_schema(text_key: bool) -> dict[str, Any]:
    return {
        "type": "record",
        "name": "KafkaMetadata",
        "namespace": "s3sink",
        "fields": [
            {"name": "topic", "type": "string"},
            {"name": "partition", "type": "int"},
            {"name": "offset", "type": "long"},
            {
                "name": "timestamp",
                "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}],
                "default": None,
            },
            {"name": "timestamp_type", "type": "string"},
            {"name": "key", "type": ["null", "string" if text_key else "bytes"], "default": None},
            {
                "name": "headers",
                "type": {
                    "type": "array",
                    "items": {
                        "type": "record",
                        "name": "KafkaHeader",
                        "fields": [
                            {"name": "key", "type": "string"},
                            {"name": "value", "type": ["null", "bytes"], "default": None},
                        ],
                    },
                },
            },
        ],
    }


def avro_records(batch: RecordBatch, text_key: bool) -> list[dict[str, Any]]:
    """The ``_kafka`` values of a batch for fastavro (timestamps as epoch ms)."""
    topic, partition = batch.topic, batch.partition
    return [
        {
            "topic": topic,
            "partition": partition,
            "offset": batch.offsets[i],
            "timestamp": batch.timestamps[i] if batch.timestamps[i] >= 0 else None,
            "timestamp_type": _ts_type(batch.timestamp_types[i]),
            "key": _text(batch.keys[i]) if text_key else batch.keys[i],
            "headers": [{"key": k, "value": v} for k, v in (batch.headers[i] or ())],
        }
        for i in range(len(batch))
    ]


def json_fragments(batch: RecordBatch, text_key: bool) -> list[bytes]:
    """``{"topic":...}`` per record: the value of ``_kafka`` in a JSON line."""
    topic = json.dumps(batch.topic, ensure_ascii=False)
    out: list[bytes] = []
    for i in range(len(batch)):
        key = batch.keys[i]
        if key is None:
            key_json = "null"
        elif text_key:
            key_json = json.dumps(key.decode("utf-8", "replace"), ensure_ascii=False)
        else:
            key_json = '"' + base64.b64encode(key).decode("ascii") + '"'
        h = batch.headers[i]
        headers_json = (
            json.dumps(
                [
                    {"key": k, "value": None if v is None else base64.b64encode(v).decode("ascii")}
                    for k, v in h
                ],
                separators=(",", ":"),
                ensure_ascii=False,
            )
            if h
            else "[]"
        )
        ts = batch.timestamps[i]
        out.append(
            (
                f'{{"topic":{topic},"partition":{batch.partition},"offset":{batch.offsets[i]},'
                f'"timestamp":{ts if ts >= 0 else "null"},'
                f'"timestamp_type":"{_ts_type(batch.timestamp_types[i])}",'
                f'"key":{key_json},"headers":{headers_json}}}'
            ).encode()
        )
    return out
