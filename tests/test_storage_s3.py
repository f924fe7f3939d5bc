"""S3-only behaviour of ``S3Storage``: encryption and ACL headers, pagination, error mapping,
retries, bounded upload concurrency, multipart copy, and S3 faults through the fault proxy.

The backend-independent contract is in ``test_storage_contract.py``.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

from s3sink.config import parse as parse_config
from s3sink.errors import (
    ConfigError,
    ConflictError,
    NotFoundError,
    PermanentStorageError,
    RetriableError,
    StorageError,
    TransientStorageError,
)
from s3sink.sink import storage_from_config
from s3sink.storage.retry import RetryPolicy, RetryStats, call_with_retry
from s3sink.storage.s3 import (
    MIN_PART_SIZE,
    S3Credentials,
    S3Storage,
    map_s3_error,
    multipart_etag,
)
from tests.rig.faultproxy import FaultProxy, ProxiedRequest
from tests.rig.tapproxy import TapProxy

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from s3sink.local import S3Endpoint

MiB = 1024 * 1024
PART = MIN_PART_SIZE
FAST_RETRY = RetryPolicy(max_attempts=10, base_delay_s=0.001, max_delay_s=0.01)


def make_s3(endpoint: S3Endpoint, bucket: str, *, url: str | None = None, **kw: Any) -> S3Storage:
    kw.setdefault("part_size", PART)
    kw.setdefault("retry", FAST_RETRY)
    return S3Storage(
        bucket,
        kw.pop("prefix", f"s3test-{uuid.uuid4().hex[:8]}"),
        endpoint_url=url or endpoint.url,
        region=endpoint.region,
        path_style=True,
        credentials=S3Credentials(endpoint.access_key, endpoint.secret_key),
        **kw,
    )


@pytest.fixture
def s3(s3_endpoint: S3Endpoint, s3_bucket: str) -> Iterator[S3Storage]:
    storage = make_s3(s3_endpoint, s3_bucket)
    yield storage
    storage.close()


class Wrapped:
    """A boto3 client with some methods replaced (everything else is the real client)."""

    def __init__(self, real: S3Client, **overrides: Callable[..., Any]) -> None:
        self._real = real
        self._overrides = overrides

    def __getattr__(self, name: str) -> Any:
        if name in self._overrides:
            return self._overrides[name]
        return getattr(self._real, name)


def client_error(
    code: str, status: int, message: str = "msg", op: str = "PutObject"
) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, op)


# -- encryption and ACL on every write --------------------------------------------------------


def _record_requests(storage: S3Storage) -> list[tuple[str, dict[str, str]]]:
    seen: list[tuple[str, dict[str, str]]] = []

    def before_send(request: Any, **_kw: Any) -> None:
        headers = {
            k.lower(): v.decode() if isinstance(v, bytes) else str(v)
            for k, v in request.headers.items()
        }
        seen.append((request.method + " " + request.url, headers))

    storage.client.meta.events.register("before-send.s3", before_send)
    return seen


def _has_all_users_read(s3_client: S3Client, bucket: str, key: str) -> bool:
    grants = s3_client.get_object_acl(Bucket=bucket, Key=key)["Grants"]
    return any(
        g["Grantee"].get("URI", "").endswith("/global/AllUsers") and g["Permission"] == "READ"
        for g in grants
    )


def _write_every_way_and_check_headers(
    storage: S3Storage,
    s3_client: S3Client,
    bucket: str,
    *,
    sse: str,
    kms_key_id: str | None,
    acl: str,
) -> None:
    """PutObject (plain and conditional), a multipart upload and a CopyObject through
    ``storage``: each write request carries the SSE and ACL headers, each object is encrypted."""
    seen = _record_requests(storage)
    storage.put("single", b"x")
    storage.put("cond", b"x", if_none_match=True)
    upload = storage.open_upload("multi")
    upload.write(os.urandom(PART + 100))
    upload.complete()
    storage.copy("multi", "copied")
    for key in ("single", "cond", "multi", "copied"):
        head = s3_client.head_object(Bucket=bucket, Key=f"{storage.prefix}/{key}")
        assert head.get("ServerSideEncryption") == sse, key
        if kms_key_id is not None:
            assert head.get("SSEKMSKeyId") == kms_key_id, key
        if acl == "public-read":
            assert _has_all_users_read(s3_client, bucket, f"{storage.prefix}/{key}"), key
    writes = [
        (what, headers)
        for what, headers in seen
        if what.startswith(("PUT", "POST"))
        and "partNumber=" not in what
        and "uploadId=" not in what
    ]
    kinds = sorted(
        "CopyObject"
        if "x-amz-copy-source" in headers
        else "CreateMultipartUpload"
        if what.startswith("POST")
        else "PutObject"
        for what, headers in writes
    )
    assert kinds == ["CopyObject", "CreateMultipartUpload", "PutObject", "PutObject"], writes
    for what, headers in writes:
        assert headers["x-amz-server-side-encryption"] == sse, what
        assert headers.get("x-amz-server-side-encryption-aws-kms-key-id") == kms_key_id, what
        assert headers["x-amz-acl"] == acl, what
    # part uploads and the completion carry no SSE/ACL headers (S3 rejects them there)
    for what, headers in seen:
        if "uploadId=" in what:
            assert "x-amz-acl" not in headers, what
    assert "sse " + sse in storage.describe()


@pytest.mark.parametrize(
    ("sse", "kms_key_id"),
    [("AES256", None), ("aws:kms", "arn:aws:kms:us-east-1:123456789012:key/s3sink-test")],
)
def test_sse_and_acl_reach_the_endpoint_on_every_write(
    s3_endpoint: S3Endpoint,
    s3_bucket: str,
    s3_client: S3Client,
    sse: str,
    kms_key_id: str | None,
) -> None:
    storage = make_s3(s3_endpoint, s3_bucket, sse=sse, kms_key_id=kms_key_id, acl="public-read")
    try:
        _write_every_way_and_check_headers(
            storage, s3_client, s3_bucket, sse=sse, kms_key_id=kms_key_id, acl="public-read"
        )
    finally:
        storage.close()


@pytest.mark.parametrize(
    "encryption",
    [
        {"s3.ssea.name": "AES256"},
        {
            "s3.ssea.name": "aws:kms",
            "s3.sse.kms.key.id": "arn:aws:kms:us-east-1:123456789012:key/s3sink-config",
        },
        {"s3.ssea.name": "aws:kms"},  # the bucket's default KMS key
    ],
    ids=["AES256", "kms-key", "kms-default-key"],
)
def test_sse_and_acl_from_the_config_reach_the_endpoint(
    s3_endpoint: S3Endpoint, s3_bucket: str, s3_client: S3Client, encryption: dict[str, str]
) -> None:
    """The path the sink takes: config keys -> ``storage_from_config`` -> every write, with the
    headers checked as the client sends them and as a proxy in front of the endpoint sees them."""
    sse = encryption["s3.ssea.name"]
    kms_key_id = encryption.get("s3.sse.kms.key.id")
    acl = "bucket-owner-full-control"
    with TapProxy(s3_endpoint.url) as proxy:
        cfg = parse_config(
            {
                "name": "sse-acl",
                "topics": "t",
                "bootstrap.servers": "127.0.0.1:9",
                "storage.url": f"s3://{s3_bucket}/cfg-{uuid.uuid4().hex[:8]}",
                "store.url": proxy.url,
                "s3.region": s3_endpoint.region,
                "s3.path.style.access.enabled": "true",
                "s3.part.size": str(PART),
                "s3.acl.canned": acl,
                "aws.access.key.id": s3_endpoint.access_key,
                "aws.secret.access.key": s3_endpoint.secret_key,
                **encryption,
            },
            environ={},
        )
        storage = storage_from_config(cfg)
        assert isinstance(storage, S3Storage)
        try:
            _write_every_way_and_check_headers(
                storage, s3_client, s3_bucket, sse=sse, kms_key_id=kms_key_id, acl=acl
            )
        finally:
            storage.close()
        received = [
            x
            for x in proxy.exchanges
            if x.method in ("PUT", "POST") and "partNumber=" not in x.path
        ]
    writes = [x for x in received if "uploadId=" not in x.path]
    assert len(writes) == 4, [(x.method, x.path) for x in writes]
    for x in writes:
        assert x.status == 200, (x.path, x.response[:300])
        assert x.headers["x-amz-server-side-encryption"] == sse, x.path
        assert x.headers.get("x-amz-server-side-encryption-aws-kms-key-id") == kms_key_id
        assert x.headers["x-amz-acl"] == acl, x.path
    completes = [x for x in received if "uploadId=" in x.path]
    assert len(completes) == 1 and "x-amz-acl" not in completes[0].headers


def test_no_sse_headers_by_default(s3: S3Storage) -> None:
    seen = _record_requests(s3)
    s3.put("k", b"x")
    assert not any("x-amz-server-side-encryption" in h or "x-amz-acl" in h for _, h in seen)


def test_config_validation() -> None:
    def build(**kw: Any) -> None:
        S3Storage("bucket", endpoint_url="http://127.0.0.1:1", region="us-east-1", **kw).close()

    with pytest.raises(ConfigError, match="5 MiB") as info:
        build(part_size=MIN_PART_SIZE - 1)
    assert info.value.key == "s3.part.size"
    with pytest.raises(ConfigError) as info:
        build(sse="AES128")
    assert info.value.key == "s3.ssea.name"
    with pytest.raises(ConfigError) as info:
        build(sse="AES256", kms_key_id="k")
    assert info.value.key == "s3.sse.kms.key.id"
    with pytest.raises(ConfigError) as info:
        build(acl="world-writable")
    assert info.value.key == "s3.acl.canned"
    with pytest.raises(ConfigError):
        S3Storage("", region="us-east-1")
    # a KMS key id alone implies aws:kms
    storage = S3Storage("bucket", region="us-east-1", kms_key_id="k", endpoint_url="http://x:1")
    assert "sse aws:kms" in storage.describe()
    storage.close()


# -- listing ----------------------------------------------------------------------------------


def test_list_paginates_with_start_after(s3_endpoint: S3Endpoint, s3_bucket: str) -> None:
    storage = make_s3(s3_endpoint, s3_bucket, list_page_size=2)
    try:
        seen = _record_requests(storage)
        keys = [f"log/{i:04d}.json" for i in range(7)]
        for key in keys:
            storage.put(key, b"m")
        storage.put("logx", b"not under log/")
        seen.clear()
        assert [i.key for i in storage.list("log/")] == keys
        assert sum("list-type=2" in what for what, _ in seen) == 4
        assert [i.key for i in storage.list("log/", start_after="log/0002.json")] == keys[3:]
        assert [i.key for i in storage.list("log/", start_after="log/0006.json")] == []
    finally:
        storage.close()


def test_prefixless_storage(s3_endpoint: S3Endpoint, s3_bucket: str, s3_client: S3Client) -> None:
    storage = make_s3(s3_endpoint, s3_bucket, prefix="")
    try:
        storage.put("top", b"1")
        assert s3_client.get_object(Bucket=s3_bucket, Key="top")["Body"].read() == b"1"
        assert [i.key for i in storage.list("")] == ["top"]
        assert storage.describe().startswith(f"s3://{s3_bucket}/")
    finally:
        storage.close()


# -- errors -----------------------------------------------------------------------------------


def test_missing_bucket_is_permanent_and_clear(s3_endpoint: S3Endpoint) -> None:
    storage = make_s3(s3_endpoint, "no-such-bucket-" + uuid.uuid4().hex[:8])
    try:
        for call in (
            lambda: storage.put("k", b"x"),
            lambda: storage.get("k"),
            lambda: list(storage.list("")),
            lambda: storage.put("k", b"x", if_none_match=True),
        ):
            with pytest.raises(PermanentStorageError) as info:
                call()
            assert storage.bucket in str(info.value)
            assert "s3.bucket.name" in str(info.value)
        assert storage.retry_stats.retries == 0
    finally:
        storage.close()


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("PreconditionFailed", 412, ConflictError),
        ("ConditionalRequestConflict", 409, ConflictError),
        ("NoSuchKey", 404, NotFoundError),
        ("404", 404, NotFoundError),
        ("NoSuchUpload", 404, NotFoundError),
        ("NoSuchBucket", 404, PermanentStorageError),
        ("AccessDenied", 403, PermanentStorageError),
        ("InvalidAccessKeyId", 403, PermanentStorageError),
        ("SignatureDoesNotMatch", 403, PermanentStorageError),
        ("RequestTimeTooSkewed", 403, PermanentStorageError),
        ("PermanentRedirect", 301, PermanentStorageError),
        ("KMS.DisabledException", 400, PermanentStorageError),
        ("InvalidArgument", 400, PermanentStorageError),
        ("SlowDown", 503, TransientStorageError),
        ("ServiceUnavailable", 503, TransientStorageError),
        ("InternalError", 500, TransientStorageError),
        ("", 502, TransientStorageError),
        ("RequestTimeout", 400, TransientStorageError),
        ("Throttling", 400, TransientStorageError),
        ("TooManyRequestsException", 429, TransientStorageError),
        ("OperationAborted", 409, TransientStorageError),
    ],
)
def test_error_mapping(code: str, status: int, expected: type[StorageError]) -> None:
    mapped = map_s3_error(client_error(code, status), op="PutObject", bucket="bkt", key="p/k")
    assert type(mapped) is expected
    assert "s3://bkt/p/k" in str(mapped)


def test_error_messages_say_what_to_check() -> None:
    denied = map_s3_error(client_error("AccessDenied", 403), op="ListObjectsV2", bucket="b", key="")
    assert "s3:ListBucket" in str(denied) and "arn:aws:s3:::b" in str(denied)
    assert isinstance(denied, PermanentStorageError)
    region = map_s3_error(
        client_error("PermanentRedirect", 301), op="GetObject", bucket="b", key="k"
    )
    assert "s3.region" in str(region)


def test_connection_errors_are_transient() -> None:
    for exc in (
        ConnectionClosedError(endpoint_url="http://127.0.0.1:9"),
        EndpointConnectionError(endpoint_url="http://127.0.0.1:9"),
        ConnectionResetError(104, "Connection reset by peer"),
    ):
        mapped = map_s3_error(exc, op="PutObject", bucket="b", key="k")
        assert isinstance(mapped, TransientStorageError)
        assert isinstance(mapped, RetriableError)
    assert map_s3_error(ValueError("a bug"), op="PutObject", bucket="b", key="k") is None


def test_no_secret_in_describe_repr_or_errors(s3_endpoint: S3Endpoint, s3_bucket: str) -> None:
    secret = "s3cr3t-" + uuid.uuid4().hex
    creds = S3Credentials(s3_endpoint.access_key, secret, session_token="tok-" + secret)
    assert secret not in repr(creds)
    storage = S3Storage(
        "no-such-bucket-" + uuid.uuid4().hex[:8],
        "p",
        endpoint_url=s3_endpoint.url,
        region=s3_endpoint.region,
        path_style=True,
        credentials=creds,
        retry=FAST_RETRY,
    )
    try:
        assert secret not in storage.describe()
        with pytest.raises(StorageError) as info:
            storage.put("k", b"x")
        text = str(info.value) + repr(info.value)
        cause = info.value.__cause__
        assert secret not in text
        assert cause is not None and secret not in str(cause)
    finally:
        storage.close()
    # an endpoint URL with user info is redacted in describe()
    redacted = S3Storage("b", endpoint_url="http://user:pw-secret@127.0.0.1:1", region="us-east-1")
    assert "pw-secret" not in redacted.describe()
    redacted.close()


# -- retries ----------------------------------------------------------------------------------


def test_retry_policy_full_jitter_bounds() -> None:
    policy = RetryPolicy(max_attempts=10, base_delay_s=0.1, max_delay_s=2.0)
    rng = random.Random(1)
    for retry in range(12):
        cap = min(2.0, 0.1 * 2**retry)
        delays = [policy.delay(retry, rng) for _ in range(200)]
        assert all(0 <= d <= cap for d in delays)
        assert max(delays) > cap * 0.8  # spread over the whole range (full jitter)
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_call_with_retry_gives_up_after_max_attempts() -> None:
    sleeps: list[float] = []
    calls = 0
    stats = RetryStats()

    def always_fails() -> None:
        nonlocal calls
        calls += 1
        raise TransientStorageError("503 SlowDown")

    with pytest.raises(TransientStorageError, match="giving up after 4 attempt"):
        call_with_retry(
            always_fails,
            policy=RetryPolicy(max_attempts=4, base_delay_s=1.0, max_delay_s=3.0),
            what="PutObject s3://b/k",
            sleep=sleeps.append,
            rng=random.Random(0),
            stats=stats,
        )
    assert calls == 4
    assert len(sleeps) == 3
    assert all(0 <= s <= c for s, c in zip(sleeps, (1.0, 2.0, 3.0), strict=True))
    assert (stats.attempts, stats.retries, stats.exhausted) == (4, 3, 1)


def test_call_with_retry_respects_time_budget() -> None:
    now = [0.0]

    def fails() -> None:
        now[0] += 5.0
        raise TransientStorageError("timeout")

    with pytest.raises(TransientStorageError, match="giving up after 3 attempt"):
        call_with_retry(
            fails,
            policy=RetryPolicy(max_attempts=100, max_elapsed_s=12.0),
            what="x",
            sleep=lambda _s: None,
            clock=lambda: now[0],
        )


def test_non_transient_errors_are_not_retried() -> None:
    calls = 0

    def conflict() -> None:
        nonlocal calls
        calls += 1
        raise ConflictError("412")

    with pytest.raises(ConflictError):
        call_with_retry(conflict, policy=RetryPolicy(), what="x", sleep=lambda _s: None)
    assert calls == 1


def test_storage_retries_throttling_with_injected_sleep(
    s3_endpoint: S3Endpoint, s3_bucket: str
) -> None:
    sleeps: list[float] = []
    storage = make_s3(
        s3_endpoint,
        s3_bucket,
        retry=RetryPolicy(max_attempts=5, base_delay_s=0.5, max_delay_s=4.0),
        sleep=sleeps.append,
        rng=random.Random(3),
    )
    real_put = storage.client.put_object
    failures = iter([client_error("SlowDown", 503), client_error("InternalError", 500)])

    def flaky_put(**kw: Any) -> Any:
        exc = next(failures, None)
        if exc is not None:
            raise exc
        return real_put(**kw)

    storage.client = cast("S3Client", Wrapped(storage.client, put_object=flaky_put))
    try:
        info = storage.put("k", b"data")
        assert storage.get("k") == (b"data", info.etag)
        assert len(sleeps) == 2
        assert 0 <= sleeps[0] <= 0.5 and 0 <= sleeps[1] <= 1.0
        assert storage.retry_stats.retries == 2
    finally:
        storage.close()


def test_botocore_retries_are_off(s3: S3Storage) -> None:
    retries = getattr(s3.client.meta.config, "retries", None)
    assert retries is not None
    assert retries.get("total_max_attempts") == 1


# -- streaming uploads: bounded concurrency, failures, completion edge cases ------------------


def test_upload_parts_in_flight_are_bounded(s3_endpoint: S3Endpoint, s3_bucket: str) -> None:
    storage = make_s3(s3_endpoint, s3_bucket, max_concurrency=2, max_parts_in_flight=2)
    real_upload_part = storage.client.upload_part
    lock = threading.Lock()
    in_flight = 0
    peak = 0
    release = threading.Event()

    def slow_upload_part(**kw: Any) -> Any:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        try:
            release.wait(timeout=10)
            return real_upload_part(**kw)
        finally:
            with lock:
                in_flight -= 1

    storage.client = cast("S3Client", Wrapped(storage.client, upload_part=slow_upload_part))
    try:
        data = os.urandom(5 * PART + 10)
        upload = storage.open_upload("bounded")
        written = threading.Event()
        progress: list[int] = []

        def writer() -> None:
            view = memoryview(data)
            for start in range(0, len(data), PART):
                upload.write(view[start : start + PART])
                progress.append(start)
            written.set()

        t = threading.Thread(target=writer)
        t.start()
        # two parts are in flight and held; the writer must block on the third
        deadline = time.monotonic() + 5
        while len(progress) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        assert not written.is_set()
        assert len(progress) == 2
        release.set()
        t.join(timeout=30)
        assert written.is_set()
        info = upload.complete()
        assert storage.get("bounded")[0] == data
        assert info.size == len(data)
        assert peak <= 2
    finally:
        release.set()
        storage.close()


def test_failed_part_fails_complete_and_abort_cleans_up(
    s3_endpoint: S3Endpoint, s3_bucket: str
) -> None:
    storage = make_s3(s3_endpoint, s3_bucket)
    real_upload_part = storage.client.upload_part

    def denied(**kw: Any) -> Any:
        if kw["PartNumber"] == 2:
            raise client_error("AccessDenied", 403, op="UploadPart")
        return real_upload_part(**kw)

    storage.client = cast("S3Client", Wrapped(storage.client, upload_part=denied))
    try:
        upload = storage.open_upload("fails")
        upload.write(os.urandom(2 * PART))
        with pytest.raises(PermanentStorageError, match="access denied"):
            upload.complete()
        with pytest.raises(StorageError):
            upload.write(b"x")
        upload.abort()
        assert storage.list_pending_uploads("") == []
        assert storage.head("fails") is None
    finally:
        storage.close()


@pytest.mark.parametrize("retry_answer", ["forward", "NoSuchUpload"])
def test_complete_whose_response_was_lost(
    s3_endpoint: S3Endpoint, s3_bucket: str, retry_answer: str
) -> None:
    """The first CompleteMultipartUpload lands but its response is lost; the retry gets either
    200 (moto, AWS) or NoSuchUpload (MinIO): both end as success with the right etag."""
    storage = make_s3(s3_endpoint, s3_bucket)
    real_complete = storage.client.complete_multipart_upload
    calls = 0

    def lossy_complete(**kw: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            real_complete(**kw)
            raise ConnectionClosedError(endpoint_url="http://s3")
        if retry_answer == "NoSuchUpload":
            raise client_error("NoSuchUpload", 404, op="CompleteMultipartUpload")
        return real_complete(**kw)

    storage.client = cast(
        "S3Client", Wrapped(storage.client, complete_multipart_upload=lossy_complete)
    )
    try:
        data = os.urandom(PART + 5)
        upload = storage.open_upload("lost-complete")
        upload.write(data)
        info = upload.complete()
        assert calls == 2
        got, etag = storage.get("lost-complete")
        assert got == data
        assert etag == info.etag
    finally:
        storage.close()


def test_multipart_etag_matches_s3(s3: S3Storage) -> None:
    upload = s3.open_upload("etag")
    upload.write(os.urandom(2 * PART + 1))
    info = upload.complete()
    assert info.etag.endswith('-3"')
    assert s3.head("etag") == info
    assert (
        multipart_etag(['"' + "00" * 16 + '"']) == '"' + "4ae71336e44bf9bf79d2752e234818a5" + '-1"'
    )


def test_multipart_copy_above_threshold(s3_endpoint: S3Endpoint, s3_bucket: str) -> None:
    storage = make_s3(s3_endpoint, s3_bucket, multipart_copy_threshold=PART, copy_part_size=PART)
    try:
        seen = _record_requests(storage)
        data = os.urandom(2 * PART + 1234)
        storage.put("big-src", data)
        info = storage.copy("big-src", "big-dst")
        assert info.size == len(data)
        assert storage.get("big-dst") == (data, info.etag)
        assert sum("partNumber=" in what for what, h in seen if "x-amz-copy-source" in h) == 3
        small = storage.put("small-src", b"tiny")
        assert storage.copy("small-src", "small-dst").etag == small.etag
    finally:
        storage.close()


def test_upload_more_parts_than_s3_allows(s3: S3Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    import s3sink.storage.s3 as s3mod

    monkeypatch.setattr(s3mod, "MAX_PARTS", 2)
    upload = s3.open_upload("too-many")
    upload.write(os.urandom(2 * PART))
    with pytest.raises(PermanentStorageError, match=r"s3\.part\.size"):
        upload.write(os.urandom(PART))
    upload.abort()
    assert s3.list_pending_uploads("") == []


# -- faults through the proxy -----------------------------------------------------------------


def _endpoint_and_bucket(kind: str, request: pytest.FixtureRequest) -> tuple[S3Endpoint, str]:
    prefix = "s3" if kind == "moto" else "minio"
    return request.getfixturevalue(f"{prefix}_endpoint"), request.getfixturevalue(
        f"{prefix}_bucket"
    )


ENDPOINTS = [
    pytest.param("moto", marks=pytest.mark.integration),
    pytest.param("minio", marks=[pytest.mark.integration, pytest.mark.minio]),
]


@pytest.mark.parametrize("kind", ENDPOINTS)
def test_dropped_conditional_write_response_is_a_conflict(
    kind: str, request: pytest.FixtureRequest
) -> None:
    endpoint, bucket = _endpoint_and_bucket(kind, request)
    with FaultProxy(endpoint.url) as proxy:
        storage = make_s3(endpoint, bucket, url=proxy.url)
        try:
            # If-None-Match: the create lands, the response is lost, the retry sees 412
            proxy.inject("drop", lambda r: r.is_conditional_put)
            with pytest.raises(ConflictError):
                storage.put("_s3sink/log/t/0/0000000001.json", b"attempt-A", if_none_match=True)
            assert proxy.counts["dropped_after_forward"] == 1
            assert storage.retry_stats.retries == 1
            # the caller resolves it by reading the slot: it holds our attempt
            data, etag = storage.get("_s3sink/log/t/0/0000000001.json")
            assert data == b"attempt-A"

            # If-Match: the swap lands, the response is lost, the retry sees 412
            proxy.inject("drop", lambda r: r.method == "PUT" and "if-match" in r.headers)
            with pytest.raises(ConflictError):
                storage.put("_s3sink/log/t/0/0000000001.json", b"attempt-B", if_match=etag)
            assert storage.get("_s3sink/log/t/0/0000000001.json")[0] == b"attempt-B"

            # a 503 answered by the proxy (never reached S3) is retried and simply succeeds
            proxy.inject("503", lambda r: r.method == "PUT", times=3)
            storage.put("_s3sink/log/t/0/0000000002.json", b"C", if_none_match=True)
            assert proxy.counts["injected_503"] == 3
            assert storage.get("_s3sink/log/t/0/0000000002.json")[0] == b"C"
        finally:
            storage.close()


@pytest.mark.parametrize("kind", ENDPOINTS)
def test_multipart_upload_through_faults(kind: str, request: pytest.FixtureRequest) -> None:
    endpoint, bucket = _endpoint_and_bucket(kind, request)
    with FaultProxy(endpoint.url) as proxy:
        storage = make_s3(endpoint, bucket, url=proxy.url)
        try:

            def is_part(r: ProxiedRequest) -> bool:
                return "partNumber=" in r.path

            proxy.inject("drop", is_part, times=2)
            proxy.inject("500", is_part)
            proxy.inject("drop", lambda r: r.method == "POST" and "uploadId=" in r.path)
            data = os.urandom(3 * PART + 77)
            upload = storage.open_upload("staging/e1/through-faults.bin")
            upload.write(data)
            info = upload.complete()
            assert proxy.pending_injections() == 0
            got, etag = storage.get("staging/e1/through-faults.bin")
            assert got == data
            assert etag == info.etag
        finally:
            storage.close()


@pytest.mark.parametrize("kind", ENDPOINTS)
def test_300_operations_through_5_percent_faults(kind: str, request: pytest.FixtureRequest) -> None:
    endpoint, bucket = _endpoint_and_bucket(kind, request)
    rng = random.Random(20240607)
    with FaultProxy(endpoint.url, rate=0.05, seed=99) as proxy:
        storage = make_s3(endpoint, bucket, url=proxy.url, max_concurrency=3)
        model: dict[str, bytes] = {}
        done: dict[str, int] = {}
        lost_create_responses = 0
        try:
            for i in range(300):
                op = rng.choices(
                    [
                        "put",
                        "create",
                        "create_existing",
                        "cas",
                        "upload",
                        "copy",
                        "list",
                        "get",
                        "delete",
                    ],
                    weights=[20, 20, 5, 8, 4, 12, 10, 12, 9],
                )[0]
                if op in ("copy", "get", "delete", "create_existing", "cas") and not model:
                    op = "put"
                if op == "put":
                    key = f"data/{rng.randrange(25):02d}"
                    body = rng.randbytes(rng.randrange(1, 4096))
                    storage.put(key, body)
                    model[key] = body
                elif op == "create":
                    key = f"_s3sink/log/{i:06d}.json"
                    body = f'{{"seq": {i}, "attempt": "{uuid.uuid4()}"}}'.encode()
                    try:
                        storage.put(key, body, if_none_match=True)
                    except ConflictError:
                        # only a lost response can conflict on a fresh key: the slot is ours
                        assert storage.get(key)[0] == body
                        lost_create_responses += 1
                    model[key] = body
                elif op == "create_existing":
                    key = rng.choice(sorted(model))
                    with pytest.raises(ConflictError):
                        storage.put(key, b"intruder", if_none_match=True)
                elif op == "cas":
                    key = rng.choice(sorted(model))
                    _, etag = storage.get(key)
                    body = rng.randbytes(64)
                    try:
                        storage.put(key, body, if_match=etag)
                    except ConflictError:
                        assert storage.get(key)[0] == body  # nobody else writes: lost response
                    model[key] = body
                elif op == "upload":
                    key = f"staging/{i:06d}.bin"
                    body = rng.randbytes(PART + rng.randrange(1, MiB))
                    upload = storage.open_upload(key)
                    upload.write(body)
                    assert upload.complete().size == len(body)
                    model[key] = body
                elif op == "copy":
                    src = rng.choice(sorted(model))
                    dst = f"final/{i:06d}"
                    assert storage.copy(src, dst).size == len(model[src])
                    model[dst] = model[src]
                elif op == "list":
                    prefix = rng.choice(["", "data/", "_s3sink/log/", "final/", "staging/"])
                    want = sorted(k for k in model if k.startswith(prefix))
                    assert [x.key for x in storage.list(prefix)] == want
                elif op == "get":
                    key = rng.choice(sorted(model))
                    assert storage.get(key)[0] == model[key]
                elif op == "delete":
                    key = rng.choice(sorted(model))
                    storage.delete(key)
                    del model[key]
                done[op] = done.get(op, 0) + 1

            listed = {x.key: x for x in storage.list("")}
            assert sorted(listed) == sorted(model)
            for key, body in model.items():
                data, etag = storage.get(key)
                assert data == body, key
                assert etag == listed[key].etag
            # lost CreateMultipartUpload responses leave uploads nobody completes: clean them
            proxy.set_rate(0.0)
            for pending in storage.list_pending_uploads(""):
                storage.abort_pending_upload(pending)
            assert storage.list_pending_uploads("") == []
        finally:
            storage.close()
        counts = proxy.counts
    assert sum(done.values()) == 300
    assert counts["injected_500"] > 0
    assert counts["injected_503"] > 0
    assert counts["dropped_after_forward"] > 0
    assert storage.retry_stats.retries == proxy.injected
    print(
        f"\n{kind}: 300 ops {dict(sorted(done.items()))}; proxy {dict(counts)}; "
        f"lost create responses resolved: {lost_create_responses}; "
        f"retries {storage.retry_stats.retries}"
    )


# -- client-side timeouts are retried like 5xx ------------------------------------------------


def test_read_timeouts_are_retried_and_counted_by_cause(
    s3_endpoint: S3Endpoint, s3_bucket: str
) -> None:
    """The endpoint takes a PutObject, an UploadPart and a CompleteMultipartUpload and does not
    answer within ``read_timeout_s``: each is retried on a new connection and the writes
    succeed; the retries are counted under their cause."""
    with TapProxy(s3_endpoint.url) as proxy:
        storage = make_s3(s3_endpoint, s3_bucket, url=proxy.url, read_timeout_s=0.5)
        try:
            for match in (
                lambda m, p, h: m == "PUT" and p.endswith("/single"),
                lambda m, p, h: m == "PUT" and "partNumber=2" in p,
                lambda m, p, h: m == "POST" and "uploadId=" in p,
            ):
                proxy.stall(match, times=1, seconds=10.0)
            info = storage.put("single", b"held once")
            data = os.urandom(2 * PART + 3)
            upload = storage.open_upload("multi")
            upload.write(data)
            multi = upload.complete()
            assert proxy.stall_count == 3
            assert storage.get("single") == (b"held once", info.etag)
            assert storage.get("multi") == (data, multi.etag)
            assert storage.retry_stats.causes() == {"ReadTimeoutError": 3}
            assert storage.retry_stats.exhausted == 0
            assert storage.list_pending_uploads("") == []
        finally:
            storage.close()


def test_connect_timeouts_are_retried_and_counted_by_cause(
    s3_endpoint: S3Endpoint, s3_bucket: str
) -> None:
    """The endpoint's accept queue is full (a server too busy to take connections): connects
    time out after ``connect_timeout_s`` and are retried until the server accepts again."""
    proxy = TapProxy(s3_endpoint.url, listen_backlog=0)
    host, port = proxy.address
    # the one connection a backlog of 0 admits fills the accept queue: later SYNs are dropped
    filler = socket.create_connection((host, port), timeout=2)
    storage = make_s3(s3_endpoint, s3_bucket, url=proxy.url, connect_timeout_s=0.3)
    timed_out = threading.Event()

    def accept_after_a_timeout() -> None:
        deadline = time.monotonic() + 30
        while "ConnectTimeoutError" not in storage.retry_stats.causes():
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        else:
            timed_out.set()
        filler.close()
        proxy.start()

    opener = threading.Thread(target=accept_after_a_timeout, daemon=True)
    opener.start()
    try:
        info = storage.put("after-connect-timeouts", b"x")
        opener.join(10)
        assert timed_out.is_set()
        assert storage.get("after-connect-timeouts") == (b"x", info.etag)
        causes = storage.retry_stats.causes()
        assert set(causes) == {"ConnectTimeoutError"}, causes
        assert storage.retry_stats.retries == causes["ConnectTimeoutError"] >= 1
        assert storage.retry_stats.exhausted == 0
    finally:
        storage.close()
        opener.join(10)
        proxy.close()
