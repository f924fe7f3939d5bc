"""An in-process object store with the exact semantics of the others, for tests of the protocol.

Thread-safe: every operation holds one lock, so conditional writes are atomic. A *fault hook* lets
a test fail any operation either *before* it takes effect (the request never reached the store)
or *after* it took effect (the store applied it but the caller saw an error, like a connection
reset after the request reached S3)::

    def hook(call: FaultCall) -> None:
        if call.op == "put" and call.key.startswith("_s3sink/log/") and call.phase == "after":
            raise TransientStorageError("injected: response lost")

    storage = MemoryStorage(fault_hook=hook)
"""

from __future__ import annotations

import builtins
import hashlib
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from s3sink.errors import ConflictError, NotFoundError, StorageError
from s3sink.storage.base import ObjectInfo, PendingUpload
from s3sink.storage.keys import check_key, same_etag

__all__ = ["FaultCall", "FaultHook", "MemoryStorage", "MemoryUpload"]

Phase = Literal["before", "after"]


@dataclass(frozen=True, slots=True)
class FaultCall:
    """One call the fault hook sees. ``op`` is the method name (``put``, ``get``, ``head``,
    ``list``, ``copy``, ``delete``, ``upload_write``, ``upload_complete``, ``upload_abort``,
    ``list_pending_uploads``, ``abort_pending_upload``); ``key`` the key or prefix it is about
    (for ``copy``: the destination; ``src`` holds the source)."""

    op: str
    key: str
    phase: Phase
    conditional: bool = False
    src: str | None = None


FaultHook = Callable[[FaultCall], None]


def _etag(data: bytes) -> str:
    return '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'


class MemoryStorage:
    """A dictionary behind a lock, speaking the :class:`~s3sink.storage.base.Storage` protocol."""

    def __init__(
        self,
        *,
        name: str = "",
        fault_hook: FaultHook | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.fault_hook = fault_hook
        self._clock = clock
        self._lock = threading.RLock()
        self._objects: dict[str, tuple[bytes, str]] = {}
        self._uploads: dict[str, tuple[str, int]] = {}  # upload id -> (key, initiated ms)
        self._ids = itertools.count(1)

    # -- helpers -----------------------------------------------------------------------------

    def _fault(
        self, op: str, key: str, phase: Phase, conditional: bool = False, src: str | None = None
    ) -> None:
        hook = self.fault_hook
        if hook is not None:
            hook(FaultCall(op, key, phase, conditional, src))

    # -- the Storage protocol ----------------------------------------------------------------

    def describe(self) -> str:
        return f"memory://{self.name}"

    def put(
        self,
        key: str,
        data: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        content_type: str = "application/octet-stream",
    ) -> ObjectInfo:
        check_key(key)
        conditional = if_none_match or if_match is not None
        self._fault("put", key, "before", conditional=conditional)
        body = bytes(data)
        with self._lock:
            current = self._objects.get(key)
            if if_none_match and current is not None:
                raise ConflictError(f"{self.describe()}/{key}: already exists (If-None-Match)")
            if if_match is not None and (current is None or not same_etag(current[1], if_match)):
                raise ConflictError(f"{self.describe()}/{key}: etag is not {if_match} (If-Match)")
            info = ObjectInfo(key, len(body), _etag(body))
            self._objects[key] = (body, info.etag)
        self._fault("put", key, "after", conditional=conditional)
        return info

    def get(self, key: str) -> tuple[bytes, str]:
        check_key(key)
        self._fault("get", key, "before")
        with self._lock:
            current = self._objects.get(key)
        if current is None:
            raise NotFoundError(f"{self.describe()}/{key}: no such key")
        self._fault("get", key, "after")
        return current

    def head(self, key: str) -> ObjectInfo | None:
        check_key(key)
        self._fault("head", key, "before")
        with self._lock:
            current = self._objects.get(key)
        self._fault("head", key, "after")
        return None if current is None else ObjectInfo(key, len(current[0]), current[1])

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[ObjectInfo]:
        self._fault("list", prefix, "before")
        with self._lock:
            found = [
                ObjectInfo(k, len(v[0]), v[1])
                for k, v in self._objects.items()
                if k.startswith(prefix) and (start_after is None or k > start_after)
            ]
        found.sort(key=lambda info: info.key)
        self._fault("list", prefix, "after")
        return iter(found)

    def copy(self, src: str, dst: str) -> ObjectInfo:
        check_key(src)
        check_key(dst)
        self._fault("copy", dst, "before", src=src)
        with self._lock:
            current = self._objects.get(src)
            if current is None:
                raise NotFoundError(f"{self.describe()}/{src}: no such key (copy source)")
            self._objects[dst] = current
        self._fault("copy", dst, "after", src=src)
        return ObjectInfo(dst, len(current[0]), current[1])

    def delete(self, key: str) -> None:
        check_key(key)
        self._fault("delete", key, "before")
        with self._lock:
            self._objects.pop(key, None)
        self._fault("delete", key, "after")

    def open_upload(self, key: str) -> MemoryUpload:
        check_key(key)
        with self._lock:
            upload_id = f"mem-{next(self._ids)}"
            self._uploads[upload_id] = (key, int(self._clock() * 1000))
        return MemoryUpload(self, key, upload_id)

    def list_pending_uploads(self, prefix: str) -> builtins.list[PendingUpload]:
        self._fault("list_pending_uploads", prefix, "before")
        with self._lock:
            pending = [
                PendingUpload(key, upload_id, initiated)
                for upload_id, (key, initiated) in self._uploads.items()
                if key.startswith(prefix)
            ]
        pending.sort(key=lambda p: (p.key, p.initiated_ms, p.upload_id))
        self._fault("list_pending_uploads", prefix, "after")
        return pending

    def abort_pending_upload(self, pending: PendingUpload) -> None:
        self._fault("abort_pending_upload", pending.key, "before")
        with self._lock:
            self._uploads.pop(pending.upload_id, None)
        self._fault("abort_pending_upload", pending.key, "after")

    def close(self) -> None:
        return None

    # -- for tests -----------------------------------------------------------------------------

    def keys(self) -> builtins.list[str]:
        """Every key, sorted (a test helper; no fault hook)."""
        with self._lock:
            return sorted(self._objects)

    # -- used by MemoryUpload ------------------------------------------------------------------

    def _finish_upload(self, upload_id: str, key: str, body: bytes) -> ObjectInfo:
        self._fault("upload_complete", key, "before")
        with self._lock:
            if upload_id not in self._uploads:
                raise NotFoundError(f"{self.describe()}/{key}: upload {upload_id} was aborted")
            del self._uploads[upload_id]
            info = ObjectInfo(key, len(body), _etag(body))
            self._objects[key] = (body, info.etag)
        return info

    def _drop_upload(self, upload_id: str, key: str) -> None:
        self._fault("upload_abort", key, "before")
        with self._lock:
            self._uploads.pop(upload_id, None)
        self._fault("upload_abort", key, "after")


class MemoryUpload:
    """A streaming upload into a :class:`MemoryStorage`; invisible until :meth:`complete`."""

    def __init__(self, storage: MemoryStorage, key: str, upload_id: str) -> None:
        self.key = key
        self.upload_id = upload_id
        self._storage = storage
        self._parts: list[bytes] = []
        self._state: Literal["open", "completed", "aborted"] = "open"

    def buffered_bytes(self) -> int:
        return sum(len(p) for p in self._parts)

    def write(self, data: bytes | memoryview) -> None:
        if self._state != "open":
            raise StorageError(f"upload of {self.key} is {self._state}; cannot write")
        self._storage._fault("upload_write", self.key, "before")
        self._parts.append(bytes(data))

    def complete(self) -> ObjectInfo:
        if self._state != "open":
            raise StorageError(f"upload of {self.key} is {self._state}; cannot complete")
        info = self._storage._finish_upload(self.upload_id, self.key, b"".join(self._parts))
        self._state = "completed"
        self._parts = []
        self._storage._fault("upload_complete", self.key, "after")
        return info

    def abort(self) -> None:
        if self._state == "completed":
            return
        self._state = "aborted"
        self._parts = []
        self._storage._drop_upload(self.upload_id, self.key)

    def __enter__(self) -> MemoryUpload:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None or self._state == "open":
            self.abort()
