"""The local filesystem backend (``file:///path``), with the same semantics as S3.

Layout: key ``a/b/c`` is the file ``<root>/a/b/c``. Everything the backend keeps for itself has a
name starting with ``.s3sink-`` (which :func:`~s3sink.storage.keys.check_key` forbids in keys),
so a listing never shows it:

* ``<dir>/.s3sink-put.<ms>-<rand>.<name>`` — the temporary file of a ``put`` in flight;
* ``<dir>/.s3sink-upload.<ms>-<rand>.<name>`` — a streaming upload not yet completed. Both are
  "pending uploads": a crash leaves them behind, and ``list_pending_uploads`` /
  ``abort_pending_upload`` find and remove them (``<ms>`` is when they were started);
* ``<root>/.s3sink-meta/locks/NNN.lock`` — lock files (``fcntl.flock``).

How each guarantee is made, across threads *and* processes:

* Writes never modify a file in place: the bytes go to a temporary file in the target directory,
  which is fsynced and then moved into place, and the directory is fsynced. A reader sees the old
  object or the new one, never a mix, and a crash leaves at most a temporary file.
* Conditional create (``if_none_match``) is ``os.link(tmp, target)``, which fails with ``EEXIST``
  when the target exists — atomic in the kernel.
* A compare-and-swap (``if_match``) holds an exclusive ``flock`` on the key's lock file for its
  read-compare-replace, so it is atomic against other compare-and-swaps and conditional creates
  (a create never overwrites: it either finds the object, or the compare finds none). Locks are
  *striped*: a key maps to one of ``lock_stripes`` files by a hash of the key, so the lock files
  stay few however many keys there are. Nothing else takes a lock: every other mutation is one
  atomic ``link``/``rename``/``unlink``. A process paused while holding a lock (SIGSTOP, a
  frozen VM: a zombie writer) would block every writer of that stripe until it resumed; plain
  writes, deletes and conditional creates -- all the commit protocol uses -- never wait on one.
  (Mixing compare-and-swap with plain writes or deletes of the same key concurrently is not
  linearizable; s3sink never does.)
* The etag is the quoted MD5 of the content, as S3 gives for a single-part upload. It is stored
  with the file in the extended attribute ``user.s3sink.etag`` (with the size and mtime it was
  computed for), so ``head``/``list`` do not read the data; on filesystems without user xattrs,
  or for files written by something else, it is computed by reading the file.

``copy`` hard-links the source into place (files are immutable once written, so sharing the inode
is safe) and falls back to copying the bytes where links are not allowed. ``delete`` removes
directories it leaves empty.
"""

from __future__ import annotations

import builtins
import collections
import contextlib
import errno
import fcntl
import functools
import hashlib
import os
import secrets
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal, ParamSpec, TypeVar

from s3sink.errors import (
    ConflictError,
    NotFoundError,
    PermanentStorageError,
    StorageError,
    TransientStorageError,
)
from s3sink.storage.base import ObjectInfo, PendingUpload
from s3sink.storage.keys import RESERVED_PREFIX, check_key, same_etag

__all__ = ["LocalStorage", "LocalUpload"]

_XATTR = "user.s3sink.etag"
_META_DIR = RESERVED_PREFIX + "meta"
_KINDS = ("put", "upload")
_CHUNK = 1 << 20


P = ParamSpec("P")
R = TypeVar("R")

_PERMISSION = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
_TRANSIENT = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EAGAIN, errno.EINTR, errno.EBUSY, errno.ENOENT}
)


def _quote(md5hex: str) -> str:
    return f'"{md5hex}"'


def map_os_error(exc: OSError, op: str) -> StorageError:
    """The s3sink error for a filesystem error (the local backend's error boundary).

    ``ENOENT`` at this point means a temporary file vanished under us (a concurrent clean-up
    aborted it): transient, like disk full or I/O errors; permissions are permanent.
    """
    where = f"{exc.filename}" if exc.filename else "the storage directory"
    text = f"local storage {op} on {where}: {exc.strerror or exc}"
    if exc.errno in _PERMISSION:
        return PermanentStorageError(f"{text}; check that this user may write there")
    if exc.errno in _TRANSIENT:
        return TransientStorageError(text)
    return PermanentStorageError(text)


def _os_boundary(fn: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except OSError as exc:
            raise map_os_error(exc, fn.__name__) from exc

    return wrapper


class LocalStorage:
    """Objects as files under ``root``. See the module docstring for how each guarantee is made.

    ``fsync=False`` skips the fsyncs (tests on throwaway directories only: a crash may then lose
    or truncate recent writes). ``clock`` gives wall-clock seconds, used for the start time of
    uploads.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        fsync: bool = True,
        clock: Callable[[], float] = time.time,
        lock_stripes: int = 256,
    ) -> None:
        self.root = Path(os.path.abspath(os.fspath(root)))
        self._fsync = fsync
        self._clock = clock
        if lock_stripes < 1:
            raise ValueError("lock_stripes must be >= 1")
        self._stripes = lock_stripes
        self._lock_dir = self.root / _META_DIR / "locks"
        try:
            self._lock_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PermanentStorageError(
                f"{self.describe()}: cannot create the storage directory ({exc.strerror}); "
                "check that the path is writable by this user"
            ) from exc
        self._etag_cache: dict[tuple[int, int, int, int], str] = {}
        self._cache_lock = threading.Lock()

    # -- paths, locks, durability ---------------------------------------------------------------

    def describe(self) -> str:
        return f"file://{self.root}"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        stripe = zlib.crc32(key.encode()) % self._stripes
        fd = os.open(self._lock_dir / f"{stripe:03d}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    def _sync_dir(self, directory: Path) -> None:
        if not self._fsync:
            return
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _new_temp_name(self, kind: str, name: str) -> str:
        ms = int(self._clock() * 1000)
        return f"{RESERVED_PREFIX}{kind}.{ms}-{secrets.token_hex(6)}.{name}"

    def _make_dirs(self, directory: Path, key: str) -> None:
        """Create ``directory`` and missing parents; fsync the parent of each one created, so
        a crash cannot lose a directory entry under a file we then report as written."""
        for _attempt in range(20):
            if directory.is_dir():
                return
            missing: list[Path] = []
            probe = directory
            while probe != self.root and not probe.is_dir():
                missing.append(probe)
                probe = probe.parent
            try:
                for new in reversed(missing):
                    try:
                        new.mkdir()
                    except FileExistsError:
                        if not new.is_dir():
                            raise
                        continue
                    self._sync_dir(new.parent)
            except FileNotFoundError:
                # a concurrent delete pruned an empty parent between our checks: walk again
                continue
            except (FileExistsError, NotADirectoryError) as exc:
                raise PermanentStorageError(
                    f"{self.describe()}: cannot store {key!r}: a parent of it is an object "
                    "(on a filesystem a key cannot also be a prefix of another key)"
                ) from exc

    def _open_temp(self, path: Path, kind: str, key: str) -> tuple[Path, int]:
        """Create a fresh temporary file next to ``path``; retries if a concurrent delete
        removed the (empty) directory between mkdir and create."""
        for _ in range(5):
            self._make_dirs(path.parent, key)
            tmp = path.parent / self._new_temp_name(kind, path.name)
            try:
                return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileNotFoundError:
                continue
        raise StorageError(f"{self.describe()}: directory of {key!r} keeps disappearing")

    def _seal(self, fd: int, md5hex: str) -> None:
        """fsync a finished temporary file and record its etag next to its size and mtime."""
        if self._fsync:
            os.fsync(fd)
        st = os.fstat(fd)
        with contextlib.suppress(OSError):
            os.setxattr(fd, _XATTR, f"{md5hex} {st.st_size} {st.st_mtime_ns}".encode())

    def _write_temp(self, path: Path, key: str, data: bytes) -> tuple[Path, str]:
        tmp, fd = self._open_temp(path, "put", key)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            md5hex = hashlib.md5(data, usedforsecurity=False).hexdigest()
            self._seal(fd, md5hex)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        return tmp, _quote(md5hex)

    def _etag(self, path: Path, st: os.stat_result) -> str:
        try:
            raw = os.getxattr(path, _XATTR).decode()
            md5hex, size, mtime = raw.split(" ")
            if int(size) == st.st_size and int(mtime) == st.st_mtime_ns:
                return _quote(md5hex)
        except (OSError, ValueError):
            pass
        ident = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        with self._cache_lock:
            cached = self._etag_cache.get(ident)
        if cached is not None:
            return cached
        digest = hashlib.md5(usedforsecurity=False)
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                digest.update(chunk)
        etag = _quote(digest.hexdigest())
        with self._cache_lock:
            if len(self._etag_cache) > 10_000:
                self._etag_cache.clear()
            self._etag_cache[ident] = etag
        return etag

    def _stat_object(self, path: Path) -> os.stat_result | None:
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return st if os.path.isfile(path) else None

    def _replace(self, tmp: Path, path: Path, key: str) -> None:
        try:
            os.replace(tmp, path)
        except IsADirectoryError as exc:
            raise PermanentStorageError(
                f"{self.describe()}: cannot store {key!r}: it is a prefix of other keys "
                "(on a filesystem a key cannot also be a directory)"
            ) from exc

    # -- the Storage protocol -------------------------------------------------------------------

    @_os_boundary
    def put(
        self,
        key: str,
        data: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        content_type: str = "application/octet-stream",
    ) -> ObjectInfo:
        if if_none_match and if_match is not None:
            raise StorageError("put: if_none_match and if_match are mutually exclusive")
        path = self._path(key)
        tmp, etag = self._write_temp(path, key, data)
        # only a compare-and-swap needs the lock (see the module docstring)
        lock = self._locked(key) if if_match is not None else contextlib.nullcontext()
        try:
            with lock:
                if if_none_match:
                    try:
                        os.link(tmp, path)
                    except FileExistsError as exc:
                        raise ConflictError(
                            f"{self.describe()}/{key}: already exists (If-None-Match)"
                        ) from exc
                else:
                    if if_match is not None:
                        st = self._stat_object(path)
                        if st is None or not same_etag(self._etag(path, st), if_match):
                            raise ConflictError(
                                f"{self.describe()}/{key}: etag is not {if_match} (If-Match)"
                            )
                    self._replace(tmp, path, key)
                self._sync_dir(path.parent)
        finally:
            tmp.unlink(missing_ok=True)
        return ObjectInfo(key, len(data), etag)

    @_os_boundary
    def get(self, key: str) -> tuple[bytes, str]:
        path = self._path(key)
        try:
            data = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise NotFoundError(f"{self.describe()}/{key}: no such key") from exc
        return data, _quote(hashlib.md5(data, usedforsecurity=False).hexdigest())

    @_os_boundary
    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        st = self._stat_object(path)
        if st is None:
            return None
        try:
            return ObjectInfo(key, st.st_size, self._etag(path, st))
        except FileNotFoundError:
            return None

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[ObjectInfo]:
        try:
            for key, path, entry in self._walk(prefix, start_after, objects=True):
                try:
                    st = entry.stat(follow_symlinks=False)
                    info = ObjectInfo(key, st.st_size, self._etag(path, st))
                except FileNotFoundError:
                    continue  # deleted while we listed
                yield info
        except OSError as exc:
            raise map_os_error(exc, "list") from exc

    @_os_boundary
    def copy(self, src: str, dst: str) -> ObjectInfo:
        src_path = self._path(src)
        dst_path = self._path(dst)
        st = self._stat_object(src_path)
        if st is None:
            raise NotFoundError(f"{self.describe()}/{src}: no such key (copy source)")
        tmp: Path | None = None
        for _ in range(5):
            self._make_dirs(dst_path.parent, dst)
            tmp = dst_path.parent / self._new_temp_name("put", dst_path.name)
            try:
                os.link(src_path, tmp)
                break
            except FileNotFoundError as exc:
                if not src_path.exists():
                    raise NotFoundError(
                        f"{self.describe()}/{src}: no such key (copy source)"
                    ) from exc
                continue  # the destination directory was removed under us
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP):
                    raise
                data, _ = self.get(src)
                tmp, _etag = self._write_temp(dst_path, dst, data)
                break
        if tmp is None:
            raise StorageError(f"{self.describe()}: directory of {dst!r} keeps disappearing")
        try:
            st = tmp.stat()
            etag = self._etag(tmp, st)
            self._replace(tmp, dst_path, dst)
            self._sync_dir(dst_path.parent)
        finally:
            tmp.unlink(missing_ok=True)
        return ObjectInfo(dst, st.st_size, etag)

    @_os_boundary
    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return
        self._sync_dir(path.parent)
        self._prune(path.parent)

    def _prune(self, directory: Path) -> None:
        """Remove directories left empty, up to (not including) the root."""
        while directory != self.root and self.root in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent

    @_os_boundary
    def open_upload(self, key: str) -> LocalUpload:
        path = self._path(key)
        tmp, fd = self._open_temp(path, "upload", key)
        return LocalUpload(self, key, path, tmp, fd)

    @_os_boundary
    def list_pending_uploads(self, prefix: str) -> builtins.list[PendingUpload]:
        pending: builtins.list[PendingUpload] = []
        for key, path, _entry in self._walk(prefix, None, objects=False):
            kind_and_id = path.name[len(RESERVED_PREFIX) :].split(".", 2)
            kind, ident = kind_and_id[0], kind_and_id[1]
            try:
                initiated = int(ident.split("-", 1)[0])
            except ValueError:
                initiated = 0
            pending.append(PendingUpload(key, f"{kind}.{ident}", initiated))
        pending.sort(key=lambda p: (p.key, p.initiated_ms, p.upload_id))
        return pending

    @_os_boundary
    def abort_pending_upload(self, pending: PendingUpload) -> None:
        path = self._path(pending.key)
        kind, _, ident = pending.upload_id.partition(".")
        if kind not in _KINDS or not ident or "/" in ident or "." in ident:
            raise StorageError(f"{self.describe()}: not a local upload id: {pending.upload_id!r}")
        (path.parent / f"{RESERVED_PREFIX}{pending.upload_id}.{path.name}").unlink(missing_ok=True)

    def close(self) -> None:
        return None

    # -- the ordered walk -----------------------------------------------------------------------

    def _walk(
        self, prefix: str, start_after: str | None, *, objects: bool
    ) -> Iterator[tuple[str, Path, os.DirEntry[str]]]:
        """Yield ``(key, path, entry)`` in key order: objects, or (``objects=False``) pending
        temporary files (keyed by the key they are for).

        In one directory, ordering entries by ``name`` for files and ``name + "/"`` for
        directories is exactly the order of the keys below them (every key in directory ``d``
        starts with ``d/``), so a depth-first walk yields keys sorted without collecting them.
        Directories that cannot hold a key matching ``prefix`` or after ``start_after`` are not
        entered.
        """
        yield from self._walk_dir(self.root, "", prefix, start_after, objects)

    def _walk_dir(
        self, directory: Path, base: str, prefix: str, start_after: str | None, objects: bool
    ) -> Iterator[tuple[str, Path, os.DirEntry[str]]]:
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except (FileNotFoundError, NotADirectoryError):
            return
        items: list[tuple[str, bool, os.DirEntry[str]]] = []
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            items.append((entry.name + "/" if is_dir else entry.name, is_dir, entry))
        items.sort(key=lambda item: item[0])
        for sort_name, is_dir, entry in items:
            name = entry.name
            if is_dir:
                if name.startswith(RESERVED_PREFIX):
                    continue
                sub = base + sort_name
                if not (sub.startswith(prefix) or prefix.startswith(sub)):
                    continue
                if (
                    start_after is not None
                    and start_after >= sub
                    and not start_after.startswith(sub)
                ):
                    continue
                yield from self._walk_dir(Path(entry.path), sub, prefix, start_after, objects)
                continue
            if name.startswith(RESERVED_PREFIX):
                if objects:
                    continue
                parts = name[len(RESERVED_PREFIX) :].split(".", 2)
                if len(parts) != 3 or parts[0] not in _KINDS:
                    continue
                key = base + parts[2]
            else:
                if not objects:
                    continue
                key = base + name
                try:
                    if not entry.is_file(follow_symlinks=False):
                        continue
                except OSError:
                    continue
            if not key.startswith(prefix):
                continue
            if start_after is not None and key <= start_after:
                continue
            yield key, Path(entry.path), entry


class _WriteBehind:
    """One background thread (for the process) that writes upload chunks in order: hashing and
    ``os.write`` release the GIL, so they run beside the caller (the consumer loop) instead of
    inside it. At most ``limit`` bytes wait at once: a writer above it blocks."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._cond = threading.Condition()
        self._queue: collections.deque[tuple[LocalUpload, bytes]] = collections.deque()
        self._queued = 0
        self._thread: threading.Thread | None = None

    def submit(self, upload: LocalUpload, chunk: bytes) -> None:
        with self._cond:
            while self._queued and self._queued + len(chunk) > self._limit:
                self._cond.wait()
            self._queue.append((upload, chunk))
            self._queued += len(chunk)
            upload._pending += len(chunk)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="s3sink-local-writer", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def drain(self, upload: LocalUpload) -> None:
        """Wait until every chunk of ``upload`` is written (or dropped)."""
        with self._cond:
            while upload._pending:
                self._cond.wait()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                upload, chunk = self._queue.popleft()
            try:
                upload._write_now(chunk)
            except BaseException as exc:  # reported by the upload's next call
                upload._error = exc
            with self._cond:
                self._queued -= len(chunk)
                upload._pending -= len(chunk)
                self._cond.notify_all()


#: Bytes of upload chunks waiting for the background writer, across all local uploads.
WRITE_BEHIND_BYTES = 32 * 1024 * 1024
_WRITE_BEHIND = _WriteBehind(WRITE_BEHIND_BYTES)


class LocalUpload:
    """A streaming upload to a temporary file, moved into place by :meth:`complete`. Chunks
    are hashed and written by a background thread (:class:`_WriteBehind`), in order."""

    def __init__(self, storage: LocalStorage, key: str, path: Path, tmp: Path, fd: int) -> None:
        self.key = key
        self._storage = storage
        self._path = path
        self._tmp = tmp
        self._fd = fd
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._size = 0
        self._state: Literal["open", "completed", "aborted"] = "open"
        #: Bytes handed to the background writer and not written yet.
        self._pending = 0
        #: What a background write raised (raised again by the next call).
        self._error: BaseException | None = None

    def buffered_bytes(self) -> int:
        """Bytes waiting for the background writer."""
        return self._pending

    def _raise_error(self) -> None:
        if self._error is not None:
            exc, self._error = self._error, None
            self._state = "aborted"
            raise exc

    @_os_boundary
    def write(self, data: bytes | memoryview) -> None:
        if self._state != "open":
            raise StorageError(f"upload of {self.key} is {self._state}; cannot write")
        self._raise_error()
        chunk = data if isinstance(data, bytes) else bytes(memoryview(data).cast("B"))
        if not chunk:
            return
        self._size += len(chunk)
        _WRITE_BEHIND.submit(self, chunk)

    def _write_now(self, chunk: bytes) -> None:
        if self._state != "open" or self._error is not None:
            return  # aborted (or failed) meanwhile: drop it
        self._md5.update(chunk)
        view = memoryview(chunk)
        while view:
            view = view[os.write(self._fd, view) :]

    @_os_boundary
    def complete(self) -> ObjectInfo:
        if self._state != "open":
            raise StorageError(f"upload of {self.key} is {self._state}; cannot complete")
        _WRITE_BEHIND.drain(self)
        if self._error is not None:
            self.abort()
            self._raise_error()
        storage = self._storage
        md5hex = self._md5.hexdigest()
        try:
            storage._seal(self._fd, md5hex)
        finally:
            os.close(self._fd)
            self._fd = -1
        try:
            storage._replace(self._tmp, self._path, self.key)
            storage._sync_dir(self._path.parent)
        except FileNotFoundError as exc:
            self._state = "aborted"
            raise NotFoundError(
                f"{storage.describe()}/{self.key}: upload was aborted (its temporary file is gone)"
            ) from exc
        self._state = "completed"
        return ObjectInfo(self.key, self._size, _quote(md5hex))

    def abort(self) -> None:
        if self._state == "completed":
            return
        self._state = "aborted"
        _WRITE_BEHIND.drain(self)  # the fd may not close under a write in progress
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> LocalUpload:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None or self._state == "open":
            self.abort()
