"""The S3 backend: boto3 behind the :class:`~s3sink.storage.base.Storage` protocol.

This module is the one boundary where S3 and botocore errors become s3sink errors:

================================================================  =================================
S3 / botocore                                                     s3sink
================================================================  =================================
412 ``PreconditionFailed``, 409 ``ConditionalRequestConflict``    :class:`ConflictError`
404 ``NoSuchKey`` / ``NotFound`` / ``NoSuchUpload``               :class:`NotFoundError`
``NoSuchBucket``, ``AccessDenied`` and other 403s, wrong region,  :class:`PermanentStorageError`
no credentials, other 4xx                                         (message says what to check)
5xx, ``SlowDown``, throttling, ``RequestTimeout``, timeouts,      retried, then
connection errors and resets, truncated bodies                    :class:`TransientStorageError`
================================================================  =================================

**Retries live here, not in botocore.** The client is built with botocore's retries off
(``total_max_attempts=1``) and every call goes through
:func:`~s3sink.storage.retry.call_with_retry` (capped exponential backoff, full jitter, bounded
attempts). One policy, one place that counts and logs retries, no multiplied attempt budgets, and
-- the point that matters for the commit protocol -- a conditional write's retry is visible to this
code, so its meaning is documented rather than hidden:

    *A retried conditional write may report a conflict for a write that succeeded.* If the first
    ``PutObject(If-None-Match: *)`` reached S3 and created the object but the response was lost
    (connection reset, timeout), the retry gets 412 and this backend raises
    :class:`ConflictError`. The same holds for ``If-Match`` (the first attempt changed the etag).
    The caller resolves it by reading the object: the commit protocol reads the marker slot and
    checks its own attempt id (its commit landed) against someone else's (it was fenced).

Other retried operations are idempotent: a plain put or an upload part writes the same bytes
again, ``CopyObject`` copies the same source (pinned by ``CopySourceIfMatch``), a delete of a
missing key succeeds, and a ``CompleteMultipartUpload`` whose first response was lost is checked
against the object now under the key (S3 answers a repeated complete with 200 or
``NoSuchUpload``; in the latter case the object's etag is compared with the multipart etag
computed from the parts). A ``CreateMultipartUpload`` whose response was lost leaves an upload
nobody will complete: it shows in ``list_pending_uploads`` and the takeover aborts it.

Streaming uploads buffer up to ``part_size`` bytes per upload and hand full parts to a thread pool
shared by the storage (``max_concurrency`` threads). At most ``max_parts_in_flight`` parts are
queued or uploading at once (a semaphore): a writer that would exceed it blocks in ``write``, so
memory stays at about ``(max_parts_in_flight + open uploads) * part_size``.

Under a memory budget (:meth:`S3Storage.set_memory_limit`, from ``buffer.memory.bytes``) part
buffers share ``limit`` bytes: half of it for parts in flight (a writer blocks while they would
exceed it; one part always goes), half for the buffers of the open uploads, so a part is sent
at ``limit / 2 / open uploads`` bytes (never below S3's 5 MiB minimum, never above
``part_size``, and growing with the object so that 10,000 parts are never reached).
:meth:`S3Storage.memory_bytes` counts the parts in flight for the budget.

Server-side encryption (``ServerSideEncryption``/``SSEKMSKeyId``) and the canned ACL are sent on
every ``PutObject``, ``CreateMultipartUpload`` and ``CopyObject``. Copies above
``multipart_copy_threshold`` (5 GiB, S3's limit for ``CopyObject``) use ``UploadPartCopy``.
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

import boto3
import botocore.exceptions as bexc
from botocore.config import Config

from s3sink.errors import (
    ConfigError,
    ConflictError,
    NotFoundError,
    PermanentStorageError,
    StorageError,
    TransientStorageError,
)
from s3sink.memory import resident_bytes
from s3sink.storage.base import ObjectInfo, PendingUpload
from s3sink.storage.keys import check_key, same_etag
from s3sink.storage.retry import RetryPolicy, RetryStats, call_with_retry

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

__all__ = [
    "CANNED_ACLS",
    "MAX_PARTS",
    "MIN_PART_SIZE",
    "SSE_ALGORITHMS",
    "S3Credentials",
    "S3Storage",
    "S3Upload",
    "map_s3_error",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

MiB = 1024 * 1024
GiB = 1024 * MiB
#: S3's minimum size of every part but the last.
MIN_PART_SIZE = 5 * MiB
#: S3's maximum part size and maximum ``CopyObject`` source size.
MAX_PART_SIZE = 5 * GiB
#: S3's maximum number of parts in one multipart upload.
MAX_PARTS = 10_000
#: The Confluent S3 sink's default ``s3.part.size``.
DEFAULT_PART_SIZE = 25 * MiB

SSE_ALGORITHMS = ("AES256", "aws:kms", "aws:kms:dsse")
CANNED_ACLS = (
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "aws-exec-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
    "log-delivery-write",
)

_CONFLICT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "NoSuchUpload", "404"})
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "ProvisionedThroughputExceededException",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "OperationAborted",  # 409: "a conflicting conditional operation is in progress; retry"
        "XMinioServerNotInitialized",
        "XMinioStorageFull",
    }
)
_ACCESS_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AccountProblem",
        "InvalidObjectState",
    }
)
_REGION_CODES = frozenset(
    {"PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"}
)
_TRANSIENT_BOTOCORE = (
    bexc.ConnectionError,  # EndpointConnectionError, ConnectTimeoutError, SSLError, proxy errors
    bexc.HTTPClientError,  # ConnectionClosedError, ReadTimeoutError, ResponseStreamingError
    bexc.IncompleteReadError,
    bexc.FlexibleChecksumError,
)


@dataclass(frozen=True, slots=True)
class S3Credentials:
    """Static credentials. Leave them out to use the default AWS chain (environment, profile,
    web identity, container or instance role). The secret never appears in ``repr``."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


def _error_fields(exc: bexc.ClientError) -> tuple[str, int, str]:
    response: Any = exc.response
    err = response.get("Error") or {}
    code = str(err.get("Code") or "")
    message = str(err.get("Message") or "")
    status = int((response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
    return code, status, message


def map_s3_error(exc: BaseException, *, op: str, bucket: str, key: str) -> StorageError | None:
    """The s3sink error for a boto3/botocore exception, or ``None`` if it is not one (a bug).

    ``op`` is the S3 operation (``PutObject``), ``key`` the full object key or prefix. Messages
    name the bucket and what to check, never a credential.
    """
    where = f"s3://{bucket}/{key}"
    if isinstance(exc, bexc.ClientError):
        code, status, message = _error_fields(exc)
        detail = f"{code or status}: {message}" if message else (code or str(status))
        if code in _CONFLICT_CODES or status == 412 or (status == 409 and not code):
            return ConflictError(f"{op} {where}: precondition failed ({detail})")
        if code == "NoSuchBucket":
            return PermanentStorageError(
                f"{op} {where}: bucket {bucket!r} does not exist at this endpoint. Check the "
                "bucket name (storage.url / s3.bucket.name), the region (s3.region) and the "
                "endpoint (store.url)."
            )
        if code in _NOT_FOUND_CODES or status == 404:
            return NotFoundError(f"{op} {where}: not found ({detail})")
        if code in _TRANSIENT_CODES or status >= 500 or status == 429:
            return TransientStorageError(f"{op} {where}: {detail} (HTTP {status})")
        if code == "RequestTimeTooSkewed":
            return PermanentStorageError(
                f"{op} {where}: S3 refused the request because this machine's clock is off by "
                "more than 15 minutes; synchronise the clock (NTP)."
            )
        if code in _ACCESS_CODES or status == 403:
            return PermanentStorageError(
                f"{op} {where}: access denied ({detail}). Check the credentials in use (the "
                "default AWS chain: environment, profile, role) and that their policy allows "
                f"{_s3_action(op)} on arn:aws:s3:::{bucket}/* (with SSE-KMS also "
                "kms:GenerateDataKey and kms:Decrypt on the key)."
            )
        if code in _REGION_CODES or status == 301:
            return PermanentStorageError(
                f"{op} {where}: bucket {bucket!r} is not in the configured region ({detail}). "
                "Set s3.region to the bucket's region."
            )
        if code.startswith("KMS."):
            return PermanentStorageError(
                f"{op} {where}: KMS refused the request ({detail}). Check s3.sse.kms.key.id "
                "and that the key is enabled and usable by these credentials."
            )
        return PermanentStorageError(f"{op} {where}: S3 rejected the request ({detail})")
    if isinstance(exc, bexc.NoCredentialsError | bexc.PartialCredentialsError):
        return PermanentStorageError(
            f"{op} {where}: no usable AWS credentials found. Set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run with an IAM role."
        )
    if isinstance(exc, _TRANSIENT_BOTOCORE):
        return TransientStorageError(f"{op} {where}: {type(exc).__name__}: {exc}")
    if isinstance(exc, bexc.NoRegionError):
        return PermanentStorageError(f"{op} {where}: no region configured; set s3.region")
    if isinstance(exc, ConnectionError | TimeoutError):
        return TransientStorageError(f"{op} {where}: {type(exc).__name__}: {exc}")
    return None


def _s3_action(op: str) -> str:
    return {
        "HeadObject": "s3:GetObject",
        "CreateMultipartUpload": "s3:PutObject",
        "UploadPart": "s3:PutObject",
        "CompleteMultipartUpload": "s3:PutObject",
        "UploadPartCopy": "s3:PutObject and s3:GetObject",
        "CopyObject": "s3:PutObject and s3:GetObject",
        "ListObjectsV2": "s3:ListBucket",
        "ListMultipartUploads": "s3:ListBucketMultipartUploads",
        "AbortMultipartUpload": "s3:AbortMultipartUpload",
    }.get(op, f"s3:{op}")


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def multipart_etag(part_etags: list[str]) -> str:
    """The etag S3 gives an unencrypted (or SSE-S3) multipart object made of these parts."""
    digest = hashlib.md5(usedforsecurity=False)
    for etag in part_etags:
        digest.update(bytes.fromhex(etag.strip('"')))
    return f'"{digest.hexdigest()}-{len(part_etags)}"'


class S3Storage:
    """Objects under ``s3://bucket/prefix``. See the module docstring for errors and retries."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        path_style: bool = False,
        part_size: int = DEFAULT_PART_SIZE,
        sse: str | None = None,
        kms_key_id: str | None = None,
        acl: str | None = None,
        credentials: S3Credentials | None = None,
        max_concurrency: int = 4,
        max_parts_in_flight: int | None = None,
        max_connections: int | None = None,
        retry: RetryPolicy | None = None,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 60.0,
        multipart_copy_threshold: int = MAX_PART_SIZE,
        copy_part_size: int = 512 * MiB,
        list_page_size: int = 1000,
        upload_listing: Literal["auto", "prefix", "scan"] = "auto",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        client: S3Client | None = None,
    ) -> None:
        if not bucket:
            raise ConfigError("the S3 bucket name is empty", key="s3.bucket.name")
        if part_size < MIN_PART_SIZE or part_size > MAX_PART_SIZE:
            raise ConfigError(
                f"s3.part.size={part_size} is outside S3's limits: use {MIN_PART_SIZE} "
                f"(5 MiB) to {MAX_PART_SIZE} (5 GiB) bytes",
                key="s3.part.size",
            )
        if kms_key_id and not sse:
            sse = "aws:kms"
        if sse is not None and sse not in SSE_ALGORITHMS:
            raise ConfigError(
                f"s3.ssea.name={sse!r} is not a server-side encryption algorithm S3 knows; use "
                f"one of {', '.join(SSE_ALGORITHMS)} (or leave it empty)",
                key="s3.ssea.name",
            )
        if kms_key_id and sse not in ("aws:kms", "aws:kms:dsse"):
            raise ConfigError(
                "s3.sse.kms.key.id is set but s3.ssea.name is not aws:kms; set "
                "s3.ssea.name=aws:kms or remove the key id",
                key="s3.sse.kms.key.id",
            )
        if acl is not None and acl not in CANNED_ACLS:
            raise ConfigError(
                f"s3.acl.canned={acl!r} is not a canned ACL; use one of {', '.join(CANNED_ACLS)}",
                key="s3.acl.canned",
            )
        if max_concurrency < 1:
            raise ConfigError("the storage concurrency must be >= 1")
        if not MIN_PART_SIZE <= copy_part_size <= MAX_PART_SIZE:
            raise ConfigError("copy_part_size must be between 5 MiB and 5 GiB")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._root = f"{self.prefix}/" if self.prefix else ""
        self.endpoint_url = endpoint_url
        self.region = region
        self.part_size = part_size
        self.max_concurrency = max_concurrency
        self.max_parts_in_flight = max_parts_in_flight or max_concurrency
        self.multipart_copy_threshold = multipart_copy_threshold
        self.copy_part_size = copy_part_size
        self.retry_policy = retry or RetryPolicy()
        self.retry_stats = RetryStats()
        self._list_page_size = list_page_size
        self._upload_listing = upload_listing
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._write_args: dict[str, str] = {}
        if sse:
            self._write_args["ServerSideEncryption"] = sse
        if kms_key_id:
            self._write_args["SSEKMSKeyId"] = kms_key_id
        if acl:
            self._write_args["ACL"] = acl
        #: Resident memory the boto3 client took when created here (its service model and
        #: session): a fixed cost, not buffered data (see ``s3sink.memory.ResidentGauge``).
        self.client_resident_bytes = 0
        if client is None:
            before = resident_bytes()
            config = Config(
                region_name=region,
                signature_version="s3v4",
                # Retries are ours (see module docstring): botocore tries each request once.
                retries={"total_max_attempts": 1, "mode": "standard"},
                # the part uploads plus the callers' own threads (takeover runs many at once)
                max_pool_connections=max_connections or max(32, 2 * max_concurrency + 8),
                connect_timeout=connect_timeout_s,
                read_timeout=read_timeout_s,
                tcp_keepalive=True,
                s3={"addressing_style": "path" if path_style else "auto"},
            )
            session = boto3.session.Session(
                aws_access_key_id=credentials.access_key_id if credentials else None,
                aws_secret_access_key=credentials.secret_access_key if credentials else None,
                aws_session_token=credentials.session_token if credentials else None,
                region_name=region,
            )
            client = session.client("s3", endpoint_url=endpoint_url, config=config)
            self.client_resident_bytes = max(0, resident_bytes() - before) if before else 0
        self.client: S3Client = client
        self._pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="s3sink-s3")
        self._slots = threading.BoundedSemaphore(self.max_parts_in_flight)
        self._closed = False
        #: Bytes of parts queued or uploading, their cap (None: only the part count bounds
        #: them), and the uploads not yet completed or aborted (their buffers share the rest).
        self._inflight_cond = threading.Condition()
        self._inflight = 0
        self._memory_limit: int | None = None
        self._open_uploads = 0

    # -- memory -------------------------------------------------------------------------------

    def set_memory_limit(self, limit: int | None) -> None:
        """Bytes the part buffers of all uploads may hold (in flight and being filled); None:
        ``part_size`` per open upload plus ``max_parts_in_flight`` parts."""
        with self._inflight_cond:
            self._memory_limit = None if limit is None else max(0, int(limit))
            self._inflight_cond.notify_all()

    def memory_bytes(self) -> int:
        """Bytes of parts handed to the pool and not yet uploaded (open uploads' buffers are
        counted by :meth:`S3Upload.buffered_bytes`)."""
        return self._inflight

    def current_part_size(self, written: int = 0) -> int:
        """Bytes at which an upload that has ``written`` bytes so far sends its next part."""
        limit = self._memory_limit
        if limit is None:
            return self.part_size
        share = limit // 2 // max(1, self._open_uploads)
        # parts grow with the object: n parts of at least written/1000 never reach MAX_PARTS
        return max(MIN_PART_SIZE, min(self.part_size, max(share, written // 1000)))

    def _reserve(self, size: int) -> None:
        with self._inflight_cond:
            while True:
                limit = self._memory_limit
                cap = None if limit is None else limit // 2
                if cap is None or self._inflight == 0 or self._inflight + size <= cap:
                    break
                self._inflight_cond.wait()
            self._inflight += size

    def _release(self, size: int) -> None:
        with self._inflight_cond:
            self._inflight -= size
            self._inflight_cond.notify_all()

    def _upload_opened(self, delta: int) -> None:
        with self._inflight_cond:
            self._open_uploads += delta

    # -- plumbing -------------------------------------------------------------------------------

    def describe(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}"
        extras = []
        if self.endpoint_url:
            extras.append(f"endpoint {_redact_url(self.endpoint_url)}")
        if self.region:
            extras.append(f"region {self.region}")
        if "ServerSideEncryption" in self._write_args:
            extras.append(f"sse {self._write_args['ServerSideEncryption']}")
        return f"{where} ({', '.join(extras)})" if extras else where

    def _key(self, key: str) -> str:
        return self._root + check_key(key)

    def _call(self, op: str, key: str, fn: Callable[[], T]) -> T:
        """One S3 operation with errors mapped and transient failures retried."""

        def attempt() -> T:
            try:
                return fn()
            except Exception as exc:
                mapped = map_s3_error(exc, op=op, bucket=self.bucket, key=key)
                if mapped is None:
                    raise
                raise mapped from exc

        return call_with_retry(
            attempt,
            policy=self.retry_policy,
            what=f"{op} s3://{self.bucket}/{key}",
            sleep=self._sleep,
            clock=self._clock,
            rng=self._rng,
            stats=self.retry_stats,
        )

    # -- the Storage protocol -------------------------------------------------------------------

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
        full = self._key(key)
        body = bytes(data)
        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": full,
            "Body": body,
            "ContentType": content_type,
            **self._write_args,
        }
        if if_none_match:
            args["IfNoneMatch"] = "*"
        if if_match is not None:
            args["IfMatch"] = if_match

        def attempt() -> str:
            return self.client.put_object(**args)["ETag"]

        try:
            etag = self._call("PutObject", full, attempt)
        except NotFoundError as exc:
            if if_match is None:
                raise
            # If-Match on a missing key: S3 answers 404; the contract says conflict.
            raise ConflictError(f"{exc} (If-Match on a missing key)") from exc
        return ObjectInfo(key, len(body), etag)

    def get(self, key: str) -> tuple[bytes, str]:
        full = self._key(key)

        def attempt() -> tuple[bytes, str]:
            response = self.client.get_object(Bucket=self.bucket, Key=full)
            body = response["Body"]
            try:
                data = body.read()
            finally:
                body.close()
            length = response.get("ContentLength")
            if length is not None and length != len(data):
                raise TransientStorageError(
                    f"GetObject s3://{self.bucket}/{full}: body truncated "
                    f"({len(data)} of {length} bytes)"
                )
            return data, response["ETag"]

        return self._call("GetObject", full, attempt)

    def _head(self, full: str) -> ObjectInfo | None:
        def attempt() -> ObjectInfo | None:
            try:
                response = self.client.head_object(Bucket=self.bucket, Key=full)
            except bexc.ClientError as exc:
                code, status, _ = _error_fields(exc)
                if status == 404 and code != "NoSuchBucket":
                    return None
                raise
            return ObjectInfo(full, response["ContentLength"], response["ETag"])

        return self._call("HeadObject", full, attempt)

    def head(self, key: str) -> ObjectInfo | None:
        info = self._head(self._key(key))
        return None if info is None else ObjectInfo(key, info.size, info.etag)

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[ObjectInfo]:
        full_prefix = self._root + prefix
        root_len = len(self._root)
        token: str | None = None
        while True:
            args: dict[str, Any] = {
                "Bucket": self.bucket,
                "Prefix": full_prefix,
                "MaxKeys": self._list_page_size,
            }
            if token is not None:
                args["ContinuationToken"] = token
            elif start_after is not None:
                args["StartAfter"] = self._root + start_after
            page: Any = self._call("ListObjectsV2", full_prefix, partial(self._list_page, args))
            for obj in page.get("Contents", ()):
                yield ObjectInfo(obj["Key"][root_len:], obj["Size"], obj["ETag"])
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    def copy(self, src: str, dst: str) -> ObjectInfo:
        full_src = self._key(src)
        full_dst = self._key(dst)
        source = self._head(full_src)
        if source is None:
            raise NotFoundError(f"CopyObject s3://{self.bucket}/{full_src}: copy source not found")
        if source.size > self.multipart_copy_threshold:
            etag = self._multipart_copy(full_src, full_dst, source)
            return ObjectInfo(dst, source.size, etag)

        def attempt() -> str:
            response = self.client.copy_object(
                Bucket=self.bucket,
                Key=full_dst,
                CopySource={"Bucket": self.bucket, "Key": full_src},
                CopySourceIfMatch=source.etag,
                MetadataDirective="COPY",
                **self._write_args,  # type: ignore[arg-type]
            )
            return response["CopyObjectResult"]["ETag"]

        return ObjectInfo(dst, source.size, self._call("CopyObject", full_dst, attempt))

    def _multipart_copy(self, full_src: str, full_dst: str, source: ObjectInfo) -> str:
        upload_id = self._create_multipart(full_dst)
        ranges = [
            (start, min(start + self.copy_part_size, source.size) - 1)
            for start in range(0, source.size, self.copy_part_size)
        ]

        def copy_part(number: int, first: int, last: int) -> CompletedPartTypeDef:
            def attempt() -> str:
                response = self.client.upload_part_copy(
                    Bucket=self.bucket,
                    Key=full_dst,
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource={"Bucket": self.bucket, "Key": full_src},
                    CopySourceIfMatch=source.etag,
                    CopySourceRange=f"bytes={first}-{last}",
                )
                return response["CopyPartResult"]["ETag"]

            return {"PartNumber": number, "ETag": self._call("UploadPartCopy", full_dst, attempt)}

        try:
            futures = [
                self._pool.submit(copy_part, n, first, last)
                for n, (first, last) in enumerate(ranges, start=1)
            ]
            parts = [f.result() for f in futures]
            return self._complete_multipart(full_dst, upload_id, parts, expected_etag=None)
        except BaseException:
            self._abort_multipart(full_dst, upload_id, quiet=True)
            raise

    def delete(self, key: str) -> None:
        full = self._key(key)
        try:
            self._call(
                "DeleteObject",
                full,
                lambda: self.client.delete_object(Bucket=self.bucket, Key=full),
            )
        except NotFoundError:
            return

    def open_upload(self, key: str) -> S3Upload:
        if self._closed:
            raise StorageError(f"{self.describe()}: storage is closed")
        return S3Upload(self, key, self._key(key))

    def list_pending_uploads(self, prefix: str) -> builtins.list[PendingUpload]:
        """Multipart uploads under ``prefix`` that were neither completed nor aborted.

        MinIO's ``ListMultipartUploads`` only matches a ``Prefix`` that is a whole object key
        (any other prefix lists nothing), so when the endpoint says it is MinIO -- or
        ``upload_listing="scan"`` -- the bucket's uploads are listed without a prefix and
        filtered here.
        """
        full_prefix = self._root + prefix
        if self._upload_listing == "scan" and full_prefix:
            found = self._list_uploads(full_prefix, server_prefix="")
        else:
            found, server = self._list_uploads_with_server(full_prefix)
            if (
                self._upload_listing == "auto"
                and full_prefix
                and server.lower().startswith("minio")
            ):
                self._upload_listing = "scan"
                found = self._list_uploads(full_prefix, server_prefix="")
        found.sort(key=lambda p: (p.key, p.initiated_ms, p.upload_id))
        return found

    def _list_uploads_with_server(
        self, full_prefix: str
    ) -> tuple[builtins.list[PendingUpload], str]:
        server: builtins.list[str] = []
        found = self._list_uploads(full_prefix, server_prefix=full_prefix, server=server)
        return found, server[0] if server else ""

    def _list_uploads(
        self,
        full_prefix: str,
        *,
        server_prefix: str,
        server: builtins.list[str] | None = None,
    ) -> builtins.list[PendingUpload]:
        root_len = len(self._root)
        found: builtins.list[PendingUpload] = []
        key_marker: str | None = None
        id_marker: str | None = None
        while True:
            args: dict[str, Any] = {"Bucket": self.bucket}
            if server_prefix:
                args["Prefix"] = server_prefix
            if key_marker is not None:
                args["KeyMarker"] = key_marker
                if id_marker is not None:
                    args["UploadIdMarker"] = id_marker
            page: Any = self._call(
                "ListMultipartUploads", full_prefix, partial(self._list_uploads_page, args)
            )
            if server is not None and not server:
                headers = (page.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
                server.append(str(headers.get("server", "")))
            for upload in page.get("Uploads", ()):
                if not upload["Key"].startswith(full_prefix):
                    continue
                initiated = upload.get("Initiated")
                found.append(
                    PendingUpload(
                        upload["Key"][root_len:],
                        upload["UploadId"],
                        int(initiated.timestamp() * 1000) if initiated is not None else 0,
                    )
                )
            if not page.get("IsTruncated"):
                break
            key_marker = page.get("NextKeyMarker")
            id_marker = page.get("NextUploadIdMarker")
            if not key_marker:
                break
        return found

    def abort_pending_upload(self, pending: PendingUpload) -> None:
        self._abort_multipart(self._key(pending.key), pending.upload_id, quiet=False)

    def close(self) -> None:
        self._closed = True
        self._pool.shutdown(wait=True)

    def _list_page(self, args: dict[str, Any]) -> Any:
        return self.client.list_objects_v2(**args)

    def _list_uploads_page(self, args: dict[str, Any]) -> Any:
        return self.client.list_multipart_uploads(**args)

    # -- multipart plumbing (used by S3Upload) ---------------------------------------------------

    def _create_multipart(self, full: str) -> str:
        def attempt() -> str:
            return self.client.create_multipart_upload(
                Bucket=self.bucket,
                Key=full,
                ContentType="application/octet-stream",
                **self._write_args,  # type: ignore[arg-type]
            )["UploadId"]

        return self._call("CreateMultipartUpload", full, attempt)

    def _upload_part(self, full: str, upload_id: str, number: int, data: bytes) -> str:
        def attempt() -> str:
            return self.client.upload_part(
                Bucket=self.bucket, Key=full, UploadId=upload_id, PartNumber=number, Body=data
            )["ETag"]

        return self._call("UploadPart", full, attempt)

    def _complete_multipart(
        self,
        full: str,
        upload_id: str,
        parts: builtins.list[CompletedPartTypeDef],
        *,
        expected_etag: str | None,
    ) -> str:
        tries = 0

        def attempt() -> str:
            nonlocal tries
            tries += 1
            try:
                return self.client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=full,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )["ETag"]
            except bexc.ClientError as exc:
                code, _, _ = _error_fields(exc)
                if code != "NoSuchUpload" or tries == 1:
                    raise
                # An earlier attempt may have completed the upload and lost the response.
                now = self.client.head_object(Bucket=self.bucket, Key=full)
                if expected_etag is not None and same_etag(now["ETag"], expected_etag):
                    return now["ETag"]
                raise

        return self._call("CompleteMultipartUpload", full, attempt)

    def _abort_multipart(self, full: str, upload_id: str, *, quiet: bool) -> None:
        def attempt() -> None:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)

        try:
            self._call("AbortMultipartUpload", full, attempt)
        except NotFoundError:
            return
        except StorageError:
            if not quiet:
                raise
            log.warning(
                "could not abort multipart upload %s of s3://%s/%s; the takeover clean-up "
                "will abort it later",
                upload_id,
                self.bucket,
                full,
                exc_info=True,
            )


class S3Upload:
    """A streaming upload: full parts go to the storage's pool while the caller keeps writing.

    Objects smaller than one part are sent with a single ``PutObject`` at :meth:`complete`.
    After a failed :meth:`complete`, call :meth:`abort`. Usable as a context manager (leaving it
    without completing, or with an exception, aborts).
    """

    def __init__(self, storage: S3Storage, key: str, full_key: str) -> None:
        self.key = key
        self.full_key = full_key
        self.upload_id: str | None = None
        self._storage = storage
        self._buf = bytearray()
        self._size = 0
        self._next_part = 1
        self._futures: list[Future[CompletedPartTypeDef]] = []
        self._error: BaseException | None = None
        self._state: Literal["open", "completed", "aborted", "failed"] = "open"
        storage._upload_opened(1)

    def _set_state(self, state: Literal["completed", "aborted", "failed"]) -> None:
        if self._state == "open":
            self._storage._upload_opened(-1)
        self._state = state

    def buffered_bytes(self) -> int:
        """Bytes held in memory and not yet sent as a part (for the memory budget)."""
        return len(self._buf)

    def write(self, data: bytes | memoryview) -> None:
        if self._state != "open":
            raise StorageError(f"upload of {self.key} is {self._state}; cannot write")
        self._raise_part_error()
        view = memoryview(data).cast("B")
        self._size += view.nbytes
        storage = self._storage
        while view:
            part_size = storage.current_part_size(self._size)
            room = part_size - len(self._buf)
            if room > 0:
                self._buf += view[:room]
                view = view[room:]
            if len(self._buf) >= part_size:
                chunk = bytes(self._buf)
                self._buf = bytearray()
                self._submit(chunk)

    def _raise_part_error(self) -> None:
        if self._error is None:
            for future in self._futures:
                if future.done() and not future.cancelled() and future.exception() is not None:
                    self._error = future.exception()
                    break
        if self._error is not None:
            self._set_state("failed")
            raise self._error

    def _submit(self, chunk: bytes) -> None:
        storage = self._storage
        if self.upload_id is None:
            self.upload_id = storage._create_multipart(self.full_key)
        number = self._next_part
        if number > MAX_PARTS:
            self._set_state("failed")
            raise PermanentStorageError(
                f"upload of s3://{storage.bucket}/{self.full_key}: more than {MAX_PARTS} parts "
                f"of {storage.part_size} bytes; raise s3.part.size or lower file.max.bytes"
            )
        self._next_part += 1
        size = len(chunk)
        storage._reserve(size)  # back-pressure: blocks while the parts in flight fill the limit
        storage._slots.acquire()  # and while max_parts_in_flight are busy
        try:
            future = storage._pool.submit(self._send_part, self.upload_id, number, chunk)
        except BaseException:
            storage._slots.release()
            storage._release(size)
            raise

        def done(_f: Future[CompletedPartTypeDef]) -> None:
            storage._slots.release()
            storage._release(size)

        future.add_done_callback(done)
        self._futures.append(future)

    def _send_part(self, upload_id: str, number: int, chunk: bytes) -> CompletedPartTypeDef:
        etag = self._storage._upload_part(self.full_key, upload_id, number, chunk)
        return {"PartNumber": number, "ETag": etag}

    def complete(self) -> ObjectInfo:
        if self._state != "open":
            raise StorageError(f"upload of {self.key} is {self._state}; cannot complete")
        storage = self._storage
        if self.upload_id is None:
            body = bytes(self._buf)
            self._buf = bytearray()
            try:
                info = storage.put(self.key, body)
            except BaseException:
                self._set_state("failed")
                raise
            self._set_state("completed")
            return info
        try:
            if self._buf:
                chunk = bytes(self._buf)
                self._buf = bytearray()
                self._submit(chunk)
            wait(self._futures)
            self._raise_part_error()
            parts = sorted((f.result() for f in self._futures), key=lambda p: p["PartNumber"])
            expected = multipart_etag([p["ETag"] for p in parts])
            etag = storage._complete_multipart(
                self.full_key, self.upload_id, parts, expected_etag=expected
            )
        except BaseException:
            self._set_state("failed")
            raise
        self._set_state("completed")
        self._futures = []
        return ObjectInfo(self.key, self._size, etag)

    def abort(self) -> None:
        if self._state in ("completed", "aborted"):
            return
        self._set_state("aborted")
        self._buf = bytearray()
        for future in self._futures:
            future.cancel()
        wait(self._futures)  # parts still uploading would otherwise outlive the abort
        self._futures = []
        if self.upload_id is not None:
            self._storage._abort_multipart(self.full_key, self.upload_id, quiet=False)

    def __enter__(self) -> S3Upload:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None and self._state == "open":
            self.abort()
            return
        if exc_type is not None and self._state != "completed":
            try:
                self.abort()
            except StorageError:
                log.warning("abort of upload %s failed", self.full_key, exc_info=True)
