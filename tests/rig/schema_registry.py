"""A small, real Schema Registry for tests: the REST subset confluent-kafka's client uses.

``SchemaRegistryServer`` is a ``ThreadingHTTPServer`` on ``127.0.0.1`` (port 0) that keeps
subjects, versions and globally numbered schema ids in memory, as Confluent's registry does
(an identical schema gets the id it already has; ids increase):

* ``POST /subjects/{subject}/versions`` register; ``POST /subjects/{subject}`` look up
* ``GET /schemas/ids/{id}`` (``?format=`` accepted; schemas are returned as registered, so a
  Protobuf schema registered by confluent-kafka's serializer, a base64 ``FileDescriptorProto``,
  is what ``format=serialized`` asks for), ``GET /schemas/ids/{id}/versions``,
  ``GET /schemas/ids/{id}/subjects``
* ``GET /subjects``, ``GET /subjects/{subject}/versions``,
  ``GET /subjects/{subject}/versions/{version|latest}``
* ``GET``/``PUT /config`` (compatibility is recorded, never enforced)

Errors are Confluent's: 404 with ``error_code`` 40401 (subject), 40402 (version), 40403
(schema). ``requests`` counts the requests per route, so tests can check caching.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


@dataclass
class _Schema:
    schema_id: int
    schema: str
    schema_type: str
    references: list[dict[str, Any]]

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schema": self.schema, "schemaType": self.schema_type}
        if self.references:
            out["references"] = self.references
        return out


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    schemas: dict[int, _Schema] = field(default_factory=dict)
    by_content: dict[tuple[str, str, str], int] = field(default_factory=dict)
    subjects: dict[str, list[int]] = field(default_factory=dict)
    config: dict[str, str] = field(default_factory=lambda: {"compatibilityLevel": "NONE"})
    requests: Counter[str] = field(default_factory=Counter)
    next_id: int = 1


class _NotFound(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class SchemaRegistryServer:
    def __init__(self, first_id: int = 1) -> None:
        self.state = _State(next_id=first_id)
        state = self.state

        class Handler(_Handler):
            registry = state

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def requests(self) -> Counter[str]:
        return self.state.requests

    def start(self) -> SchemaRegistryServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="schema-registry",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> SchemaRegistryServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- direct access (no HTTP), for test set-up ------------------------------------------
    def register(
        self,
        subject: str,
        schema: str,
        schema_type: str = "AVRO",
        references: Sequence[dict[str, Any]] = (),
    ) -> int:
        return register(self.state, subject, schema, schema_type, list(references))[0]


def register(
    state: _State, subject: str, schema: str, schema_type: str, references: list[dict[str, Any]]
) -> tuple[int, int]:
    """Register (idempotently); returns (id, version)."""
    key = (schema_type.upper(), schema, json.dumps(references, sort_keys=True))
    with state.lock:
        sid = state.by_content.get(key)
        if sid is None:
            sid = state.next_id
            state.next_id += 1
            state.schemas[sid] = _Schema(sid, schema, schema_type.upper(), references)
            state.by_content[key] = sid
        versions = state.subjects.setdefault(subject, [])
        if sid not in versions:
            versions.append(sid)
        return sid, versions.index(sid) + 1


class _Handler(BaseHTTPRequestHandler):
    registry: _State
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- plumbing ------------------------------------------------------------------------------
    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n) or b"{}")

    def _route(self, method: str) -> None:
        url = urlparse(self.path)
        parts = [unquote(p) for p in url.path.strip("/").split("/") if p]
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        state = self.registry
        try:
            body = self._body() if method in ("POST", "PUT") else None
            route, status, out = self._dispatch(method, parts, query, body)
            with state.lock:
                state.requests[route] += 1
            self._send(status, out)
        except _NotFound as exc:
            self._send(404, {"error_code": exc.code, "message": str(exc)})
        except (ValueError, KeyError) as exc:
            self._send(422, {"error_code": 42201, "message": f"invalid request: {exc}"})

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")

    # -- the API ------------------------------------------------------------------------------
    def _dispatch(
        self, method: str, p: list[str], query: dict[str, str], body: Any
    ) -> tuple[str, int, Any]:
        s = self.registry
        if p[:2] == ["schemas", "ids"] and len(p) >= 3:
            sid = int(p[2])
            with s.lock:
                schema = s.schemas.get(sid)
                pairs = [
                    {"subject": subj, "version": ids.index(sid) + 1}
                    for subj, ids in s.subjects.items()
                    if sid in ids
                ]
            if schema is None:
                raise _NotFound(40403, f"Schema {sid} not found")
            if len(p) == 3 and method == "GET":
                return "GET /schemas/ids/{id}", 200, schema.body()
            if p[3:] == ["versions"]:
                return "GET /schemas/ids/{id}/versions", 200, pairs
            if p[3:] == ["subjects"]:
                return "GET /schemas/ids/{id}/subjects", 200, [x["subject"] for x in pairs]
        if p == ["subjects"] and method == "GET":
            with s.lock:
                return "GET /subjects", 200, sorted(s.subjects)
        if p and p[0] == "subjects" and len(p) >= 2:
            subject = p[1]
            if len(p) == 3 and p[2] == "versions" and method == "POST":
                sid, version = register(
                    s,
                    subject,
                    body["schema"],
                    body.get("schemaType", "AVRO"),
                    body.get("references") or [],
                )
                out = {"id": sid, "subject": subject, "version": version, **s.schemas[sid].body()}
                return "POST /subjects/{s}/versions", 200, out
            with s.lock:
                ids = list(s.subjects.get(subject, ()))
                schemas = dict(s.schemas)
            if not ids:
                raise _NotFound(40401, f"Subject '{subject}' not found")
            if len(p) == 2 and method == "POST":
                for version, sid in enumerate(ids, 1):
                    sc = schemas[sid]
                    if (
                        sc.schema == body["schema"]
                        and sc.schema_type == body.get("schemaType", "AVRO").upper()
                    ):
                        out = {"id": sid, "subject": subject, "version": version, **sc.body()}
                        return "POST /subjects/{s}", 200, out
                raise _NotFound(40403, "Schema not found")
            if len(p) == 3 and p[2] == "versions":
                return "GET /subjects/{s}/versions", 200, list(range(1, len(ids) + 1))
            if len(p) == 4 and p[2] == "versions":
                v = len(ids) if p[3] in ("latest", "-1") else int(p[3])
                if not 1 <= v <= len(ids):
                    raise _NotFound(40402, f"Version {p[3]} not found")
                sc = schemas[ids[v - 1]]
                out = {"id": sc.schema_id, "subject": subject, "version": v, **sc.body()}
                return "GET /subjects/{s}/versions/{v}", 200, out
        if p and p[0] == "config":
            if method == "PUT":
                level = body.get("compatibility", "NONE")
                with s.lock:
                    s.config["compatibilityLevel"] = level
                return "PUT /config", 200, {"compatibility": level}
            with s.lock:
                return "GET /config", 200, dict(s.config)
        raise _NotFound(404, f"no route {method} /{'/'.join(p)}")
