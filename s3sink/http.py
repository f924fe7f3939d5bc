"""The HTTP listener (``http.listen``): ``/metrics``, ``/healthz``, ``/readyz``.

``/healthz``: 200 while the consumer loop turns (503 once it has not for
:data:`STUCK_AFTER_S`). ``/readyz``: 200 once the first assignment's partitions are taken over
(a member with no partitions is ready too), 503 before that and from the first stop signal on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from s3sink.sink import Sink

log = logging.getLogger("s3sink.http")

#: The loop counts as stuck when it has not turned for this long.
STUCK_AFTER_S = 120.0


#: An endpoint's answer: (healthy/ready, body).
Check = Callable[[], tuple[bool, bytes]]


def serve(
    listen: str, metrics: Callable[[], str], health: Check, ready: Check, what: str = ""
) -> ThreadingHTTPServer | None:
    """``/metrics`` (Prometheus text), ``/healthz`` and ``/readyz`` (200 or 503 with the
    check's body) on ``listen`` (``host:port``; ``none``: no listener), in a daemon thread."""
    if listen == "none":
        return None
    host, _, port = listen.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, metrics().encode(), "text/plain; version=0.0.4; charset=utf-8")
            elif path in ("/healthz", "/readyz"):
                ok, body = (health if path == "/healthz" else ready)()
                self._send(200 if ok else 503, body)
            else:
                self._send(404, b"not found\n")

        def _send(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((host or "0.0.0.0", int(port)), Handler)  # noqa: S104
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    log.info("serving /metrics, /healthz, /readyz on %s%s", listen, what)
    return server


def start_http(listen: str, sink: Sink) -> ThreadingHTTPServer | None:
    def health() -> tuple[bool, bytes]:
        stuck = sink.clock.monotonic() - sink.last_loop > STUCK_AFTER_S
        return (False, b"stuck\n") if stuck else (True, b"ok\n")

    def ready() -> tuple[bool, bytes]:
        return (True, b"ready\n") if sink.is_ready() else (False, b"not ready\n")

    return serve(listen, sink.metrics.render, health, ready)
