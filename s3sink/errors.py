"""The one exception hierarchy of s3sink.

Everything s3sink raises on purpose derives from :class:`S3SinkError`. Two branches tell the
run loop what to do: :class:`RetriableError` (back off and try again) and :class:`FatalError`
(stop with the message). Cloud and client errors are mapped into this tree at one boundary
(``s3sink/storage/s3.py`` for S3, ``s3sink/kafka.py`` for Kafka).
"""

from __future__ import annotations


class S3SinkError(Exception):
    """Root of every error s3sink raises on purpose."""


class RetriableError(S3SinkError):
    """A transient failure: the same call may succeed later."""


class FatalError(S3SinkError):
    """The sink cannot go on; the message says why and what to do."""


class ConfigError(FatalError):
    """Bad, missing or unknown configuration. The message names the key and the fix."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class PluginError(ConfigError):
    """A partitioner or format could not be found, loaded or registered."""


class StorageError(S3SinkError):
    """A storage operation failed."""


class TransientStorageError(StorageError, RetriableError):
    """5xx, throttling, timeouts, connection resets: retried with backoff."""


class PermanentStorageError(StorageError, FatalError):
    """Access denied, missing bucket, bad request: retrying will not help."""


class NotFoundError(StorageError):
    """The object does not exist."""


class ConflictError(StorageError):
    """A conditional write lost: 412 Precondition Failed or 409 Conflict."""


class FencedError(S3SinkError):
    """Another writer owns this partition now (a newer epoch wrote to its commit log)."""

    def __init__(self, topic: str, partition: int, message: str) -> None:
        super().__init__(f"{topic}-{partition}: {message}")
        self.topic = topic
        self.partition = partition


class CommitLogError(FatalError):
    """The commit log is inconsistent in a way the sink must not paper over."""


class RecordError(S3SinkError):
    """One record could not be decoded, partitioned or written."""

    def __init__(self, topic: str, partition: int, offset: int, reason: str) -> None:
        super().__init__(f"bad record at {topic}-{partition}@{offset}: {reason}")
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.reason = reason


class BadRecordFatal(FatalError):
    """A bad record with ``errors.tolerance=none``: the sink stops here."""

    def __init__(self, error: RecordError) -> None:
        super().__init__(
            f"stopping: record {error.topic}-{error.partition} offset {error.offset} cannot be "
            f"written ({error.reason}); nothing past it was committed. Set "
            "errors.tolerance=all (with errors.deadletterqueue.topic.name) to route such "
            "records to a dead-letter queue instead."
        )
        self.error = error
