from collections.abc import Sequence
from typing import Any

from _typeshed import ReadableBuffer

API: int

def compile(node: tuple[Any, ...], /) -> Any: ...
def validate(
    program: Any, buffer: ReadableBuffer, offsets: ReadableBuffer, header: int, /
) -> bytes: ...
def decode(
    program: Any, buffer: ReadableBuffer, offsets: ReadableBuffer, header: int, /
) -> (
    list[tuple[int, int, bytes | None, bytes | None, bytes | None, bytes | None]] | tuple[int, int]
): ...
def validate_values(program: Any, values: Sequence[bytes], header: int, /) -> bytes: ...
def decode_values(
    program: Any, values: Sequence[bytes], header: int, /
) -> (
    list[tuple[int, int, bytes | None, bytes | None, bytes | None, bytes | None]] | tuple[int, int]
): ...
def bodies(values: Sequence[bytes], header: int, /) -> bytes: ...
