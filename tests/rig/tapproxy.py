"""A recording (and optionally stalling) reverse proxy on loopback: every request and its
headers as they reached the endpoint (which access key signed it, which SSE and ACL headers it
carried), and requests held back past a client's timeout."""

from __future__ import annotations

import http.client
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request through :class:`TapProxy` and what came back (lower-case header names)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    response: bytes

    @property
    def access_key_id(self) -> str | None:
        """The access key id in the SigV4 ``Authorization`` header, if signed."""
        found = re.search(r"Credential=([^/,\s]+)/", self.headers.get("authorization", ""))
        return found.group(1) if found else None


StallMatch = Callable[[str, str, dict[str, str]], bool]


class _TapHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _TapServer

    def log_message(self, format: str, *args: object) -> None:
        return None

    def _handle(self) -> None:
        tap = self.server.tap
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        if tap._take_stall(self.command, self.path, headers):
            # hold the request (never forwarded) past the client's timeout, then hang up
            tap.stalled.wait(tap.stall_s)
            self.close_connection = True
            return
        forward = {
            k: v
            for k, v in self.headers.items()
            if k.lower() not in ("connection", "keep-alive", "content-length", "expect")
        }
        forward["Content-Length"] = str(len(body))
        upstream = http.client.HTTPConnection(*tap.upstream, timeout=60)
        try:
            upstream.request(self.command, self.path, body=body, headers=forward)
            response = upstream.getresponse()
            data = response.read()
            status, reason, answer = response.status, response.reason, response.getheaders()
        finally:
            upstream.close()
        tap._record(Exchange(self.command, self.path, headers, body, status, data))
        self.send_response_only(status, reason)
        for name, value in answer:
            if name.lower() not in ("connection", "keep-alive", "transfer-encoding"):
                self.send_header(name, value)
        if not any(n.lower() == "content-length" for n, _ in answer):
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _handle


class _TapServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tap: TapProxy, backlog: int) -> None:
        self.request_queue_size = backlog
        super().__init__(("127.0.0.1", 0), _TapHandler)
        self.tap = tap

    def handle_error(self, request: object, client_address: object) -> None:
        return None  # clients that time out and hang up are expected


class TapProxy:
    """A reverse proxy on ``127.0.0.1`` in front of ``upstream_url`` that records every
    exchange. :meth:`stall` makes it hold the next ``times`` matching requests for ``seconds``
    without forwarding them (then it closes the connection): a server that does not answer.
    It listens from construction and accepts connections from :meth:`start` (or ``with``)."""

    def __init__(self, upstream_url: str, *, listen_backlog: int = 16) -> None:
        parts = urlsplit(upstream_url)
        assert parts.hostname is not None
        self.upstream = (parts.hostname, parts.port or 80)
        self.stall_s = 0.0
        self.stalled = threading.Event()  # set: stop holding at once (on close)
        self._lock = threading.Lock()
        self._exchanges: list[Exchange] = []
        self._stalls: list[tuple[StallMatch, int]] = []
        self.stall_count = 0
        self._server = _TapServer(self, listen_backlog)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}"

    @property
    def exchanges(self) -> list[Exchange]:
        with self._lock:
            return list(self._exchanges)

    def stall(self, match: StallMatch, *, times: int, seconds: float) -> None:
        with self._lock:
            self.stall_s = seconds
            self._stalls.append((match, times))

    def _take_stall(self, method: str, path: str, headers: dict[str, str]) -> bool:
        with self._lock:
            for i, (match, times) in enumerate(self._stalls):
                if times > 0 and match(method, path, headers):
                    self._stalls[i] = (match, times - 1)
                    self.stall_count += 1
                    return True
            return False

    def _record(self, exchange: Exchange) -> None:
        with self._lock:
            self._exchanges.append(exchange)

    def start(self) -> TapProxy:
        self._thread.start()
        return self

    def close(self) -> None:
        self.stalled.set()
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=10)
        self._server.server_close()

    def __enter__(self) -> TapProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
