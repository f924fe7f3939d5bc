"""Retries with capped exponential backoff and full jitter, in one place.

Every storage call that may fail transiently goes through :func:`call_with_retry`. The backend
decides what is transient (it raises :class:`~s3sink.errors.TransientStorageError` from the
attempt); this module decides how often and how long to wait. The sleep, the clock and the random
source are injected so tests run without real waiting and are reproducible.

Full jitter (``sleep = uniform(0, min(cap, base * 2**attempt))``) spreads the retries of many
writers hitting one throttled prefix, which is what S3 asks for on ``SlowDown``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from s3sink.errors import TransientStorageError

__all__ = ["RetryPolicy", "RetryStats", "call_with_retry", "retry_cause"]

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How transient storage failures are retried.

    ``max_attempts`` counts every try including the first; ``max_elapsed_s`` (optional) stops
    retrying once that much time has passed since the first try, whatever the attempt count.
    """

    max_attempts: int = 10
    base_delay_s: float = 0.1
    max_delay_s: float = 20.0
    max_elapsed_s: float | None = None

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be >= 1")
        if self.base_delay_s < 0 or self.max_delay_s < 0:
            raise ValueError("RetryPolicy delays must be >= 0")

    def delay(self, retry: int, rng: random.Random) -> float:
        """The full-jitter delay before retry number ``retry`` (0 for the first retry)."""
        cap = min(self.max_delay_s, self.base_delay_s * (2.0 ** min(retry, 62)))
        return rng.uniform(0.0, cap)


@dataclass
class RetryStats:
    """Counters a backend keeps about its retries (thread-safe; read them for metrics)."""

    attempts: int = 0
    retries: int = 0
    exhausted: int = 0
    #: retries by cause (see :func:`retry_cause`)
    by_cause: dict[str, int] = field(default_factory=dict, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(
        self, *, attempts: int = 0, retries: int = 0, exhausted: int = 0, cause: str | None = None
    ) -> None:
        with self._lock:
            self.attempts += attempts
            self.retries += retries
            self.exhausted += exhausted
            if cause is not None and retries:
                self.by_cause[cause] = self.by_cause.get(cause, 0) + retries

    def causes(self) -> dict[str, int]:
        with self._lock:
            return dict(self.by_cause)


def retry_cause(exc: BaseException) -> str:
    """A short cause for a transient failure: the S3 error code (``SlowDown``,
    ``InternalError``), else the HTTP status, else the underlying exception's class name."""
    origin = exc.__cause__ or exc
    response = getattr(origin, "response", None)
    if isinstance(response, dict):
        code = (response.get("Error") or {}).get("Code")
        if code:
            return str(code)
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        if status:
            return f"http_{status}"
    return type(origin).__name__


def call_with_retry(
    attempt: Callable[[], T],
    *,
    policy: RetryPolicy,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
    stats: RetryStats | None = None,
) -> T:
    """Run ``attempt`` until it returns, retrying on :class:`TransientStorageError`.

    Any other exception propagates at once. When the attempts (or the time budget) are used up,
    the last :class:`TransientStorageError` is re-raised with the attempt count in its message.
    ``what`` names the operation for logs (e.g. ``"PutObject bucket/key"``), never a secret.
    """
    rand = rng if rng is not None else random.Random()
    started = clock()
    retry = 0
    while True:
        if stats is not None:
            stats.add(attempts=1)
        try:
            return attempt()
        except TransientStorageError as exc:
            tries = retry + 1
            out_of_time = (
                policy.max_elapsed_s is not None and clock() - started >= policy.max_elapsed_s
            )
            if tries >= policy.max_attempts or out_of_time:
                if stats is not None:
                    stats.add(exhausted=1)
                raise TransientStorageError(
                    f"{what}: giving up after {tries} attempt(s): {exc}"
                ) from exc
            delay = policy.delay(retry, rand)
            log.warning(
                "%s: transient failure (attempt %s of %s), retrying in %.3fs: %s",
                what,
                tries,
                policy.max_attempts,
                delay,
                exc,
            )
            if stats is not None:
                stats.add(retries=1, cause=retry_cause(exc))
            sleep(delay)
            retry += 1
