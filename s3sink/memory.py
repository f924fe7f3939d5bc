"""Memory outside the open files that ``buffer.memory.bytes`` also has to cover.

* The consumer's prefetch: librdkafka queues up to ``queued.max.messages.kbytes`` of fetched
  records and holds fetch responses of up to ``fetch.max.bytes``. Unless the user sets them
  (``consumer.*``), each gets :data:`PREFETCH_SHARE` of the budget (capped at librdkafka's own
  defaults), and the open files get what is left (:func:`files_budget`).
* Freed Arrow memory: pyarrow's default allocator keeps freed pages mapped, so the resident set
  grows to the high-water mark of every buffer ever held. The sink uses jemalloc with its dirty
  pages returned at once (decay 0) where pyarrow ships it, so the resident set follows the
  buffers actually held (:func:`configure_arrow_memory`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("s3sink.memory")

#: Share of ``buffer.memory.bytes`` for each of librdkafka's prefetch queue and fetch buffer.
PREFETCH_SHARE = 8
#: librdkafka's defaults, the caps.
QUEUE_KBYTES_MAX = 65536
FETCH_BYTES_MAX = 52_428_800
#: Floors, so a small budget still fetches (librdkafka raises fetch.max.bytes to
#: message.max.bytes itself).
QUEUE_KBYTES_MIN = 1024
FETCH_BYTES_MIN = 1_048_576

_configured = threading.Lock()
_state = {"done": False}


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
        out["queued.max.messages.kbytes"] = max(
            QUEUE_KBYTES_MIN, min(QUEUE_KBYTES_MAX, budget // PREFETCH_SHARE // 1024)
        )
    if "fetch.max.bytes" not in user:
        out["fetch.max.bytes"] = max(
            FETCH_BYTES_MIN, min(FETCH_BYTES_MAX, budget // PREFETCH_SHARE)
        )
    return out


def files_budget(budget: int, conf: Mapping[str, Any]) -> int:
    """What is left of the budget for open files and pending commits once the consumer's
    prefetch (as configured in ``conf``) is taken out; at least a quarter of it."""
    try:
        queue = int(conf.get("queued.max.messages.kbytes", QUEUE_KBYTES_MAX)) * 1024
        fetch = int(conf.get("fetch.max.bytes", FETCH_BYTES_MAX))
    except (TypeError, ValueError):
        queue, fetch = QUEUE_KBYTES_MAX * 1024, FETCH_BYTES_MAX
    return max(budget // 4, budget - queue - fetch)


def configure_arrow_memory() -> None:
    """Once per process: jemalloc with decay 0 as pyarrow's default pool, if available."""
    with _configured:
        if _state["done"]:
            return
        _state["done"] = True
        import pyarrow as pa

        try:
            pool = pa.jemalloc_memory_pool()
            pa.jemalloc_set_decay_ms(0)
        except (NotImplementedError, pa.ArrowNotImplementedError, AttributeError):
            log.debug("pyarrow without jemalloc: keeping the %s pool", pa.default_memory_pool())
            return
        pa.set_memory_pool(pool)
