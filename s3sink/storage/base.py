"""The storage interface the commit protocol is written against.

Keys are relative to the storage root (``s3://bucket/prefix`` or ``file:///path``) and always
use ``/``. Every backend gives the same semantics:

* ``put(..., if_none_match=True)`` creates the key only if it does not exist, atomically;
  otherwise it raises :class:`~s3sink.errors.ConflictError`.
* ``put(..., if_match=etag)`` replaces the key only if its current etag is ``etag``;
  otherwise :class:`~s3sink.errors.ConflictError`.
* ``list`` is strongly consistent and ordered by key; ``start_after`` skips keys <= it.
* ``delete`` of a missing key succeeds.
* ``open_upload`` streams a large object: parts are uploaded while the caller still writes,
  so memory holds about one part per upload in flight, not the whole file.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int
    etag: str


@dataclass(frozen=True, slots=True)
class PendingUpload:
    """A multipart upload that was started and neither completed nor aborted."""

    key: str
    upload_id: str
    initiated_ms: int


@runtime_checkable
class Upload(Protocol):
    """A streaming upload of one object. Not visible under its key until ``complete``."""

    key: str

    def write(self, data: bytes | memoryview) -> None: ...

    def buffered_bytes(self) -> int:
        """Bytes of this upload held in memory (not yet sent), for the memory budget."""
        ...

    def complete(self) -> ObjectInfo: ...

    def abort(self) -> None: ...


@runtime_checkable
class Storage(Protocol):
    """An object store with conditional writes. See the module docstring for the semantics."""

    def describe(self) -> str:
        """Where this storage points, for logs (no secrets)."""
        ...

    def put(
        self,
        key: str,
        data: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        content_type: str = "application/octet-stream",
    ) -> ObjectInfo: ...

    def get(self, key: str) -> tuple[bytes, str]:
        """The object's bytes and etag; :class:`~s3sink.errors.NotFoundError` if absent."""
        ...

    def head(self, key: str) -> ObjectInfo | None: ...

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[ObjectInfo]: ...

    def copy(self, src: str, dst: str) -> ObjectInfo:
        """Server-side copy; ``dst`` gets the same bytes as ``src``."""
        ...

    def delete(self, key: str) -> None: ...

    def open_upload(self, key: str) -> Upload: ...

    def list_pending_uploads(self, prefix: str) -> builtins.list[PendingUpload]: ...

    def abort_pending_upload(self, pending: PendingUpload) -> None: ...

    def close(self) -> None: ...
