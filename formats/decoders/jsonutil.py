"""JSON parsing in bulk: guards, pyarrow's reader over a joined buffer, the per-record fallback.

pyarrow's JSON reader parses newline-delimited objects in C++ (and in parallel); the sink joins
a batch's values with ``\\n`` and parses them at once. Values it must not see are sorted out
first, cheaply: empty values, values spanning lines (re-serialised), and values nested deeper
than :data:`MAX_DEPTH` (deep nesting can exhaust the reader's native stack). When the bulk parse
fails, each value is parsed with Python's ``json`` only to find which ones are bad.
"""

from __future__ import annotations

import ctypes
import io
import json
import re
from collections.abc import Callable, Sequence
from itertools import accumulate
from typing import Any

import pyarrow as pa
import pyarrow.json as pj

#: Deepest nesting of objects and arrays accepted in a value.
MAX_DEPTH = 64

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = b"{}[]"
_DELETE = bytes(c for c in range(256) if c not in _BRACKETS)
_DEPTH = bytes.maketrans(b"{[}]", b"\x01\x01\xff\xff")


def nesting_depth(v: bytes) -> int:
    """Deepest nesting of ``{``/``[`` outside strings (at least ``MAX_DEPTH + 1`` is exact)."""
    if v.count(b"{") + v.count(b"[") <= MAX_DEPTH:
        return 0
    stripped = _STRING.sub(b"", v).translate(_DEPTH, _DELETE)
    return max(accumulate(memoryview(stripped).cast("b")), default=0)


_KINDS = {
    b"[": "an array",
    b'"': "a string",
    b"n": "null",
    b"t": "a boolean",
    b"f": "a boolean",
    **{bytes([c]): "a number" for c in b"-0123456789"},
}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(v: bytes) -> Any:
    """Python's parser, strict: NaN and Infinity are errors."""
    return json.loads(v, parse_constant=_reject_constant)


#: pyarrow's reader accepts these non-standard constants (Python's strict parser does not).
_CONSTANTS = (b"NaN", b"Infinity")


def _libc_memmem() -> Callable[[bytes, bytes], bool] | None:
    """The C library's ``memmem`` (several times faster than ``bytes in`` for a needle that is
    absent, the common case: ~0.1 us per 330-byte value for both constants), if there is one."""
    try:
        libc = ctypes.CDLL(None)
        memmem = libc.memmem
    except (OSError, AttributeError):  # pragma: no cover - every libc we run on has it
        return None
    memmem.restype = ctypes.c_void_p
    memmem.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t]

    def contains(buf: bytes, needle: bytes) -> bool:
        return memmem(buf, len(buf), needle, len(needle)) is not None

    return contains


_memmem = _libc_memmem()


def _contains(buf: bytes, needle: bytes) -> bool:
    return _memmem(buf, needle) if _memmem is not None else needle in buf


def strict_text(buf: bytes) -> bool:
    """Whether ``buf`` is valid UTF-8 and holds none of the constants pyarrow's reader would
    accept but JSON does not (``NaN``, ``Infinity``; also inside strings: a cheap bound). One
    or two C-level passes; ASCII-only buffers skip the UTF-8 decode."""
    if not buf.isascii():
        try:
            buf.decode("utf-8")
        except UnicodeDecodeError:
            return False
    return not any(_contains(buf, c) for c in _CONSTANTS)


def strict_reason(v: bytes) -> str | None:
    """Why pyarrow's reader must not see ``v`` although it might accept it: invalid UTF-8,
    or a ``NaN``/``Infinity`` constant outside strings (``None``: neither)."""
    if strict_text(v):
        return None
    try:
        loads(v)
    except UnicodeDecodeError as exc:
        return f"not valid UTF-8: {_short(exc)}"
    except (ValueError, RecursionError) as exc:
        return f"not valid JSON: {_short(exc)}"
    return None


def precheck(v: bytes, object_only: bool = True) -> tuple[bytes | None, str | None]:
    """A value ready for the bulk parser (one line), or the reason it is bad. The bulk parser
    only ever sees objects (``object_only``): a bare ``null`` line crashes pyarrow's reader.
    Invalid UTF-8 and ``NaN``/``Infinity`` (which pyarrow accepts) are bad too."""
    stripped = v.lstrip()
    if not stripped:
        return None, "empty value"
    if object_only and stripped[:1] != b"{":
        kind = _KINDS.get(stripped[:1], "something else")
        return None, f"expected a JSON object, got {kind}"
    if nesting_depth(v) > MAX_DEPTH:
        return None, f"JSON nested deeper than {MAX_DEPTH} levels"
    reason = strict_reason(v)
    if reason is not None:
        return None, reason
    if b"\n" in v or b"\r" in v:
        try:
            doc = loads(v)
        except (ValueError, RecursionError) as exc:
            return None, f"not valid JSON: {_short(exc)}"
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode(), None
    return v, None


#: A value shorter than this nests less deeply than pyarrow's reader can take (it parses 10,000
#: levels; a value of n bytes nests at most n levels), so it needs no depth check before the
#: bulk parse; its real depth is read from the parsed types (:func:`type_depth`).
SHALLOW_BYTES = 8192


def joined_if_clean(values: Sequence[bytes]) -> bytes | None:
    """The values joined by newlines if each one is, provably and cheaply, ready for the bulk
    parser: it starts with ``{`` (the least and the greatest value do, so all do), spans one
    line, and is shorter than :data:`SHALLOW_BYTES`; and the batch is valid UTF-8 without
    ``NaN``/``Infinity`` (:func:`strict_text`). ``None``: use :func:`precheck` per value.

    C-level passes over the batch only (``min``/``max``, ``map(len)``, ``join``, ``in``): no
    Python bytecode per value.
    """
    if not values:
        return None
    if min(values)[:1] != b"{" or max(values)[:1] != b"{":
        return None
    if max(map(len, values)) >= SHALLOW_BYTES:
        return None
    flat = b"".join(values)
    if b"\n" in flat or b"\r" in flat or not strict_text(flat):
        return None
    return b"\n".join(values)


_NOT_OPENING = bytes(c for c in range(256) if c not in b"{[\n")


def shallow(joined: bytes) -> bool:
    """Whether no line of ``joined`` can nest deeper than :data:`MAX_DEPTH`: none holds more
    ``{`` and ``[`` than that (a bound on its depth). One C-level pass over the buffer."""
    return max(map(len, joined.translate(None, _NOT_OPENING).split(b"\n"))) <= MAX_DEPTH


_CHECK_ONLY = pj.ParseOptions(
    explicit_schema=pa.schema([]), unexpected_field_behavior="ignore", newlines_in_values=False
)


def valid_objects(joined: bytes, count: int, longest: int) -> bool:
    """Whether ``joined`` (from :func:`joined_if_clean`) is ``count`` valid JSON objects, parsed
    without building columns (every field ignored): about half the cost of a full parse."""
    ro = pj.ReadOptions(block_size=max(1 << 20, longest + 2))
    try:
        table: pa.Table = pj.read_json(
            io.BytesIO(joined), read_options=ro, parse_options=_CHECK_ONLY
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, pa.ArrowCapacityError):
        return False
    return bool(table.num_rows == count)


def type_depth(t: pa.DataType | pa.Schema) -> int:
    """Nesting levels of objects and arrays a type holds (a record's own level not counted)."""
    if isinstance(t, pa.Schema):
        return max((type_depth(f.type) for f in t), default=0)
    if pa.types.is_struct(t):
        return 1 + max((type_depth(f.type) for f in t), default=0)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return 1 + type_depth(t.value_type)
    return 0


def bulk(
    docs: Sequence[bytes],
    schema: pa.Schema | None = None,
    unexpected: str = "infer",
    *,
    joined: bytes | None = None,
) -> pa.Table | None:
    """All documents parsed at once, or ``None`` if any is bad (or rows do not line up).
    ``joined``: the documents already joined by newlines."""
    if not docs:
        return None
    longest = max(map(len, docs))
    opts = pj.ParseOptions(
        explicit_schema=schema, unexpected_field_behavior=unexpected, newlines_in_values=False
    )
    ro = pj.ReadOptions(block_size=max(1 << 20, longest + 2))
    try:
        table: pa.Table = pj.read_json(
            io.BytesIO(b"\n".join(docs) if joined is None else joined),
            read_options=ro,
            parse_options=opts,
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, pa.ArrowCapacityError):
        return None
    if table.num_rows != len(docs):
        return None
    try:
        table.validate()
    except pa.ArrowInvalid:
        # pyarrow's reader builds lists of nulls ([null, null]) with a too short child array
        return _repair(table)
    return table


def _repair(table: pa.Table) -> pa.Table | None:
    cols = []
    for col in table.columns:
        try:
            col.validate()
            cols.append(col)
        except pa.ArrowInvalid:
            cols.append(pa.array(_rebuild(col), col.type))
    out = pa.Table.from_arrays(cols, schema=table.schema)
    try:
        out.validate(full=True)
    except pa.ArrowInvalid:
        return None
    return out


def _rebuild(col: pa.ChunkedArray) -> list[Any]:
    """Python values of a column whose lists of nulls are malformed (offsets read only)."""
    values: list[Any] = []
    for chunk in col.chunks:
        values.extend(_values(chunk))
    return values


def _values(arr: pa.Array) -> list[Any]:
    t = arr.type
    valid = arr.is_valid().to_pylist()
    if pa.types.is_null(t):
        return [None] * len(arr)
    if pa.types.is_list(t):
        offsets = arr.offsets.to_pylist()
        child = _values(arr.values) if not pa.types.is_null(t.value_type) else None
        out: list[Any] = []
        for i in range(len(arr)):
            if not valid[i]:
                out.append(None)
            elif child is None:
                out.append([None] * (offsets[i + 1] - offsets[i]))
            else:
                out.append(child[offsets[i] : offsets[i + 1]])
        return out
    if pa.types.is_struct(t):
        fields = {f.name: _values(arr.field(k)) for k, f in enumerate(t)}
        return [
            {name: vals[i] for name, vals in fields.items()} if valid[i] else None
            for i in range(len(arr))
        ]
    out_values: list[Any] = arr.to_pylist()
    return out_values


def parse_each(docs: Sequence[bytes]) -> tuple[list[Any], dict[int, str]]:
    """Python objects per document (``None`` for bad ones) and the reasons."""
    objs: list[Any] = [None] * len(docs)
    bad: dict[int, str] = {}
    for j, d in enumerate(docs):
        try:
            obj = loads(d)
        except (ValueError, RecursionError) as exc:
            bad[j] = f"not valid JSON: {_short(exc)}"
            continue
        if not isinstance(obj, dict):
            bad[j] = f"expected a JSON object, got {type(obj).__name__}"
            continue
        objs[j] = obj
    return objs, bad


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:197] + "..."
