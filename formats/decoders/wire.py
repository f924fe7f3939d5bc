"""The Confluent wire format: magic byte 0, a 4-byte big-endian schema id, the payload."""

from __future__ import annotations

from collections.abc import Sequence

HEADER = 5


def schema_ids(values: Sequence[bytes | None]) -> tuple[list[int | None], dict[int, str]]:
    """Schema id per value (``None`` for tombstones) and the values that are not framed."""
    ids: list[int | None] = [None] * len(values)
    errors: dict[int, str] = {}
    for i, v in enumerate(values):
        if v is None:
            continue
        if len(v) < HEADER:
            errors[i] = f"not Confluent wire format: {len(v)} bytes, shorter than the header"
        elif v[0] != 0:
            errors[i] = f"not Confluent wire format: magic byte {v[0]}, expected 0"
        else:
            ids[i] = int.from_bytes(v[1:HEADER], "big")
    return ids, errors


def read_varint(b: bytes, pos: int) -> tuple[int, int]:
    """A zig-zag varint at ``pos`` (as protobuf message indexes are framed)."""
    shift = result = 0
    while True:
        if pos >= len(b):
            raise ValueError("truncated varint")
        byte = b[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")
    return (result >> 1) ^ -(result & 1), pos


def runs(keys: Sequence[object | None], skip: set[int]) -> list[tuple[object, list[int]]]:
    """Contiguous runs of equal keys (rows in ``skip`` left out; ``None`` keys join the run
    they are in, or the next one)."""
    out: list[tuple[object, list[int]]] = []
    pending: list[int] = []
    for i, k in enumerate(keys):
        if i in skip:
            continue
        if k is None:
            if out:
                out[-1][1].append(i)
            else:
                pending.append(i)
            continue
        if out and out[-1][0] == k:
            out[-1][1].append(i)
        else:
            out.append((k, [*pending, i]))
            pending = []
    if pending:
        out.append((None, pending))
    return out
