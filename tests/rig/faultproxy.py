"""A fault-injecting HTTP reverse proxy in front of an S3 endpoint, on loopback.

Point a client's ``endpoint_url`` at :attr:`FaultProxy.url`. Every request is read in full, then
(seeded RNG, probability ``rate``) one of these happens instead of a clean pass-through:

* ``"500"`` -- answered by the proxy with ``500 InternalError``; the request never reaches S3;
* ``"503"`` -- answered by the proxy with ``503 SlowDown``; the request never reaches S3;
* ``"drop"`` -- forwarded to S3, which executes it, and then the client connection is reset
  before any byte of the response is returned (the nasty case: the write happened, the caller
  cannot know);
* ``"reset"`` (not in the default mix) -- the connection is reset without forwarding.

:meth:`FaultProxy.inject` queues faults for the next requests that match a predicate, for
deterministic tests ("drop the response of the next conditional PUT"). :attr:`FaultProxy.counts`
counts what happened. The ``Host`` header is forwarded unchanged so SigV4 signatures stay valid
(MinIO checks them).
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import random
import socket
import struct
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import urlsplit

__all__ = ["FaultKind", "FaultProxy", "ProxiedRequest"]

FaultKind = Literal["500", "503", "drop", "reset"]
DEFAULT_KINDS: tuple[FaultKind, ...] = ("500", "503", "drop")

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "expect",
        "content-length",
    }
)

_ERROR_BODIES: dict[str, tuple[int, str, str]] = {
    "500": (500, "InternalError", "We encountered an internal error. Please try again."),
    "503": (503, "SlowDown", "Please reduce your request rate."),
}


@dataclass(frozen=True, slots=True)
class ProxiedRequest:
    """What a predicate passed to :meth:`FaultProxy.inject` sees. Header names are lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    body_size: int

    @property
    def is_conditional_put(self) -> bool:
        return self.method == "PUT" and (
            "if-none-match" in self.headers or "if-match" in self.headers
        )


Predicate = Callable[[ProxiedRequest], bool]


@dataclass
class _Queued:
    kind: FaultKind
    match: Predicate
    remaining: int


@dataclass
class _State:
    rate: float
    kinds: tuple[FaultKind, ...]
    rng: random.Random
    lock: threading.Lock = field(default_factory=threading.Lock)
    queued: list[_Queued] = field(default_factory=list)
    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    events: list[tuple[str, str, str]] = field(default_factory=list)

    def decide(self, request: ProxiedRequest) -> FaultKind | None:
        with self.lock:
            self.counts["requests"] += 1
            for queued in self.queued:
                if queued.remaining > 0 and queued.match(request):
                    queued.remaining -= 1
                    self.queued = [q for q in self.queued if q.remaining > 0]
                    return queued.kind
            if self.rate > 0 and self.rng.random() < self.rate:
                return self.rng.choice(self.kinds)
            return None

    def record(self, what: str, request: ProxiedRequest) -> None:
        with self.lock:
            self.counts[what] += 1
            self.events.append((what, request.method, request.path))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out in separate writes: without TCP_NODELAY, Nagle + delayed ACK
    # add ~40 ms to every response
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        return None

    # one upstream connection per client connection, reused across its requests
    _upstream: http.client.HTTPConnection | None = None

    def do_GET(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is not None:
            return self.rfile.read(int(length))
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return b""

    def _reset(self) -> None:
        """Close the client connection with a TCP reset, sending nothing."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _handle(self) -> None:
        state = self.server.state
        body = self._read_body()
        request = ProxiedRequest(
            self.command,
            self.path,
            {k.lower(): v for k, v in self.headers.items()},
            len(body),
        )
        fault = state.decide(request)
        if fault in _ERROR_BODIES:
            state.record(f"injected_{fault}", request)
            status, code, message = _ERROR_BODIES[fault]
            self._send_error_xml(status, code, message)
            return
        if fault == "reset":
            state.record("reset_before_forward", request)
            self._reset()
            return
        try:
            status, reason, headers, data = self._forward(body)
        except (OSError, http.client.HTTPException) as exc:
            state.record("upstream_error", request)
            self._send_error_xml(502, "BadGateway", f"fault proxy: upstream failed: {exc}")
            return
        if fault == "drop":
            state.record("dropped_after_forward", request)
            self._reset()
            return
        state.record("forwarded", request)
        self.send_response_only(status, reason)
        for name, value in headers:
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        if self.command == "HEAD":
            upstream_length = next((v for n, v in headers if n.lower() == "content-length"), None)
            if upstream_length is not None:
                self.send_header("Content-Length", upstream_length)
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD" and data:
            self.wfile.write(data)

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        if body or self.command in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        for attempt in range(2):
            if self._upstream is None:
                host, port = self.server.upstream
                self._upstream = http.client.HTTPConnection(host, port, timeout=120)
            try:
                self._upstream.request(self.command, self.path, body=body, headers=headers)
                response = self._upstream.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException):
                self._upstream.close()
                self._upstream = None
                if attempt == 1:
                    raise
                continue  # a stale keep-alive connection: reconnect once
            if response.will_close:
                self._upstream.close()
                self._upstream = None
            return response.status, response.reason, response.getheaders(), data
        raise AssertionError("unreachable")

    def _send_error_xml(self, status: int, code: str, message: str) -> None:
        payload = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            "<RequestId>faultproxy</RequestId></Error>"
        ).encode()
        self.send_response_only(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(0 if self.command == "HEAD" else len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if self._upstream is not None:
                self._upstream.close()
                self._upstream = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, upstream: tuple[str, int], state: _State) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = upstream
        self.state = state

    def handle_error(self, request: object, client_address: object) -> None:
        return None  # client resets are the point of this server; don't print tracebacks


class FaultProxy:
    """A threaded reverse proxy on ``127.0.0.1`` that injects S3 faults. Use as a context
    manager or call :meth:`start` / :meth:`stop`."""

    def __init__(
        self,
        upstream_url: str,
        *,
        rate: float = 0.0,
        seed: int = 0,
        kinds: Sequence[FaultKind] = DEFAULT_KINDS,
    ) -> None:
        parts = urlsplit(upstream_url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"upstream must be an http:// URL, not {upstream_url!r}")
        self._upstream = (parts.hostname, parts.port or 80)
        self._state = _State(rate=rate, kinds=tuple(kinds), rng=random.Random(seed))
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("fault proxy not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def counts(self) -> collections.Counter[str]:
        """A snapshot: ``requests``, ``forwarded``, ``injected_500``, ``injected_503``,
        ``dropped_after_forward``, ``reset_before_forward``, ``upstream_error``."""
        with self._state.lock:
            return collections.Counter(self._state.counts)

    @property
    def events(self) -> list[tuple[str, str, str]]:
        """``(what, method, path)`` for every request, in order."""
        with self._state.lock:
            return list(self._state.events)

    @property
    def injected(self) -> int:
        counts = self.counts
        return sum(
            counts[k]
            for k in (
                "injected_500",
                "injected_503",
                "dropped_after_forward",
                "reset_before_forward",
            )
        )

    def set_rate(self, rate: float, *, kinds: Sequence[FaultKind] | None = None) -> None:
        with self._state.lock:
            self._state.rate = rate
            if kinds is not None:
                self._state.kinds = tuple(kinds)

    def inject(self, kind: FaultKind, match: Predicate | None = None, *, times: int = 1) -> None:
        """Apply ``kind`` to the next ``times`` requests matching ``match`` (default: any)."""
        with self._state.lock:
            self._state.queued.append(_Queued(kind, match or (lambda _r: True), times))

    def pending_injections(self) -> int:
        with self._state.lock:
            return sum(q.remaining for q in self._state.queued)

    def start(self) -> FaultProxy:
        if self._server is not None:
            return self
        self._server = _Server(self._upstream, self._state)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="faultproxy",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
