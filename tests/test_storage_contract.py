"""The Storage contract, run over every backend: memory, local filesystem, moto S3 and MinIO.

Race tests (exactly one winner of a conditional create) run where conditional writes are atomic
under concurrency: memory, local (threads and processes) and MinIO -- not moto.
Backend-specific behaviour of the local and memory stores, and ``storage.url`` parsing, are at the
end of this file; S3-only behaviour is in ``test_storage_s3.py``.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3sink.errors import (
    ConfigError,
    ConflictError,
    NotFoundError,
    PermanentStorageError,
    StorageError,
    TransientStorageError,
)
from s3sink.storage import (
    FaultCall,
    InvalidKeyError,
    LocalStorage,
    MemoryStorage,
    ObjectInfo,
    RetryPolicy,
    Storage,
    Upload,
    open_storage,
    parse_storage_url,
)
from s3sink.storage.s3 import S3Credentials, S3Storage

if TYPE_CHECKING:
    from multiprocessing.synchronize import Barrier

    from s3sink.local import S3Endpoint

MiB = 1024 * 1024
PART = 5 * MiB


def _s3(endpoint: S3Endpoint, bucket: str, **kw: Any) -> S3Storage:
    return S3Storage(
        bucket,
        f"contract-{uuid.uuid4().hex[:8]}/root",
        endpoint_url=endpoint.url,
        region=endpoint.region,
        path_style=True,
        part_size=PART,
        credentials=S3Credentials(endpoint.access_key, endpoint.secret_key),
        # quick retries: moto answers 500 (not 404 NoSuchUpload) to a part of an aborted upload
        retry=RetryPolicy(max_attempts=4, base_delay_s=0.01, max_delay_s=0.05),
        **kw,
    )


def make_storage(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if kind == "memory":
        return MemoryStorage()
    if kind == "local":
        return LocalStorage(tmp_path / "store")
    if kind == "moto":
        return _s3(request.getfixturevalue("s3_endpoint"), request.getfixturevalue("s3_bucket"))
    if kind == "minio":
        return _s3(
            request.getfixturevalue("minio_endpoint"), request.getfixturevalue("minio_bucket")
        )
    raise AssertionError(kind)


ALL = [
    pytest.param("memory", id="memory"),
    pytest.param("local", id="local"),
    pytest.param("moto", id="moto", marks=pytest.mark.integration),
    pytest.param("minio", id="minio", marks=[pytest.mark.integration, pytest.mark.minio]),
]
ATOMIC = [p for p in ALL if p.id != "moto"]


@pytest.fixture(params=ALL)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    store = make_storage(request.param, request, tmp_path)
    yield store
    store.close()


@pytest.fixture(params=ATOMIC)
def atomic_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    store = make_storage(request.param, request, tmp_path)
    yield store
    store.close()


def keys_of(storage: Storage, prefix: str = "", start_after: str | None = None) -> list[str]:
    return [info.key for info in storage.list(prefix, start_after)]


# -- basics ---------------------------------------------------------------------------------


def test_is_a_storage(storage: Storage) -> None:
    assert isinstance(storage, Storage)
    assert storage.describe()


def test_put_get_head(storage: Storage) -> None:
    info = storage.put("a/b.json", b"hello", content_type="application/json")
    assert info == ObjectInfo("a/b.json", 5, info.etag)
    assert info.etag.startswith('"') and info.etag.endswith('"')
    assert storage.get("a/b.json") == (b"hello", info.etag)
    assert storage.head("a/b.json") == info
    assert list(storage.list("a/")) == [info]


def test_missing_key(storage: Storage) -> None:
    assert storage.head("nope/x") is None
    with pytest.raises(NotFoundError):
        storage.get("nope/x")
    assert keys_of(storage, "nope/") == []


def test_overwrite_changes_etag(storage: Storage) -> None:
    first = storage.put("k", b"one")
    second = storage.put("k", b"two!")
    assert first.etag != second.etag
    assert storage.get("k") == (b"two!", second.etag)
    assert storage.head("k") == ObjectInfo("k", 4, second.etag)


def test_empty_object(storage: Storage) -> None:
    info = storage.put("empty", b"")
    assert info.size == 0
    assert storage.get("empty") == (b"", info.etag)


def test_invalid_keys_are_rejected(storage: Storage) -> None:
    for bad in ("", "/abs", "a//b", "a/", "a/../b", "./a", "x/.s3sink-tmp"):
        with pytest.raises(InvalidKeyError):
            storage.put(bad, b"x")


# -- conditional writes -----------------------------------------------------------------------


def test_conditional_create(storage: Storage) -> None:
    info = storage.put("log/000001.json", b"first", if_none_match=True)
    with pytest.raises(ConflictError):
        storage.put("log/000001.json", b"second", if_none_match=True)
    assert storage.get("log/000001.json") == (b"first", info.etag)


def test_compare_and_swap(storage: Storage) -> None:
    v1 = storage.put("ckpt", b"v1")
    v2 = storage.put("ckpt", b"v2", if_match=v1.etag)
    assert storage.get("ckpt") == (b"v2", v2.etag)
    with pytest.raises(ConflictError):
        storage.put("ckpt", b"v3", if_match=v1.etag)  # stale etag
    assert storage.get("ckpt")[0] == b"v2"
    # quotes are not significant
    v3 = storage.put("ckpt", b"v3", if_match=v2.etag.strip('"'))
    assert storage.get("ckpt") == (b"v3", v3.etag)


def test_compare_and_swap_on_missing_key_conflicts(storage: Storage) -> None:
    with pytest.raises(ConflictError):
        storage.put("never", b"x", if_match='"0123456789abcdef0123456789abcdef"')
    assert storage.head("never") is None


def test_conditional_flags_are_exclusive(storage: Storage) -> None:
    with pytest.raises(StorageError):
        storage.put("k", b"x", if_none_match=True, if_match='"abc"')


# -- list -------------------------------------------------------------------------------------


def test_list_prefix_and_start_after(storage: Storage) -> None:
    keys = [
        "log/t/0/0000000001.json",
        "log/t/0/0000000002.json",
        "log/t/0/0000000010.json",
        "log/t/1/0000000001.json",
        "log/t-2/0/0000000001.json",
        "log/t0",
        "other/x",
    ]
    for key in reversed(keys):
        storage.put(key, key.encode())
    assert keys_of(storage) == sorted(keys)
    assert keys_of(storage, "log/t/0/") == keys[:3]
    assert keys_of(storage, "log/t/0/", start_after="log/t/0/0000000001.json") == keys[1:3]
    assert keys_of(storage, "log/t/0/", start_after="log/t/0/0000000010.json") == []
    # a prefix that is not a directory boundary
    assert keys_of(storage, "log/t") == sorted(keys[:6])
    # start_after inside, between and before directories, and before the prefix
    for prefix, after in [
        ("log/", "log/t-2/"),
        ("log/", "log/t-2/0/0000000001.json"),
        ("log/", "log/t-2/1"),
        ("log/", "log/t/0/0000000002.json"),
        ("log/", "log/t/0/9"),
        ("log/", "log/t/"),
        ("log/t/", "a"),
        ("", "log/t0"),
        ("", "log/t/1/0000000001.json"),
    ]:
        want = sorted(k for k in keys if k.startswith(prefix) and k > after)
        assert keys_of(storage, prefix, start_after=after) == want, (prefix, after)
    infos = list(storage.list("log/t/1/"))
    assert infos == [ObjectInfo(keys[3], len(keys[3]), storage.head(keys[3]).etag)]  # type: ignore[union-attr]


def test_list_orders_by_key_across_directories(storage: Storage) -> None:
    # '-' (0x2d) < '/' (0x2f) < '0' (0x30): a filesystem walk must not yield "a/b" before "a-c"
    keys = ["a/b", "a-c", "a0", "a/b0/x", "a/b-/y", "a.d/z"]
    for key in keys:
        storage.put(key, b"x")
    assert keys_of(storage) == sorted(keys)
    assert keys_of(storage, start_after="a-c") == sorted(keys)[1:]
    assert keys_of(storage, start_after="a/b") == sorted(keys)[3:]
    assert keys_of(storage, "a/") == sorted(k for k in keys if k.startswith("a/"))


# -- copy and delete --------------------------------------------------------------------------


def test_copy(storage: Storage) -> None:
    src = storage.put("staging/e1/f", b"payload")
    dst = storage.copy("staging/e1/f", "topics/t/partition=0/f")
    assert dst.key == "topics/t/partition=0/f"
    assert dst.size == src.size
    data, etag = storage.get("topics/t/partition=0/f")
    assert data == b"payload"
    assert etag == dst.etag
    assert storage.get("staging/e1/f")[0] == b"payload"
    # idempotent: copying again gives the same bytes
    again = storage.copy("staging/e1/f", "topics/t/partition=0/f")
    assert storage.get("topics/t/partition=0/f") == (b"payload", again.etag)


def test_copy_missing_source(storage: Storage) -> None:
    with pytest.raises(NotFoundError):
        storage.copy("nope", "dst")
    assert storage.head("dst") is None


def test_delete_is_idempotent(storage: Storage) -> None:
    storage.put("d/x", b"1")
    storage.put("d/y", b"2")
    storage.delete("d/x")
    storage.delete("d/x")
    storage.delete("never/was")
    assert storage.head("d/x") is None
    assert keys_of(storage, "d/") == ["d/y"]
    # the key can be created again, conditionally
    storage.put("d/x", b"3", if_none_match=True)
    assert storage.get("d/x")[0] == b"3"


# -- streaming uploads ------------------------------------------------------------------------


def _write_in_chunks(upload: Upload, data: bytes, chunk: int) -> None:
    view = memoryview(data)
    for start in range(0, len(data), chunk):
        upload.write(view[start : start + chunk])


def test_streaming_upload_12_mib(storage: Storage) -> None:
    data = os.urandom(12 * MiB + 12345)
    upload = storage.open_upload("staging/e1/big.bin")
    assert upload.key == "staging/e1/big.bin"
    _write_in_chunks(upload, data, 1 * MiB + 7)
    # not visible until complete
    assert storage.head("staging/e1/big.bin") is None
    assert keys_of(storage, "staging/") == []
    info = upload.complete()
    assert info.key == "staging/e1/big.bin"
    assert info.size == len(data)
    got, etag = storage.get("staging/e1/big.bin")
    assert got == data
    assert etag == info.etag
    assert storage.head("staging/e1/big.bin") == info
    assert list(storage.list("staging/")) == [info]
    assert storage.list_pending_uploads("staging/") == []


def test_small_upload_and_empty_upload(storage: Storage) -> None:
    upload = storage.open_upload("small")
    upload.write(b"abc")
    upload.write(memoryview(b"def"))
    info = upload.complete()
    assert storage.get("small") == (b"abcdef", info.etag)
    assert info.size == 6
    empty = storage.open_upload("empty")
    assert empty.complete().size == 0
    assert storage.get("empty")[0] == b""


def test_upload_exactly_one_part(storage: Storage) -> None:
    data = os.urandom(PART)
    upload = storage.open_upload("one-part")
    upload.write(data)
    info = upload.complete()
    assert storage.get("one-part") == (data, info.etag)


def test_abort_leaves_nothing(storage: Storage) -> None:
    upload = storage.open_upload("staging/e2/aborted.bin")
    _write_in_chunks(upload, os.urandom(6 * MiB), MiB)
    upload.abort()
    upload.abort()  # idempotent
    assert storage.head("staging/e2/aborted.bin") is None
    assert keys_of(storage) == []
    assert storage.list_pending_uploads("") == []
    with pytest.raises(StorageError):
        upload.write(b"more")
    with pytest.raises(StorageError):
        upload.complete()


def test_pending_uploads_are_listed_and_aborted(storage: Storage) -> None:
    # two uploads "left behind by a crash": started, parts written, never completed
    left = storage.open_upload("staging/e3/a.bin")
    left.write(os.urandom(PART + 1))
    other = storage.open_upload("elsewhere/b.bin")
    other.write(os.urandom(PART + 1))
    pending = storage.list_pending_uploads("staging/")
    assert [p.key for p in pending] == ["staging/e3/a.bin"]
    assert pending[0].upload_id
    assert pending[0].initiated_ms > 0
    assert [p.key for p in storage.list_pending_uploads("")] == [
        "elsewhere/b.bin",
        "staging/e3/a.bin",
    ]
    storage.abort_pending_upload(pending[0])
    storage.abort_pending_upload(pending[0])  # idempotent
    assert storage.list_pending_uploads("staging/") == []
    # the crashed writer's upload cannot complete any more
    with pytest.raises(StorageError):
        left.complete()
    left.abort()
    assert storage.head("staging/e3/a.bin") is None
    other.abort()
    assert storage.list_pending_uploads("") == []
    assert keys_of(storage) == []


def test_context_manager_aborts_on_error(storage: Storage) -> None:
    upload = storage.open_upload("cm")
    with pytest.raises(RuntimeError), upload:  # type: ignore[attr-defined]
        upload.write(os.urandom(PART + 10))
        raise RuntimeError("writer failed")
    assert storage.head("cm") is None
    assert storage.list_pending_uploads("") == []


# -- races ------------------------------------------------------------------------------------

ROUNDS = 200


def test_conditional_create_race_threads(atomic_storage: Storage) -> None:
    storage = atomic_storage
    barrier = threading.Barrier(2)
    wins: dict[int, list[int]] = {i: [] for i in range(ROUNDS)}
    errors: list[BaseException] = []

    def contender(who: int) -> None:
        try:
            for i in range(ROUNDS):
                barrier.wait(timeout=60)
                try:
                    storage.put(f"race/{i:04d}", f"writer-{who}".encode(), if_none_match=True)
                except ConflictError:
                    continue
                wins[i].append(who)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=contender, args=(who,)) for who in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i in range(ROUNDS):
        assert len(wins[i]) == 1, f"round {i}: winners {wins[i]}"
        assert storage.get(f"race/{i:04d}")[0] == f"writer-{wins[i][0]}".encode()


def _race_worker(root: str, who: int, rounds: int, barrier: Barrier, out: Any) -> None:
    storage = LocalStorage(root)
    won = []
    for i in range(rounds):
        barrier.wait(timeout=60)
        try:
            storage.put(f"race/{i:04d}", f"process-{who}".encode(), if_none_match=True)
        except ConflictError:
            continue
        won.append(i)
    out.put((who, won))


def test_local_conditional_create_race_processes(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    out = ctx.Queue()
    root = str(tmp_path / "store")
    LocalStorage(root)
    procs = [
        ctx.Process(target=_race_worker, args=(root, who, ROUNDS, barrier, out)) for who in (0, 1)
    ]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    won0, won1 = set(results[0]), set(results[1])
    assert won0.isdisjoint(won1)
    assert won0 | won1 == set(range(ROUNDS))
    assert won0 and won1
    storage = LocalStorage(root)
    for i in range(ROUNDS):
        expected = b"process-0" if i in won0 else b"process-1"
        assert storage.get(f"race/{i:04d}")[0] == expected


def test_compare_and_swap_race_threads(atomic_storage: Storage) -> None:
    """Concurrent read-modify-write increments through If-Match lose no update."""
    storage = atomic_storage
    storage.put("counter", b"0")
    per_thread = 25

    def incrementer() -> None:
        done = 0
        while done < per_thread:
            data, etag = storage.get("counter")
            try:
                storage.put("counter", str(int(data) + 1).encode(), if_match=etag)
            except ConflictError:
                continue
            done += 1

    threads = [threading.Thread(target=incrementer) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert storage.get("counter")[0] == str(3 * per_thread).encode()


# -- ordering property (fast backends) --------------------------------------------------------

_segment = st.sampled_from(["a", "b", "a-", "a.b", "a0", "b_c", "0", "z~"])
_key = st.lists(_segment, min_size=1, max_size=3).map("/".join)
_probe = st.one_of(st.none(), st.lists(_segment, max_size=3).map("/".join))


def _portable(keys: set[str]) -> set[str]:
    """Drop keys that are also a directory of another key (a filesystem cannot hold both)."""
    return {k for k in keys if not any(o.startswith(k + "/") for o in keys)}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(keys=st.sets(_key, max_size=12), prefix=_probe, start_after=_probe)
def test_list_matches_sorted_filter(
    keys: set[str], prefix: str | None, start_after: str | None
) -> None:
    keys = _portable(keys)
    want = sorted(
        k for k in keys if k.startswith(prefix or "") and (start_after is None or k > start_after)
    )
    with tempfile.TemporaryDirectory() as tmp:
        for storage in (MemoryStorage(), LocalStorage(tmp, fsync=False)):
            for key in keys:
                storage.put(key, key.encode())
            assert keys_of(storage, prefix or "", start_after) == want


# -- local backend specifics ------------------------------------------------------------------


def test_local_layout_and_temp_files_are_hidden(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put("topics/t/partition=0/t+0+0000000000.json", b"{}\n")
    assert (tmp_path / "topics/t/partition=0/t+0+0000000000.json").read_bytes() == b"{}\n"
    upload = storage.open_upload("topics/t/partition=0/t+0+0000000001.json")
    upload.write(b"x")
    names = os.listdir(tmp_path / "topics/t/partition=0")
    assert any(n.startswith(".s3sink-upload.") for n in names)
    assert keys_of(storage) == ["topics/t/partition=0/t+0+0000000000.json"]
    upload.complete()
    assert not any(n.startswith(".s3sink-") for n in os.listdir(tmp_path / "topics/t/partition=0"))
    assert len(keys_of(storage)) == 2


def test_local_etag_is_quoted_md5_and_survives_without_xattr(tmp_path: Path) -> None:
    import hashlib

    storage = LocalStorage(tmp_path)
    info = storage.put("k", b"content")
    assert info.etag == '"' + hashlib.md5(b"content").hexdigest() + '"'
    # a file written by something else (no xattr) gets the same etag, computed
    (tmp_path / "external").write_bytes(b"content")
    assert storage.head("external") == ObjectInfo("external", 7, info.etag)
    # a file modified in place behind our back: the stale xattr is not trusted
    path = tmp_path / "k"
    st_before = path.stat()
    with open(path, "r+b") as fh:
        fh.write(b"CONTENT")
    os.utime(path, ns=(st_before.st_atime_ns, st_before.st_mtime_ns + 1_000_000))
    assert storage.head("k").etag == '"' + hashlib.md5(b"CONTENT").hexdigest() + '"'  # type: ignore[union-attr]


def test_local_delete_prunes_empty_directories(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put("a/b/c/d", b"1")
    storage.put("a/x", b"2")
    storage.delete("a/b/c/d")
    assert not (tmp_path / "a/b").exists()
    assert (tmp_path / "a/x").exists()
    storage.put("a/b/c/d", b"again", if_none_match=True)
    assert storage.get("a/b/c/d")[0] == b"again"


def test_local_key_that_is_also_a_prefix(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put("a/b", b"1")
    with pytest.raises(PermanentStorageError, match="prefix"):
        storage.put("a/b/c", b"2")
    storage.put("x/y/z", b"1")
    with pytest.raises(PermanentStorageError, match="prefix"):
        storage.put("x/y", b"2")
    assert storage.head("x/y") is None
    with pytest.raises(NotFoundError):
        storage.get("x/y")


def test_local_crash_leftovers_are_pending_uploads(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path, clock=lambda: 1_700_000_000.5)
    storage.put("d/keep", b"k")
    # a crash mid-put and mid-upload leave temp files behind
    (tmp_path / "d" / ".s3sink-put.1700000000000-abcdef.file").write_bytes(b"partial")
    upload = storage.open_upload("d/upl")
    upload.write(b"partial")
    pending = storage.list_pending_uploads("d/")
    assert [(p.key, p.initiated_ms) for p in pending] == [
        ("d/file", 1_700_000_000_000),
        ("d/upl", 1_700_000_000_500),
    ]
    for p in pending:
        storage.abort_pending_upload(p)
    assert storage.list_pending_uploads("") == []
    assert sorted(os.listdir(tmp_path / "d")) == ["keep"]
    with pytest.raises(NotFoundError):
        upload.complete()
    with pytest.raises(StorageError):
        storage.abort_pending_upload(pending[0].__class__("d/x", "../../etc", 0))


def test_local_storage_is_shared_across_instances(tmp_path: Path) -> None:
    one, two = LocalStorage(tmp_path), LocalStorage(tmp_path)
    a = one.put("k", b"1")
    with pytest.raises(ConflictError):
        two.put("k", b"2", if_none_match=True)
    two.put("k", b"2", if_match=a.etag)
    with pytest.raises(ConflictError):
        one.put("k", b"3", if_match=a.etag)


def test_local_permission_error_is_permanent(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions")
    storage = LocalStorage(tmp_path)
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o500)
    try:
        with pytest.raises(PermanentStorageError):
            storage.put("ro/x", b"1")
    finally:
        (tmp_path / "ro").chmod(0o700)


def test_local_os_error_mapping() -> None:
    import errno

    from s3sink.storage.local import map_os_error

    denied = map_os_error(PermissionError(errno.EACCES, "Permission denied", "/x/y"), "put")
    assert isinstance(denied, PermanentStorageError)
    assert "/x/y" in str(denied) and "may write" in str(denied)
    full = map_os_error(OSError(errno.ENOSPC, "No space left on device", "/x"), "put")
    assert isinstance(full, TransientStorageError)
    assert isinstance(map_os_error(OSError(errno.ENAMETOOLONG, "too long"), "put"), StorageError)


# -- memory backend specifics -----------------------------------------------------------------


def test_memory_fault_hook_before_and_after() -> None:
    calls: list[FaultCall] = []
    fail: dict[tuple[str, str], BaseException] = {}

    def hook(call: FaultCall) -> None:
        calls.append(call)
        exc = fail.pop((call.op, call.phase), None)
        if exc is not None:
            raise exc

    storage = MemoryStorage(fault_hook=hook)
    fail[("put", "before")] = TransientStorageError("injected before")
    with pytest.raises(TransientStorageError):
        storage.put("log/1", b"x", if_none_match=True)
    assert storage.head("log/1") is None  # never applied

    fail[("put", "after")] = TransientStorageError("injected: response lost")
    with pytest.raises(TransientStorageError):
        storage.put("log/1", b"mine", if_none_match=True)
    # applied: a retry conflicts, and reading shows our content
    with pytest.raises(ConflictError):
        storage.put("log/1", b"mine", if_none_match=True)
    assert storage.get("log/1")[0] == b"mine"
    assert any(c.op == "put" and c.conditional for c in calls)

    fail[("copy", "before")] = TransientStorageError("boom")
    with pytest.raises(TransientStorageError):
        storage.copy("log/1", "final/1")
    assert storage.copy("log/1", "final/1").size == 4
    assert [c.src for c in calls if c.op == "copy"][-1] == "log/1"


def test_memory_upload_complete_fault_after_landing() -> None:
    def hook(call: FaultCall) -> None:
        if call.op == "upload_complete" and call.phase == "after":
            raise TransientStorageError("response lost")

    storage = MemoryStorage(fault_hook=hook)
    upload = storage.open_upload("f")
    upload.write(b"data")
    with pytest.raises(TransientStorageError):
        upload.complete()
    assert storage.get("f")[0] == b"data"
    assert storage.list_pending_uploads("") == []
    upload.abort()  # no-op after the object landed
    assert storage.get("f")[0] == b"data"


def test_memory_is_thread_safe_under_concurrent_writers() -> None:
    storage = MemoryStorage()

    def writer(n: int) -> None:
        for i in range(200):
            storage.put(f"w{n}/{i}", b"x")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys_of(storage)) == 800


# -- storage.url ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "scheme", "location", "prefix"),
    [
        ("s3://my-bucket", "s3", "my-bucket", ""),
        ("s3://my-bucket/", "s3", "my-bucket", ""),
        ("s3://my-bucket/archive/raw/", "s3", "my-bucket", "archive/raw"),
        ("s3a://my.bucket/x", "s3", "my.bucket", "x"),
        ("file:///data/archive", "file", "/data/archive", ""),
        ("file:///data/archive/", "file", "/data/archive", ""),
        ("file://localhost/data/my%20dir", "file", "/data/my dir", ""),
        ("memory://", "memory", "", ""),
        ("memory://unit", "memory", "unit", ""),
    ],
)
def test_parse_storage_url(url: str, scheme: str, location: str, prefix: str) -> None:
    parsed = parse_storage_url(url)
    assert (parsed.scheme, parsed.location, parsed.prefix) == (scheme, location, prefix)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "empty"),
        ("/data/archive", "file:///data/archive"),
        ("gs://bucket/x", "unsupported scheme"),
        ("http://example.com/x", "unsupported scheme"),
        ("s3://", "names no bucket"),
        ("s3://abc/x//y", "bad prefix"),
        ("s3://Bad_Bucket!/x", "not a valid S3 bucket name"),
        ("file://server/share", "remote hosts"),
        ("file:relative/path", "absolute"),
        ("s3://bucket/x?versionId=1", "not allowed"),
    ],
)
def test_parse_storage_url_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_storage_url(url)
    assert info.value.key == "storage.url"


def test_storage_url_with_credentials_is_rejected_without_echoing_them() -> None:
    with pytest.raises(ConfigError) as info:
        parse_storage_url("s3://AKIAXXXX:sup3rs3cret@bucket/prefix")
    assert "sup3rs3cret" not in str(info.value)
    assert "AKIAXXXX" not in str(info.value)


def test_open_storage(tmp_path: Path) -> None:
    local = open_storage(f"file://{tmp_path}/store")
    assert isinstance(local, LocalStorage)
    assert local.describe() == f"file://{tmp_path}/store"
    fresh1, fresh2 = open_storage("memory://"), open_storage("memory://")
    assert fresh1 is not fresh2
    named = open_storage("memory://shared-" + uuid.uuid4().hex)
    assert open_storage(named.describe()) is named
    s3 = open_storage(
        "s3://bucket/pre/fix",
        region="eu-west-1",
        endpoint_url="http://127.0.0.1:1",
        access_key_id="AKIAEXAMPLE",
        secret_access_key="very-secret-value",
        part_size=8 * MiB,
        sse="AES256",
        acl="bucket-owner-full-control",
    )
    try:
        assert isinstance(s3, S3Storage)
        assert (s3.bucket, s3.prefix, s3.part_size) == ("bucket", "pre/fix", 8 * MiB)
        assert "very-secret-value" not in s3.describe()
        assert "very-secret-value" not in repr(s3.__dict__)
    finally:
        s3.close()
    with pytest.raises(ConfigError, match="both"):
        open_storage("s3://bucket", access_key_id="AKIAEXAMPLE")
    with pytest.raises(ConfigError):
        open_storage("ftp://x")
