"""Object storage behind one protocol: S3 (``s3.py``), the local filesystem (``local.py``) and
an in-process store for tests (``memory.py``). ``open_storage(url)`` picks one from
``storage.url``; the semantics every backend gives are in ``base.py``."""

from s3sink.storage.base import ObjectInfo, PendingUpload, Storage, Upload
from s3sink.storage.keys import InvalidKeyError, check_key, same_etag
from s3sink.storage.local import LocalStorage
from s3sink.storage.memory import FaultCall, MemoryStorage
from s3sink.storage.retry import RetryPolicy
from s3sink.storage.url import StorageURL, open_storage, parse_storage_url

__all__ = [
    "FaultCall",
    "InvalidKeyError",
    "LocalStorage",
    "MemoryStorage",
    "ObjectInfo",
    "PendingUpload",
    "RetryPolicy",
    "Storage",
    "StorageURL",
    "Upload",
    "check_key",
    "open_storage",
    "parse_storage_url",
    "same_etag",
]
