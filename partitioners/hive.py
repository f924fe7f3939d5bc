"""Hive-style path values: escaping, the default partition, and rendering Arrow values.

Escaping follows Hive's ``FileUtils.escapePathName`` (also Spark's and Trino's): the characters
``"#%'*/:=?\\{[]^``, DEL and the ASCII control characters become ``%XX`` (upper-case hex of the
code point). Everything else, non-ASCII letters included, is kept as UTF-8: Hive, Spark, Trino
and Athena unescape ``%XX`` one *character* at a time, so percent-encoding the UTF-8 bytes of
``é`` would come back as ``Ã©``; S3 keys hold UTF-8 as is. A null or empty value becomes
``__HIVE_DEFAULT_PARTITION__``, as Hive and Spark write both.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

DEFAULT_PARTITION = "__HIVE_DEFAULT_PARTITION__"

_ESCAPED = frozenset("\"#%'*/:=?\\{[]^\x7f") | frozenset(chr(c) for c in range(0x20))
_ESCAPE_RE = re.compile("[" + re.escape("".join(sorted(_ESCAPED))) + "]")
_UNESCAPE_RE = re.compile("%([0-9A-Fa-f]{2})")


def escape(value: str | None) -> str:
    """A path value as Hive writes it; ``None`` and ``""`` give the default partition."""
    if value is None or value == "":
        return DEFAULT_PARTITION
    return _ESCAPE_RE.sub(lambda m: f"%{ord(m.group(0)):02X}", value)


def unescape(value: str) -> str | None:
    """What Hive, Spark and Trino read back from a path value (``None`` for the default)."""
    if value == DEFAULT_PARTITION:
        return None
    return _UNESCAPE_RE.sub(lambda m: chr(int(m.group(1), 16)), value)


def escape_column(
    values: pa.Array | pa.ChunkedArray, prefix: str
) -> tuple[pa.Array, dict[int, str]]:
    """``prefix + escape(value)`` for every row of a scalar column, computed once per distinct
    value. Returns the strings and the rows that cannot be rendered (nested values)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    t = values.type
    if pa.types.is_dictionary(t):
        values = values.cast(t.value_type)
        t = values.type
    n = len(values)
    if pa.types.is_nested(t):
        reason = f"partition field is a {t}, not a scalar"
        return pa.nulls(n, pa.string()), dict.fromkeys(range(n), reason)
    text = render(values)
    encoded = text.dictionary_encode()
    dictionary: list[str | None] = encoded.dictionary.to_pylist()
    rendered = pa.array([prefix + escape(v) for v in dictionary], pa.string())
    out = rendered.take(encoded.indices)
    if out.null_count:  # nulls in the column: the default partition
        out = pc.fill_null(out, prefix + DEFAULT_PARTITION)
    return out, {}


def render(values: pa.Array) -> pa.Array:
    """The text of scalar values as they appear in paths (``true``, ``12``, ``1.5``...)."""
    t = values.type
    if pa.types.is_string(t):
        return values
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return values.cast(pa.string())
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        try:
            return values.cast(pa.binary()).cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return pa.array(
                [None if v is None else v.decode("utf-8", "replace") for v in values.to_pylist()],
                pa.string(),
            )
    if pa.types.is_timestamp(t):
        return _render_timestamps(values)
    try:
        return values.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.array([None if v is None else str(v) for v in values.to_pylist()], pa.string())


def _render_timestamps(values: pa.Array) -> pa.Array:
    # ISO-8601 with a T (Arrow's %S carries the fraction of sub-second units), in UTC.
    if values.type.tz is not None:
        values = values.cast(pa.timestamp(values.type.unit, "UTC"))
    return pc.strftime(values, format="%Y-%m-%dT%H:%M:%S")


def join_paths(columns: Sequence[pa.Array]) -> pa.Array:
    """Element-wise ``a/b/c`` of string columns."""
    if len(columns) == 1:
        return columns[0]
    return pc.binary_join_element_wise(*columns, "/")


def uniform(values: pa.Array) -> Any:
    """The single value of a column if every row has it, else ``None``."""
    if len(values) == 0 or values.null_count:
        return None
    u = pc.unique(values)
    return u[0].as_py() if len(u) == 1 else None
