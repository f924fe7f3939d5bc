"""JSON parsing in bulk: guards, pyarrow's reader over a joined buffer, the per-record fallback.

pyarrow's JSON reader parses newline-delimited objects in C++ (and in parallel); the sink joins
a batch's values with ``\\n`` and parses them at once. Values it must not see are sorted out
first, cheaply: empty values, values spanning lines (re-serialised), and values nested deeper
than :data:`MAX_DEPTH` (deep nesting can exhaust the reader's native stack). When the bulk parse
fails, each value is parsed with Python's ``json`` only to find which ones are bad.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Sequence
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


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(v: bytes) -> Any:
    """Python's parser, strict: NaN and Infinity are errors."""
    return json.loads(v, parse_constant=_reject_constant)


def precheck(v: bytes) -> tuple[bytes | None, str | None]:
    """A value ready for the bulk parser (one line), or the reason it is bad."""
    if not v.strip():
        return None, "empty value"
    if nesting_depth(v) > MAX_DEPTH:
        return None, f"JSON nested deeper than {MAX_DEPTH} levels"
    if b"\n" in v or b"\r" in v:
        try:
            doc = loads(v)
        except (ValueError, RecursionError) as exc:
            return None, f"not valid JSON: {_short(exc)}"
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode(), None
    return v, None


def bulk(
    docs: Sequence[bytes],
    schema: pa.Schema | None = None,
    unexpected: str = "infer",
) -> pa.Table | None:
    """All documents parsed at once, or ``None`` if any is bad (or rows do not line up)."""
    if not docs:
        return None
    longest = max(len(d) for d in docs)
    opts = pj.ParseOptions(
        explicit_schema=schema, unexpected_field_behavior=unexpected, newlines_in_values=False
    )
    ro = pj.ReadOptions(block_size=max(1 << 20, longest + 2))
    try:
        table: pa.Table = pj.read_json(
            io.BytesIO(b"\n".join(docs)), read_options=ro, parse_options=opts
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, pa.ArrowCapacityError):
        return None
    if table.num_rows != len(docs):
        return None
    return table


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
