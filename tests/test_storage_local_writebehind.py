"""Local uploads hash and write in a background thread: order, memory accounting, errors."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from s3sink.errors import StorageError, TransientStorageError
from s3sink.storage import local
from s3sink.storage.local import LocalStorage


def test_chunks_land_in_order_with_the_right_etag(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    uploads = [storage.open_upload(f"k{i}") for i in range(3)]
    expected = [bytearray() for _ in uploads]
    for n in range(200):
        for i, up in enumerate(uploads):
            chunk = bytes([n % 256]) * (1000 + 37 * i + n)
            up.write(chunk if n % 2 else memoryview(chunk))
            expected[i] += chunk
    for i, up in enumerate(uploads):
        info = up.complete()
        data, etag = storage.get(f"k{i}")
        assert data == bytes(expected[i])
        assert info.etag == etag == f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'
        assert up.buffered_bytes() == 0


def test_a_failed_background_write_fails_the_upload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = LocalStorage(tmp_path)
    up = storage.open_upload("k")
    real = os.write

    def full(fd: int, data: Any) -> int:
        if fd == up._fd:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(os, "write", full)
    up.write(b"x" * 10)
    with pytest.raises(TransientStorageError, match="No space left"):
        up.complete()
    with pytest.raises(StorageError):
        up.write(b"more")
    up.abort()
    assert storage.list_pending_uploads("") == []


def test_writers_block_above_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "_WRITE_BEHIND", local._WriteBehind(limit=4096))
    storage = LocalStorage(tmp_path)
    up = storage.open_upload("k")
    for _ in range(100):
        up.write(b"y" * 3000)
        assert up.buffered_bytes() <= 4096 + 3000
    assert up.complete().size == 300_000
    aborted = storage.open_upload("a")
    aborted.write(b"z" * 5000)
    aborted.abort()
    assert aborted.buffered_bytes() == 0
