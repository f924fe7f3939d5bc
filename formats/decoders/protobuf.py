"""``protobuf`` (``io.confluent.connect.protobuf.ProtobufConverter``): wire-format Protobuf.

After the 5-byte header come the message indexes (a zig-zag varint count, then the path of
the message type in the schema file; ``0`` alone means the first message), then the message.
Schemas are fetched from the registry as serialized ``FileDescriptorProto``\\ s (with their
references) and built into a descriptor pool once per id.

Arrow types: messages -> structs, ``repeated`` -> lists, ``map<K, V>`` -> maps, enums ->
strings (the value name), ``bytes`` -> binary, 32-bit ints -> int32, ``uint32`` -> int64,
``uint64`` -> uint64, ``google.protobuf.Timestamp`` -> ``timestamp[us, UTC]``, the wrapper
types (``StringValue``, ...) -> their nullable scalar, ``Struct``/``Value``/``ListValue``/
``Any`` and recursive messages -> JSON text. Fields without presence (proto3 scalars) read as
their default, as Connect does; message fields and ``optional`` scalars that are unset are
null. Decoding is one Python call chain per message (protobuf has no columnar decoder).
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from formats.decoders.base import META_ENCODING, Decoded
from formats.decoders.registry import RegistrySchema, UnknownSchema
from formats.decoders.registry_arrow import Loaded, RegistryArrowDecoder
from formats.decoders.wire import HEADER, read_varint

if TYPE_CHECKING:
    from s3sink.records import RecordBatch

Reader = Callable[[Any], Any]
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_WRAPPERS = {
    "google.protobuf.DoubleValue": pa.float64(),
    "google.protobuf.FloatValue": pa.float32(),
    "google.protobuf.Int64Value": pa.int64(),
    "google.protobuf.UInt64Value": pa.uint64(),
    "google.protobuf.Int32Value": pa.int32(),
    "google.protobuf.UInt32Value": pa.int64(),
    "google.protobuf.BoolValue": pa.bool_(),
    "google.protobuf.StringValue": pa.string(),
    "google.protobuf.BytesValue": pa.binary(),
}
_JSON_TEXT = frozenset(
    {
        "google.protobuf.Struct",
        "google.protobuf.Value",
        "google.protobuf.ListValue",
        "google.protobuf.Any",
    }
)


def _pool() -> Any:
    from google.protobuf import descriptor_pool

    pool = descriptor_pool.DescriptorPool()
    try:  # the well-known and Confluent types, as confluent-kafka's own deserializer sees them
        from confluent_kafka.schema_registry.common.protobuf import _init_pool

        _init_pool(pool)
    except Exception:  # pragma: no cover - older client: the protobuf well-known types only
        from google.protobuf import (
            any_pb2,
            duration_pb2,
            empty_pb2,
            field_mask_pb2,
            struct_pb2,
            timestamp_pb2,
            wrappers_pb2,
        )

        for mod in (
            any_pb2,
            duration_pb2,
            empty_pb2,
            field_mask_pb2,
            struct_pb2,
            timestamp_pb2,
            wrappers_pb2,
        ):
            pool.AddSerializedFile(mod.DESCRIPTOR.serialized_pb)
    return pool


class ProtoToArrow:
    def __init__(self) -> None:
        self._readers: dict[str, tuple[pa.DataType, Reader]] = {}

    def message(self, desc: Any, stack: tuple[str, ...] = ()) -> tuple[pa.DataType, Reader]:
        name = desc.full_name
        if name == "google.protobuf.Timestamp":
            return pa.timestamp(
                "us", "UTC"
            ), lambda m: _EPOCH + dt.timedelta(seconds=m.seconds, microseconds=m.nanos // 1000)
        if name in _WRAPPERS:
            return _WRAPPERS[name], lambda m: m.value
        if name in _JSON_TEXT or name in stack:
            from google.protobuf import json_format

            return pa.string(), lambda m: json_format.MessageToJson(m, indent=None)
        hit = self._readers.get(name)
        if hit is not None:
            return hit
        inner = (*stack, name)
        fields: list[pa.Field] = []
        readers: list[tuple[str, Reader]] = []
        for fd in desc.fields:
            ftype, read = self.field(fd, inner)
            fields.append(pa.field(fd.name, ftype))
            readers.append((fd.name, read))

        def read_message(m: Any) -> dict[str, Any]:
            return {n: r(m) for n, r in readers}

        out = (pa.struct(fields), read_message)
        self._readers[name] = out
        return out

    def field(self, fd: Any, stack: tuple[str, ...]) -> tuple[pa.DataType, Reader]:
        from google.protobuf.descriptor import FieldDescriptor as F

        name = fd.name
        is_map = (
            fd.message_type is not None
            and fd.message_type.GetOptions().map_entry
            and _is_repeated(fd)
        )
        if is_map:
            entry = fd.message_type
            kt, _kread = self._scalar(entry.fields_by_name["key"], stack)
            vt, vread = self._value_type(entry.fields_by_name["value"], stack)
            vfd = entry.fields_by_name["value"]
            if vfd.type == F.TYPE_MESSAGE:
                return pa.map_(kt, vt), lambda m: [
                    (k, vread(v)) for k, v in getattr(m, name).items()
                ]
            return pa.map_(kt, vt), lambda m: list(getattr(m, name).items())
        et, eread = self._value_type(fd, stack)
        if _is_repeated(fd):
            return pa.list_(et), lambda m: [eread(x) for x in getattr(m, name)]
        if fd.type == F.TYPE_MESSAGE:
            return et, lambda m: eread(getattr(m, name)) if m.HasField(name) else None
        if fd.has_presence:
            return et, lambda m: eread(getattr(m, name)) if m.HasField(name) else None
        return et, lambda m: eread(getattr(m, name))

    def _value_type(self, fd: Any, stack: tuple[str, ...]) -> tuple[pa.DataType, Reader]:
        from google.protobuf.descriptor import FieldDescriptor as F

        if fd.type == F.TYPE_MESSAGE:
            return self.message(fd.message_type, stack)
        return self._scalar(fd, stack)

    def _scalar(self, fd: Any, stack: tuple[str, ...]) -> tuple[pa.DataType, Reader]:
        from google.protobuf.descriptor import FieldDescriptor as F

        ident: Reader = _identity
        t = fd.type
        if t == F.TYPE_ENUM:
            values = {v.number: v.name for v in fd.enum_type.values}
            return pa.string(), lambda v: values.get(v, str(v))
        table: dict[int, pa.DataType] = {
            F.TYPE_DOUBLE: pa.float64(),
            F.TYPE_FLOAT: pa.float32(),
            F.TYPE_INT64: pa.int64(),
            F.TYPE_SINT64: pa.int64(),
            F.TYPE_SFIXED64: pa.int64(),
            F.TYPE_UINT64: pa.uint64(),
            F.TYPE_FIXED64: pa.uint64(),
            F.TYPE_INT32: pa.int32(),
            F.TYPE_SINT32: pa.int32(),
            F.TYPE_SFIXED32: pa.int32(),
            F.TYPE_UINT32: pa.int64(),
            F.TYPE_FIXED32: pa.int64(),
            F.TYPE_BOOL: pa.bool_(),
            F.TYPE_STRING: pa.string(),
            F.TYPE_BYTES: pa.binary(),
        }
        return table.get(t, pa.string()), ident


def _identity(v: Any) -> Any:
    return v


def _is_repeated(fd: Any) -> bool:
    is_repeated = getattr(fd, "is_repeated", None)
    if is_repeated is not None:
        return bool(is_repeated)
    return bool(fd.label == fd.LABEL_REPEATED)


def message_indexes(value: bytes) -> tuple[list[int], int]:
    """The message index path after the header and where the message starts."""
    count, pos = read_varint(value, HEADER)
    if count == 0:
        return [0], pos
    if count < 0 or count > 100:
        raise ValueError(f"bad message index count {count}")
    path: list[int] = []
    for _ in range(count):
        idx, pos = read_varint(value, pos)
        path.append(idx)
    return path, pos


class ProtobufDecoder(RegistryArrowDecoder):
    """One message type per schema id: the one the first record with that id names (records of
    another message type of the same schema file are bad records)."""

    kind = "PROTOBUF"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._paths: dict[int, list[int]] = {}

    def decode(self, batch: RecordBatch) -> Decoded:
        for v in batch.values:
            if v is None or len(v) < HEADER + 1 or v[0] != 0:
                continue
            sid = int.from_bytes(v[1:HEADER], "big")
            if sid not in self._paths:
                try:
                    self._paths[sid] = message_indexes(v)[0]
                except ValueError:
                    continue
        return super().decode(batch)

    def _file(self, pool: Any, rs: RegistrySchema, name: str, seen: set[str]) -> Any:
        from google.protobuf import descriptor_pb2

        for ref in rs.references:
            if ref.name in seen or ref.name.startswith(("google/protobuf/", "confluent/")):
                continue
            seen.add(ref.name)
            self._file(pool, self._registry.reference(ref, fmt="serialized"), ref.name, seen)
        fdp = descriptor_pb2.FileDescriptorProto()
        try:
            fdp.ParseFromString(base64.b64decode(rs.schema_str, validate=True))
        except Exception as exc:
            raise UnknownSchema(
                f"schema {rs.schema_id}: the registry did not return a serialized descriptor "
                f"({exc})"
            ) from None
        fdp.name = name
        try:
            pool.Add(fdp)
        except Exception as exc:
            raise UnknownSchema(f"schema {rs.schema_id} cannot be loaded: {exc}") from None
        return pool.FindFileByName(name)

    def load(self, schema_id: int) -> Loaded:
        from google.protobuf import message_factory

        rs = self._registry.schema(schema_id, fmt="serialized")
        if rs.schema_type != "PROTOBUF":
            raise UnknownSchema(f"schema {schema_id} is {rs.schema_type}, not PROTOBUF")
        pool = _pool()
        fd = self._file(pool, rs, f"s3sink_schema_{schema_id}.proto", set())
        converter = ProtoToArrow()
        top = list(fd.message_types_by_name.values())
        if not top:
            raise UnknownSchema(f"schema {schema_id} declares no message")
        types: dict[tuple[int, ...], tuple[Any, pa.DataType, Reader]] = {}

        def resolve(path: list[int]) -> tuple[Any, pa.DataType, Reader]:
            key = tuple(path)
            hit = types.get(key)
            if hit is not None:
                return hit
            desc = top[path[0]]
            for i in path[1:]:
                desc = desc.nested_types[i]
            typ, read = converter.message(desc)
            cls = message_factory.GetMessageClass(desc)
            types[key] = (cls, typ, read)
            return types[key]

        try:
            _, first_type, _ = resolve(self._paths.get(schema_id, [0]))
        except IndexError:
            raise UnknownSchema(f"schema {schema_id} has no message at the given index") from None
        schema = pa.schema(list(first_type))

        def parse(values: list[bytes]) -> tuple[pa.Table, dict[int, str]]:
            bad: dict[int, str] = {}
            rows: list[Any] = []
            for j, v in enumerate(values):
                try:
                    path, pos = message_indexes(v)
                    cls, typ, read = resolve(path)
                    if typ is not first_type and not typ.equals(first_type):
                        raise ValueError(
                            f"message {cls.DESCRIPTOR.full_name} differs from the message type "
                            "of earlier records with this schema id (one per id is supported)"
                        )
                    msg = cls()
                    msg.ParseFromString(v[pos:])
                    rows.append(read(msg))
                except Exception as exc:  # DecodeError, IndexError, ValueError, ...
                    bad[j] = f"cannot decode Protobuf (schema {schema_id}): {str(exc)[:200]}"
            arr = pa.array(rows, first_type)
            return pa.Table.from_struct_array(arr), bad

        return Loaded(schema_id, schema, False, parse, {META_ENCODING: b"protobuf"})
