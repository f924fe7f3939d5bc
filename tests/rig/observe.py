"""Probing a running sink from outside: its HTTP endpoints and its metrics.

:func:`scrape` reads ``/metrics`` into a :class:`Scrape` (``value(name, **labels)`` sums the
series whose labels include the given ones); :func:`get` answers ``(status, body)`` of any path;
:func:`wait_for` polls a condition with a deadline and says what it last saw on timeout.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from s3sink.http import start_http
from s3sink.local.process import free_port
from s3sink.metrics import Sample, parse

if TYPE_CHECKING:
    from s3sink.config import SinkConfig
    from s3sink.sink import Sink
    from s3sink.storage.base import Storage

__all__ = ["Scrape", "get", "listen_address", "scrape", "wait_for"]

T = TypeVar("T")


def listen_address() -> str:
    """A free ``127.0.0.1:<port>`` for ``http.listen``."""
    return f"127.0.0.1:{free_port()}"


def get(listen: str, path: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{listen}{path}", timeout=timeout) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()


@dataclass(frozen=True)
class Scrape:
    text: str
    samples: dict[Sample, float]

    def value(self, name: str, **labels: str) -> float:
        """Sum of ``s3sink_<name>`` over the series whose labels include ``labels``."""
        full = f"s3sink_{name}"
        return sum(
            v
            for (n, ls), v in self.samples.items()
            if n == full and all(dict(ls).get(k) == want for k, want in labels.items())
        )

    def series(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        full = f"s3sink_{name}"
        return {ls: v for (n, ls), v in self.samples.items() if n == full}

    def by(self, name: str, label: str, **labels: str) -> dict[str, float]:
        """``label`` value -> sum of the series of ``name`` (matching ``labels``)."""
        out: dict[str, float] = {}
        for ls, v in self.series(name).items():
            d = dict(ls)
            if label in d and all(d.get(k) == want for k, want in labels.items()):
                out[d[label]] = out.get(d[label], 0) + v
        return out


def scrape(listen: str) -> Scrape:
    status, body = get(listen, "/metrics")
    assert status == 200, f"/metrics answered {status}: {body[:200]}"
    return Scrape(body, parse(body))


def wait_for(
    what: str, probe: Callable[[], T], ok: Callable[[T], bool], timeout: float = 60.0
) -> T:
    """Call ``probe`` until ``ok(result)``; raise with the last result after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            last: T | BaseException = probe()
        except (OSError, AssertionError) as exc:
            last = exc
        if not isinstance(last, BaseException) and ok(last):
            return last
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout:.0f} s; last: {last!r}"[:2000])
        time.sleep(0.2)


class Running:
    """``sink.run()`` in a thread with the HTTP listener (as ``s3sink run`` serves it): a new
    :class:`~s3sink.sink.Sink` of ``cfg`` (on ``storage`` if given), or ``sink`` itself."""

    def __init__(
        self, cfg: SinkConfig, storage: Storage | None = None, *, sink: Sink | None = None
    ) -> None:
        from s3sink.sink import Sink

        self.sink = sink if sink is not None else Sink(cfg, storage=storage)
        self.listen = cfg.http_listen
        self.server = start_http(cfg.http_listen, self.sink)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="sink-under-test", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.sink.run()
        except BaseException as exc:
            self.error = exc

    def scrape(self) -> Scrape:
        return scrape(self.listen)

    def stop(self, timeout: float = 60.0) -> None:
        self.sink.stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the sink did not stop"
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        if self.thread.is_alive():
            self.sink.abandon()
            self.thread.join(30)
        if self.server is not None:
            self.server.shutdown()
