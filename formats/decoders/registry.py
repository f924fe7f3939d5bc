"""Schema Registry access for the wire-format decoders: schemas by id, cached.

Uses confluent-kafka's ``SchemaRegistryClient`` (its REST subset: ``GET /schemas/ids/{id}``,
``GET /schemas/ids/{id}/versions``, ``GET /subjects/{s}/versions/{v}``). Client settings pass
through from ``value.converter.*`` (``basic.auth.user.info``, ``ssl.ca.location``, ...; the
Connect spellings ``schema.registry.basic.auth.user.info`` and
``basic.auth.credentials.source`` are accepted too).

A schema id the registry does not know is a property of the record (:class:`UnknownSchema`,
the record is bad); a registry that cannot be reached is not, and raises
:class:`~s3sink.errors.RetriableError` so the sink backs off instead of dead-lettering.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from s3sink.errors import ConfigError, RetriableError

#: Client settings passed through from ``value.converter.*`` (after dropping a
#: ``schema.registry.`` prefix).
_CLIENT_KEYS = frozenset(
    {
        "basic.auth.user.info",
        "basic.auth.credentials.source",
        "ssl.ca.location",
        "ssl.certificate.location",
        "ssl.key.location",
        "ssl.key.password",
        "bearer.auth.credentials.source",
        "bearer.auth.token",
        "bearer.auth.client.id",
        "bearer.auth.client.secret",
        "bearer.auth.scope",
        "bearer.auth.issuer.endpoint.url",
        "bearer.auth.logical.cluster",
        "bearer.auth.identity.pool.id",
        "timeout",
        "cache.capacity",
        "cache.latest.ttl.sec",
        "max.retries",
        "retries.wait.ms",
        "retries.max.wait.ms",
    }
)


class UnknownSchema(Exception):
    """The registry has no schema with this id (or returned one that cannot be used)."""


@dataclass(frozen=True, slots=True)
class Reference:
    name: str
    subject: str
    version: int


@dataclass(frozen=True, slots=True)
class RegistrySchema:
    schema_id: int
    schema_str: str
    schema_type: str
    references: tuple[Reference, ...] = ()


def client_config(url: str, props: Mapping[str, str]) -> dict[str, Any]:
    conf: dict[str, Any] = {"url": url}
    for k, v in props.items():
        key = k.removeprefix("schema.registry.")
        if key == "basic.auth.credentials.source" and v.upper() == "URL":
            continue
        if key in _CLIENT_KEYS:
            conf[key] = int(v) if key in ("timeout", "max.retries", "cache.capacity") else v
    if conf.get("basic.auth.credentials.source", "").upper() == "USER_INFO":
        conf.pop("basic.auth.credentials.source")
    return conf


class Registry:
    """Schemas by id, each fetched once (thread-safe)."""

    def __init__(self, url: str, props: Mapping[str, str] | None = None) -> None:
        try:
            from confluent_kafka.schema_registry import SchemaRegistryClient
        except ImportError as exc:  # pragma: no cover - a packaging problem
            raise ConfigError(
                "value.converter: the Schema Registry client needs confluent-kafka's "
                f"schemaregistry extra ({exc})",
                key="value.converter",
            ) from None
        conf = client_config(url, props or {})
        conf.setdefault("max.retries", 2)
        self._client = SchemaRegistryClient(conf)
        self._lock = threading.Lock()
        self._schemas: dict[tuple[int, str | None], RegistrySchema] = {}
        self._missing: set[tuple[int, str | None]] = set()
        self._versions: dict[tuple[int, str], int | None] = {}

    def schema(self, schema_id: int, fmt: str | None = None) -> RegistrySchema:
        key = (schema_id, fmt)
        with self._lock:
            hit = self._schemas.get(key)
            if hit is not None:
                return hit
            if key in self._missing:
                raise UnknownSchema(f"unknown schema id {schema_id}")
        try:
            s = self._client.get_schema(schema_id, fmt=fmt)
        except Exception as exc:
            if _is_not_found(exc):
                with self._lock:
                    self._missing.add(key)
                raise UnknownSchema(f"unknown schema id {schema_id}") from None
            raise RetriableError(
                f"schema registry: cannot fetch schema {schema_id}: {exc}"
            ) from exc
        refs = _refs(s.references)
        out = RegistrySchema(schema_id, s.schema_str or "", (s.schema_type or "AVRO").upper(), refs)
        with self._lock:
            self._schemas[key] = out
        return out

    def reference(self, ref: Reference, fmt: str | None = None) -> RegistrySchema:
        try:
            rs = self._client.get_version(ref.subject, ref.version, fmt=fmt)
        except Exception as exc:
            if _is_not_found(exc):
                raise UnknownSchema(
                    f"unknown reference {ref.subject} version {ref.version}"
                ) from None
            raise RetriableError(f"schema registry: cannot fetch {ref.subject}: {exc}") from exc
        s = rs.schema
        refs = _refs(s.references)
        return RegistrySchema(
            int(rs.schema_id or 0), s.schema_str or "", (s.schema_type or "AVRO").upper(), refs
        )

    def version(self, schema_id: int, subject: str) -> int | None:
        """The version of ``schema_id`` under ``subject`` (the highest if registered twice), or
        ``None`` when the registry does not say (then ids order the versions)."""
        key = (schema_id, subject)
        with self._lock:
            if key in self._versions:
                return self._versions[key]
        version: int | None = None
        try:
            pairs = self._client.get_schema_versions(schema_id)
            matching = [int(p.version or 0) for p in pairs if p.subject == subject]
            version = max(matching) if matching else None
        except Exception as exc:
            if not _is_not_found(exc):
                raise RetriableError(
                    f"schema registry: cannot list versions of schema {schema_id}: {exc}"
                ) from exc
        with self._lock:
            self._versions[key] = version
        return version


def _refs(refs: Any) -> tuple[Reference, ...]:
    return tuple(Reference(str(r.name), str(r.subject), int(r.version or 0)) for r in (refs or ()))


def _is_not_found(exc: BaseException) -> bool:
    status = getattr(exc, "http_status_code", None)
    return status in (404, 422)
