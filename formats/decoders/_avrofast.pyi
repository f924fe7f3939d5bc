from typing import Any

from _typeshed import ReadableBuffer

def compile(node: tuple[Any, ...], /) -> Any: ...
def validate(
    program: Any, buffer: ReadableBuffer, offsets: ReadableBuffer, header: int, /
) -> bytes: ...
def decode(
    program: Any, buffer: ReadableBuffer, offsets: ReadableBuffer, header: int, /
) -> (
    list[tuple[int, int, bytes | None, bytes | None, bytes | None, bytes | None]] | tuple[int, int]
): ...
