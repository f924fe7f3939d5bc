"""The default AWS credential chain, with no credentials in the s3sink configuration.

Each source is tried in a fresh interpreter with a clean environment (boto3 caches what it
resolved, and a developer's own ``~/.aws`` or environment must not leak in): the child builds the
storage from a parsed config exactly as the sink does (``storage_from_config``) and writes an
object. A recording proxy in front of the S3 endpoint (and of STS, for web identity) shows which
access key id signed each request; the credentials themselves come from the real sources: the
environment, a shared credentials file with a named profile, STS ``AssumeRoleWithWebIdentity``
(moto), an ECS container credentials endpoint and an EC2 instance metadata service (IMDSv2), the
last two served by small HTTP servers on loopback in the test.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.rig.tapproxy import TapProxy

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from s3sink.local import S3Endpoint

REPO = Path(__file__).resolve().parent.parent

# -- small credential servers -------------------------------------------------------------------


class _JSONRoutes(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _RouteServer

    def log_message(self, format: str, *args: object) -> None:
        return None

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        route = self.server.routes.get((self.command, self.path.split("?")[0]))
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.seen.append((self.command, self.path, headers))
        status, body = route(headers) if route else (404, b"not found")
        self.send_response_only(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = _answer


#: answers a request from its headers (lower-case names): status and body
Route = Callable[[dict[str, str]], tuple[int, bytes]]


class _RouteServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, routes: dict[tuple[str, str], Route]) -> None:
        super().__init__(("127.0.0.1", 0), _JSONRoutes)
        self.routes = routes
        self.seen: list[tuple[str, str, dict[str, str]]] = []


@contextlib.contextmanager
def serving(routes: dict[tuple[str, str], Route]) -> Iterator[_RouteServer]:
    server = _RouteServer(routes)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _temporary_credentials(key_id: str) -> dict[str, str]:
    expires = datetime.now(UTC) + timedelta(hours=1)
    return {
        "AccessKeyId": key_id,
        "SecretAccessKey": "secret-" + uuid.uuid4().hex,
        "Token": "token-" + uuid.uuid4().hex,
        "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


# -- the child: the sink's own storage code, in a clean environment ---------------------------

_CHILD = """
import json, sys
from s3sink.config import parse
from s3sink.sink import storage_from_config

raw, body = json.loads(sys.argv[1]), sys.argv[2].encode()
storage = storage_from_config(parse(raw, environ={}))
info = storage.put("credentials-check", body)
data, etag = storage.get("credentials-check")
storage.close()
print(json.dumps({"ok": data == body and etag == info.etag}))
"""


@dataclass
class Case:
    endpoint: S3Endpoint
    bucket: str
    proxy: TapProxy
    home: Path

    def base_env(self) -> dict[str, str]:
        """No credentials anywhere, no instance metadata, empty AWS files."""
        empty = self.home / "empty-aws-file"
        empty.write_text("")
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "AWS_CONFIG_FILE": str(empty),
            "AWS_SHARED_CREDENTIALS_FILE": str(empty),
            "AWS_EC2_METADATA_DISABLED": "true",
            "NO_PROXY": "*",
        }

    def run(self, env: dict[str, str]) -> tuple[str, str | None]:
        """Write an object from a child with ``env``; return the key id that signed the
        writes and the session token they carried (temporary credentials), the same on every
        S3 request of the child."""
        before = len(self.proxy.exchanges)
        prefix = f"cred-{uuid.uuid4().hex[:8]}"
        raw = {
            "name": "credentials",
            "topics": "t",
            "bootstrap.servers": "127.0.0.1:9",
            "storage.url": f"s3://{self.bucket}/{prefix}",
            "store.url": self.proxy.url,
            "s3.region": self.endpoint.region,
            "s3.path.style.access.enabled": "true",
        }
        body = uuid.uuid4().hex
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, json.dumps(raw), body],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert json.loads(done.stdout.strip().splitlines()[-1]) == {"ok": True}, done.stdout
        s3 = [x for x in self.proxy.exchanges[before:] if x.path.startswith(f"/{self.bucket}/")]
        puts = [x for x in s3 if x.method == "PUT" and x.path.endswith("/credentials-check")]
        assert len(puts) == 1 and puts[0].status == 200, [(x.method, x.path) for x in s3]
        assert puts[0].body == body.encode()
        keys = {x.access_key_id for x in s3}
        tokens = {x.headers.get("x-amz-security-token") for x in s3}
        assert len(keys) == 1 and len(tokens) == 1, (keys, tokens)
        key = keys.pop()
        assert key is not None
        return key, tokens.pop()


@pytest.fixture
def case(s3_endpoint: S3Endpoint, s3_bucket: str, tmp_path: Path) -> Iterator[Case]:
    with TapProxy(s3_endpoint.url) as proxy:
        yield Case(s3_endpoint, s3_bucket, proxy, tmp_path)


def _key_id(tag: str) -> str:
    return f"AKIA{tag.upper()}{uuid.uuid4().hex[:10].upper()}"


def test_environment_credentials(case: Case) -> None:
    key = _key_id("env")
    env = case.base_env() | {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": "env-secret"}
    assert case.run(env) == (key, None)


def test_shared_credentials_file_with_a_named_profile(case: Case) -> None:
    default_key, profile_key = _key_id("default"), _key_id("profile")
    creds = case.home / "credentials"
    creds.write_text(
        f"[default]\naws_access_key_id = {default_key}\naws_secret_access_key = d\n\n"
        f"[archiver]\naws_access_key_id = {profile_key}\naws_secret_access_key = p\n"
    )
    env = case.base_env() | {"AWS_SHARED_CREDENTIALS_FILE": str(creds)}
    # without AWS_PROFILE the default profile signs; with it, the named one
    assert case.run(env) == (default_key, None)
    assert case.run(env | {"AWS_PROFILE": "archiver"}) == (profile_key, None)


def test_web_identity_through_sts(case: Case) -> None:
    token = case.home / "web-identity-token"
    token.write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzM3NpbmsifQ.c2lnbmF0dXJl")
    role = "arn:aws:iam::123456789012:role/s3sink-archiver"
    with TapProxy(case.endpoint.url) as sts:
        env = case.base_env() | {
            "AWS_WEB_IDENTITY_TOKEN_FILE": str(token),
            "AWS_ROLE_ARN": role,
            "AWS_ROLE_SESSION_NAME": "s3sink-test",
            "AWS_ENDPOINT_URL_STS": sts.url,
            "AWS_REGION": case.endpoint.region,
        }
        used, token_used = case.run(env)
        calls = [x for x in sts.exchanges if b"AssumeRoleWithWebIdentity" in x.body]
    assert len(calls) == 1, [(x.method, x.path, x.body[:200]) for x in sts.exchanges]
    call = calls[0]
    assert call.status == 200, call.response[:500]
    assert b"RoleArn=" + role.replace(":", "%3A").replace("/", "%2F").encode() in call.body
    assert b"WebIdentityToken=" in call.body
    issued = re.search(rb"<AccessKeyId>([^<]+)</AccessKeyId>", call.response)
    assert issued is not None, call.response[:500]
    assert used == issued.group(1).decode()
    session = re.search(rb"<SessionToken>([^<]+)</SessionToken>", call.response)
    assert session is not None and token_used == session.group(1).decode()


def test_ecs_container_credentials(case: Case) -> None:
    key = _key_id("ecs")
    auth = "container-auth-" + uuid.uuid4().hex
    issued = _temporary_credentials(key)

    def creds(headers: dict[str, str]) -> tuple[int, bytes]:
        if headers.get("authorization") != auth:
            return 401, b"unauthorised"
        return 200, json.dumps(issued).encode()

    with serving({("GET", "/creds"): creds}) as server:
        host, port = server.server_address[:2]
        env = case.base_env() | {
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"http://{host!s}:{port}/creds",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN": auth,
        }
        assert case.run(env) == (key, issued["Token"])
        assert [(m, p) for m, p, _ in server.seen] == [("GET", "/creds")]


def test_ec2_instance_role_through_imdsv2(case: Case) -> None:
    key = _key_id("ec2")
    role = "s3sink-instance-role"
    session_token = "imds-" + uuid.uuid4().hex
    base = "/latest/meta-data/iam/security-credentials/"

    def token(headers: dict[str, str]) -> tuple[int, bytes]:
        if not headers.get("x-aws-ec2-metadata-token-ttl-seconds"):
            return 400, b"missing ttl"
        return 200, session_token.encode()

    def with_token(answer: bytes) -> Route:
        def route(headers: dict[str, str]) -> tuple[int, bytes]:
            if headers.get("x-aws-ec2-metadata-token") != session_token:
                return 401, b"IMDSv2 token required"
            return 200, answer

        return route

    document = {"Code": "Success", "Type": "AWS-HMAC", "LastUpdated": "2026-01-01T00:00:00Z"}
    document |= _temporary_credentials(key)
    routes = {
        ("PUT", "/latest/api/token"): token,
        ("GET", base): with_token(role.encode()),
        ("GET", base + role): with_token(json.dumps(document).encode()),
    }
    with serving(routes) as server:
        host, port = server.server_address[:2]
        env = case.base_env()
        del env["AWS_EC2_METADATA_DISABLED"]
        env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = f"http://{host!s}:{port}/"
        assert case.run(env) == (key, document["Token"])
        paths = [(m, p) for m, p, _ in server.seen]
    assert ("PUT", "/latest/api/token") in paths
    assert ("GET", base + role) in paths
    # IMDSv2 only: every metadata read carried the session token
    for method, path, headers in server.seen:
        if method == "GET" and path.startswith(base):
            assert headers.get("x-aws-ec2-metadata-token") == session_token, path


def test_no_credentials_anywhere_fails_clearly(case: Case, s3_client: S3Client) -> None:
    """The chain finds nothing: the write fails at once with a message that says what to set,
    and nothing reaches the endpoint."""
    raw = {
        "name": "credentials",
        "topics": "t",
        "bootstrap.servers": "127.0.0.1:9",
        "storage.url": f"s3://{case.bucket}/none",
        "store.url": case.proxy.url,
        "s3.region": case.endpoint.region,
        "s3.path.style.access.enabled": "true",
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(raw), "x"],
        env=case.base_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "PermanentStorageError" in done.stderr, done.stderr[-2000:]
    assert "no usable AWS credentials" in done.stderr
    assert "AWS_ACCESS_KEY_ID" in done.stderr
    assert time.monotonic() - started < 30
    assert case.proxy.exchanges == []
    assert s3_client.list_objects_v2(Bucket=case.bucket).get("KeyCount", 0) == 0
