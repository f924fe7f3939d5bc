"""The HTTP listener (``http.listen``): ``/metrics``, ``/healthz``, ``/readyz``.

``/healthz``: 200 while the consumer loop turns (503 once it has not for
:data:`STUCK_AFTER_S`). ``/readyz``: 200 once the first assignment's partitions are taken over
(a member with no partitions is ready too), 503 before that and from the first stop signal on.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from s3sink.sink import Sink

log = logging.getLogger("s3sink.http")

#: The loop counts as stuck when it has not turned for this long.
STUCK_AFTER_S = 120.0


def start_http(listen: str, sink: Sink) -> ThreadingHTTPServer | None:
    if listen == "none":
        return None
    host, _, port = listen.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body = sink.metrics.render().encode()
                self._send(200, body, "text/plain; version=0.0.4; charset=utf-8")
            elif path == "/healthz":
                stuck = sink.clock.monotonic() - sink.last_loop > STUCK_AFTER_S
                self._send(503 if stuck else 200, b"stuck\n" if stuck else b"ok\n")
            elif path == "/readyz":
                ready = sink.is_ready()
                self._send(200 if ready else 503, b"ready\n" if ready else b"not ready\n")
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
    log.info("serving /metrics, /healthz, /readyz on %s", listen)
    return server
