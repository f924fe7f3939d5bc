"""librdkafka settings shared by every Kafka client of the sink.

Users configure one client, the consumer (``consumer.*`` keys). The admin client (takeover
offsets, catch-up targets, ``status``) and the dead-letter producer talk to the same cluster and
need the same connection settings: security protocol, TLS, SASL, network. Only those are
copied, so consumer-only settings (``group.id``, ``fetch.*``, ...) do not reach a client that
would reject or warn about them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Setting prefixes (and names) that apply to every client of the cluster.
SHARED_PREFIXES = (
    "bootstrap.servers",
    "security.protocol",
    "ssl.",
    "ssl_",
    "sasl.",
    "enable.ssl.",
    "enable.sasl.",
    "socket.",
    "client.id",
    "client.dns.lookup",
    "client.rack",
    "broker.address.",
    "broker.version.fallback",
    "api.version.",
    "connections.max.idle.ms",
    "reconnect.backoff.",
    "retry.backoff.",
    "topic.metadata.refresh.interval.ms",
    "metadata.max.age.ms",
    "https.",
)


def shared_client_config(conf: Mapping[str, Any]) -> dict[str, Any]:
    """The connection settings of ``conf`` (a consumer config) that any other client needs."""
    return {k: v for k, v in conf.items() if k.startswith(SHARED_PREFIXES)}
