"""Memory outside the open files that ``buffer.memory.bytes`` also has to cover.

* The consumer's prefetch: librdkafka queues up to ``queued.max.messages.kbytes`` of fetched
  records (one queue for all partitions of the high-level consumer, overshot by up to one
  fetch response) and holds fetch responses of up to ``fetch.max.bytes``. Those settings count
  payload bytes only: each queued record also costs librdkafka an op of a few hundred bytes,
  and a fetch response stays allocated until its last record is consumed. Measured with 256
  partitions of ~330-byte records, librdkafka's resident memory is ~2.3-2.5x queue + fetch,
  plus ~20 MiB for the partitions themselves (32 MiB + 32 MiB: ~148 MiB; 8 MiB + 4 MiB:
  ~45 MiB). Unless the user sets them (``consumer.*``), the queue gets 1/:data:`QUEUE_SHARE`
  and the fetch 1/:data:`FETCH_SHARE` of the budget (capped at librdkafka's own defaults), the
  record count is bounded to match, and :func:`files_budget` charges the prefetch at
  :data:`PREFETCH_COST` times its nominal size: the open files get what is left.
* Everything else the process holds: Python objects of the batch in hand, librdkafka beyond
  its estimate, allocator overhead (jemalloc held ~1.4x what pyarrow reports allocated in the
  256-partition case). :class:`ResidentGauge` measures it: the resident set above its level
  when the sink started, minus what the budget counts; the open files get what the budget
  leaves after it (:meth:`ResidentGauge.files_limit`).
* Freed Arrow memory: pyarrow's default allocator keeps freed pages mapped, so the resident set
  grows to the high-water mark of every buffer ever held. The sink uses jemalloc with its dirty
  pages returned at once (decay 0) where pyarrow ships it, so the resident set follows the
  buffers actually held (:func:`configure_arrow_memory`).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger("s3sink.memory")

#: Shares of ``buffer.memory.bytes`` for librdkafka's prefetch queue and fetch buffer (256 MiB:
#: 8 MiB and 4 MiB, ~25,000 records of 330 bytes: several consume batches ahead).
QUEUE_SHARE = 32
FETCH_SHARE = 64
#: What librdkafka really holds per nominal prefetch byte (see the module docstring).
PREFETCH_COST = 3
#: Records per queued kilobyte at most (``queued.min.messages``): small records cost
#: librdkafka more per payload byte (the op per record), so their count is bounded too.
QUEUE_RECORDS_PER_KB = 4
QUEUE_RECORDS_MIN = 10_000
#: librdkafka's defaults, the caps.
QUEUE_KBYTES_MAX = 65536
FETCH_BYTES_MAX = 52_428_800
#: Floors, so a small budget still fetches (librdkafka raises fetch.max.bytes to
#: message.max.bytes itself).
QUEUE_KBYTES_MIN = 1024
FETCH_BYTES_MIN = 1_048_576

_configured = threading.Lock()
_state = {"done": False, "baseline": 0}


#: librdkafka postpones a partition's next fetch by ``fetch.queue.backoff.ms`` (default 1 s)
#: once its queue is full: a consumer faster than one queue per second (any catch-up) then
#: idles most of the time. Checking again after 10 ms costs nothing (no request is sent).
FETCH_QUEUE_BACKOFF_MS = 10


def prefetch_config(budget: int, user: Mapping[str, Any]) -> dict[str, Any]:
    """librdkafka settings bounding the prefetch to a share of the budget (user's win)."""
    out: dict[str, Any] = {}
    if "fetch.queue.backoff.ms" not in user:
        out["fetch.queue.backoff.ms"] = FETCH_QUEUE_BACKOFF_MS
    if "queued.max.messages.kbytes" not in user:
        kbytes = max(QUEUE_KBYTES_MIN, min(QUEUE_KBYTES_MAX, budget // QUEUE_SHARE // 1024))
        out["queued.max.messages.kbytes"] = kbytes
        if "queued.min.messages" not in user:
            out["queued.min.messages"] = max(QUEUE_RECORDS_MIN, kbytes * QUEUE_RECORDS_PER_KB)
    if "fetch.max.bytes" not in user:
        out["fetch.max.bytes"] = max(FETCH_BYTES_MIN, min(FETCH_BYTES_MAX, budget // FETCH_SHARE))
    return out


def prefetch_bytes(conf: Mapping[str, Any]) -> int:
    """What the consumer's prefetch (as configured in ``conf``) really holds, at most."""
    try:
        queue = int(conf.get("queued.max.messages.kbytes", QUEUE_KBYTES_MAX)) * 1024
        fetch = int(conf.get("fetch.max.bytes", FETCH_BYTES_MAX))
    except (TypeError, ValueError):
        queue, fetch = QUEUE_KBYTES_MAX * 1024, FETCH_BYTES_MAX
    return PREFETCH_COST * (queue + fetch)


def files_budget(budget: int, conf: Mapping[str, Any]) -> int:
    """What is left of the budget for open files and pending commits once the consumer's
    prefetch (as configured in ``conf``, at its real cost) is taken out; at least a quarter."""
    return max(budget // 4, budget - prefetch_bytes(conf))


def resident_bytes() -> int:
    """The process's resident set (``/proc/self/statm``), 0 where unavailable."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
#: How fast the measured overhead is forgotten once it falls (per call).
GAUGE_DECAY = 0.9


class ResidentGauge:
    """What the process holds beyond what the budget counts, measured.

    ``baseline``: the resident set before the sink buffered anything (interpreter, libraries;
    :func:`configure_arrow_memory` records it when the sink is created). What the storage client
    and the consumer add once set up is counted as overhead: a baseline taken later would
    include records librdkafka already fetched. The overhead rises at once and falls slowly
    (allocators give freed memory back late; rolling on a transient dip would not help).
    """

    def __init__(
        self,
        baseline: int | None = None,
        read: Callable[[], int] = resident_bytes,
        *,
        fixed: int = 0,
    ):
        self._read = read
        #: ``fixed``: what was set up after the baseline and stays (the S3 client), measured
        self.baseline = (_state["baseline"] if baseline is None else baseline) + fixed
        self.overhead = 0

    def files_limit(self, budget: int, prefetch: int, counted: int) -> int:
        """Bytes the open files, pending commits and part buffers (``counted`` now) may hold
        within ``budget``: what is left once the prefetch's estimate (``prefetch``), or the
        measured rest of the process if larger, is taken out; at least a quarter."""
        rss = self._read()
        if rss and self.baseline:
            raw = max(0, rss - self.baseline - counted)
            if raw >= self.overhead:
                self.overhead = raw
            else:
                self.overhead = int(self.overhead * GAUGE_DECAY + raw * (1 - GAUGE_DECAY))
        return max(budget // 4, budget - max(prefetch, self.overhead))


#: glibc's ``M_MMAP_THRESHOLD``: allocations from this size up get their own mapping, given
#: back to the system when freed. glibc's default threshold moves up to 32 MiB as large blocks
#: are freed, after which upload parts and joined batches (held by many threads) come from the
#: per-thread arenas, which keep them resident once freed. Measured (JSON -> Parquet, 8
#: partitions, MinIO): 356 MiB peak and 23 memory rolls without, 326 MiB and 6 with 4 MiB;
#: 256 KiB saved a little more but cost ~5% CPU in page faults, 4 MiB costs none measurable.
MMAP_THRESHOLD = 4 * 1024 * 1024
_M_MMAP_THRESHOLD = -3


def configure_malloc() -> bool:
    """A fixed mmap threshold for glibc's malloc (:data:`MMAP_THRESHOLD`); False elsewhere."""
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    except (OSError, AttributeError):
        return False


def configure_arrow_memory() -> None:
    """Once per process: jemalloc with decay 0 as pyarrow's default pool, if available, and
    glibc's mmap threshold fixed (:func:`configure_malloc`). Each call records the resident
    set as the baseline of :class:`ResidentGauge`."""
    with _configured:
        _state["baseline"] = resident_bytes()
        if _state["done"]:
            return
        _state["done"] = True
        configure_malloc()
        import pyarrow as pa

        try:
            pool = pa.jemalloc_memory_pool()
            pa.jemalloc_set_decay_ms(0)
        except (NotImplementedError, pa.ArrowNotImplementedError, AttributeError):
            log.debug("pyarrow without jemalloc: keeping the %s pool", pa.default_memory_pool())
            return
        pa.set_memory_pool(pool)
