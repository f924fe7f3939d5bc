"""Container health check: ``GET /healthz`` on the sink's HTTP listener, exit 0 when it is 200.

Used by the Dockerfile's ``HEALTHCHECK``, compose.yaml and the ECS task definition; it needs
only the standard library (no curl in the image). The listener is ``S3SINK_HTTP_LISTEN``
(default ``0.0.0.0:8080``, the sink's ``http.listen`` default): set ``http.listen`` through that
variable rather than in the config file so the check follows it, or point
``S3SINK_HEALTHCHECK_URL`` at the URL to probe. With ``http.listen=none`` there is nothing to
probe and the check passes.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping

DEFAULT_LISTEN = "0.0.0.0:8080"
TIMEOUT_S = 4.0
# Listening on every interface: probe the loopback one.
_WILDCARDS = {"", "0.0.0.0", "::", "*"}  # noqa: S104 (compared, never bound)


def health_url(listen: str) -> str | None:
    """The URL of ``/healthz`` for an ``http.listen`` value, or None when it is ``none``."""
    listen = listen.strip()
    if listen.lower() == "none":
        return None
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"S3SINK_HTTP_LISTEN: expected host:port, got {listen!r}")
    host = host.strip("[]")
    if host in _WILDCARDS:
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/healthz"


def check(url: str, timeout: float = TIMEOUT_S) -> tuple[bool, str]:
    """Probe ``url``: (healthy, what was seen)."""
    if not url.startswith(("http://", "https://")):
        return False, f"not an http(s) URL: {url}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (scheme checked)
            status = int(resp.status)
    except urllib.error.HTTPError as exc:
        return False, f"{url}: HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return False, f"{url}: {exc}"
    return status == 200, f"{url}: HTTP {status}"


def main(environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    try:
        url = env.get("S3SINK_HEALTHCHECK_URL") or health_url(
            env.get("S3SINK_HTTP_LISTEN", DEFAULT_LISTEN)
        )
    except ValueError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    if url is None:
        print("http.listen is none: nothing to check")
        return 0
    healthy, seen = check(url)
    if healthy:
        print(f"healthy: {seen}")
        return 0
    print(f"unhealthy: {seen}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
