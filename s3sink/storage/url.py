"""``storage.url`` → a :class:`~s3sink.storage.base.Storage`.

Accepted forms:

* ``s3://bucket`` or ``s3://bucket/some/prefix`` (``s3a://`` is accepted as a synonym, for users
  coming from Spark/Hadoop);
* ``file:///absolute/path`` (or ``file://localhost/absolute/path``);
* ``memory://`` (a fresh in-process store) or ``memory://name`` (one store per name per process,
  shared by everything that opens the same name -- for tests).

This module takes plain arguments and knows nothing about the configuration module; the config
layer maps its keys (``s3.region``, ``store.url``, ``s3.part.size``, ...) onto these arguments.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

from s3sink.errors import ConfigError, StorageError
from s3sink.storage.base import Storage
from s3sink.storage.keys import check_key
from s3sink.storage.retry import RetryPolicy

__all__ = ["StorageURL", "open_storage", "parse_storage_url"]

_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]$")
_FORMS = "s3://bucket/prefix, file:///absolute/path or memory://name"


@dataclass(frozen=True, slots=True)
class StorageURL:
    """A parsed ``storage.url``. ``location`` is the bucket (s3), the path (file) or the
    name (memory); ``prefix`` is the key prefix inside an S3 bucket ("" if none)."""

    scheme: Literal["s3", "file", "memory"]
    location: str
    prefix: str = ""


def parse_storage_url(url: str, *, key: str = "storage.url") -> StorageURL:
    """Parse and check ``url``; a :class:`ConfigError` naming ``key`` says what is wrong."""
    text = url.strip()
    if not text:
        raise ConfigError(f"{key} is empty; use {_FORMS}", key=key)
    if "://" not in text:
        hint = f" (did you mean file://{text}?)" if text.startswith("/") else ""
        raise ConfigError(f"{key}={text!r} has no scheme{hint}; use {_FORMS}", key=key)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if "@" in parts.netloc:
        raise ConfigError(
            f"{key} must not contain credentials (user:password@); use the AWS credential "
            "chain (environment, profile, role) instead",
            key=key,
        )
    if parts.query or parts.fragment:
        raise ConfigError(f"{key}: '?...' and '#...' are not allowed in a storage URL", key=key)

    if scheme in ("s3", "s3a"):
        bucket = parts.netloc
        if not bucket:
            raise ConfigError(f"{key}={text!r} names no bucket; use s3://bucket/prefix", key=key)
        if not _BUCKET.match(bucket):
            raise ConfigError(
                f"{key}: {bucket!r} is not a valid S3 bucket name (3-63 characters: lowercase "
                "letters, digits, '.' and '-')",
                key=key,
            )
        prefix = unquote(parts.path).strip("/")
        if prefix:
            try:
                check_key(prefix)
            except StorageError as exc:
                raise ConfigError(f"{key}: bad prefix {prefix!r}: {exc}", key=key) from exc
        return StorageURL("s3", bucket, prefix)

    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(
                f"{key}={text!r}: file URLs name a local path, e.g. file:///data/archive "
                "(three slashes); remote hosts are not supported",
                key=key,
            )
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise ConfigError(f"{key}={text!r}: the path must be absolute (file:///...)", key=key)
        return StorageURL("file", path.rstrip("/") or "/")

    if scheme == "memory":
        return StorageURL("memory", parts.netloc + parts.path.rstrip("/"))

    raise ConfigError(f"{key}={text!r}: unsupported scheme {parts.scheme!r}; use {_FORMS}", key=key)


_memory_lock = threading.Lock()
_memory_stores: dict[str, Storage] = {}


def open_storage(
    url: str,
    *,
    key: str = "storage.url",
    endpoint_url: str | None = None,
    region: str | None = None,
    path_style: bool = False,
    part_size: int | None = None,
    sse: str | None = None,
    kms_key_id: str | None = None,
    acl: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    session_token: str | None = None,
    max_concurrency: int = 4,
    max_parts_in_flight: int | None = None,
    retry: RetryPolicy | None = None,
    fsync: bool = True,
    wall_clock: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> Storage:
    """Open the storage that ``url`` names. S3 options are ignored for other schemes.

    Credentials are optional: without them S3 uses the default AWS chain. Give both the key id
    and the secret, or neither.
    """
    parsed = parse_storage_url(url, key=key)
    if parsed.scheme == "s3":
        from s3sink.storage.s3 import DEFAULT_PART_SIZE, S3Credentials, S3Storage

        if (access_key_id is None) != (secret_access_key is None):
            raise ConfigError(
                "give both the AWS access key id and the secret access key, or neither "
                "(to use the default credential chain)"
            )
        credentials = (
            S3Credentials(access_key_id, secret_access_key, session_token)
            if access_key_id is not None and secret_access_key is not None
            else None
        )
        return S3Storage(
            parsed.location,
            parsed.prefix,
            endpoint_url=endpoint_url,
            region=region,
            path_style=path_style,
            part_size=part_size if part_size is not None else DEFAULT_PART_SIZE,
            sse=sse,
            kms_key_id=kms_key_id,
            acl=acl,
            credentials=credentials,
            max_concurrency=max_concurrency,
            max_parts_in_flight=max_parts_in_flight,
            retry=retry,
            clock=monotonic,
            sleep=sleep,
            rng=rng,
        )
    if parsed.scheme == "file":
        from s3sink.storage.local import LocalStorage

        return LocalStorage(parsed.location, fsync=fsync, clock=wall_clock)

    from s3sink.storage.memory import MemoryStorage

    if not parsed.location:
        return MemoryStorage(clock=wall_clock)
    with _memory_lock:
        store = _memory_stores.get(parsed.location)
        if store is None:
            store = MemoryStorage(name=parsed.location, clock=wall_clock)
            _memory_stores[parsed.location] = store
        return store
