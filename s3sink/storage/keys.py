"""Rules every backend applies to keys and etags, so they all accept and compare the same way."""

from __future__ import annotations

from s3sink.errors import PermanentStorageError

__all__ = ["RESERVED_PREFIX", "InvalidKeyError", "check_key", "same_etag"]

#: Names starting with this are the local backend's temporary and lock files; no key segment
#: may start with it, so a listing never confuses them with objects.
RESERVED_PREFIX = ".s3sink-"


class InvalidKeyError(PermanentStorageError, ValueError):
    """A key that not every backend can store (empty segment, ``..``, reserved name, ...)."""


def check_key(key: str) -> str:
    """Return ``key`` if it is portable across backends, else raise :class:`InvalidKeyError`.

    Keys are ``/``-separated, relative, with no empty, ``.`` or ``..`` segment, no NUL, and no
    segment starting with ``.s3sink-`` (reserved). These are the keys that mean the same thing on
    S3 and as paths under a directory.
    """
    if not key:
        raise InvalidKeyError("empty storage key")
    if "\x00" in key:
        raise InvalidKeyError(f"storage key {key!r} contains NUL")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidKeyError(
                f"storage key {key!r} has an empty, '.' or '..' segment (leading, trailing or "
                "doubled '/'?)"
            )
        if segment.startswith(RESERVED_PREFIX):
            raise InvalidKeyError(
                f"storage key {key!r}: names starting with {RESERVED_PREFIX!r} are reserved"
            )
    return key


def _bare(etag: str) -> str:
    etag = etag.strip()
    if etag.startswith("W/"):
        etag = etag[2:]
    return etag.strip('"')


def same_etag(a: str, b: str) -> bool:
    """Whether two etags name the same object version, ignoring quotes (S3 does too)."""
    return _bare(a) == _bare(b)
