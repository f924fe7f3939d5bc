"""A real Kafka broker with TLS and SASL listeners, and the certificates it needs, made here.

:func:`make_pki` generates a throw-away CA (``cryptography``), a broker certificate for
``127.0.0.1``/``localhost`` signed by it (a PKCS#12 keystore for the JVM) and a client
certificate with an encrypted private key (PEM, for librdkafka's mutual TLS).
:class:`SecureKafka` starts a :class:`~s3sink.local.KafkaBroker` with, beside its PLAINTEXT
listener (used by the tests to produce and to create SCRAM users):

* ``SASL_SSL``: SASL over TLS with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512;
* ``SSL``: TLS with client certificates required (mutual TLS).

:meth:`SecureKafka.client_config` gives the librdkafka settings for one of them, as a user
would write them (``security.protocol``, ``sasl.mechanism``, ``sasl.username``,
``sasl.password``, ``ssl.ca.location``, ...).
"""

from __future__ import annotations

import datetime
import ipaddress
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._scram import (
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from s3sink.local import KafkaBroker

Mechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
MECHANISMS: tuple[Mechanism, ...] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

__all__ = ["MECHANISMS", "Mechanism", "Pki", "SecureKafka", "make_pki"]


@dataclass(frozen=True)
class Pki:
    ca_pem: Path
    keystore: Path  # PKCS#12: the broker's key and certificate chain
    keystore_password: str
    client_cert: Path
    client_key: Path  # PKCS#8, encrypted with client_key_password
    client_key_password: str


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "s3sink tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def make_pki(directory: Path) -> Pki:
    """A CA, a broker certificate for 127.0.0.1 and localhost, and a client certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    valid = (now - datetime.timedelta(hours=1), now + datetime.timedelta(days=2))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("s3sink test CA"))
        .issuer_name(_name("s3sink test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(cn: str, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName]) -> Any:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(valid[0])
            .not_valid_after(valid[1])
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return key, builder.sign(ca_key, hashes.SHA256())

    broker_key, broker_cert = leaf(
        "127.0.0.1",
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
    )
    client_key, client_cert = leaf("s3sink-client", ExtendedKeyUsageOID.CLIENT_AUTH, [])

    ca_pem = directory / "ca.pem"
    ca_pem.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    keystore_password = secrets.token_urlsafe(12)
    keystore = directory / "broker.p12"
    keystore.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"broker",
            broker_key,
            broker_cert,
            [ca_cert],
            serialization.BestAvailableEncryption(keystore_password.encode()),
        )
    )
    client_key_password = secrets.token_urlsafe(12)
    client_pem = directory / "client.pem"
    client_pem.write_bytes(client_cert.public_bytes(serialization.Encoding.PEM))
    client_key_pem = directory / "client.key"
    client_key_pem.write_bytes(
        client_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(client_key_password.encode()),
        )
    )
    return Pki(ca_pem, keystore, keystore_password, client_pem, client_key_pem, client_key_password)


class SecureKafka:
    """A broker with ``SASL_SSL`` (PLAIN, SCRAM-SHA-256/512) and mutual-TLS ``SSL`` listeners.

    One user per mechanism (``plain-user``, ``scram-sha-256-user``, ...), each with a random
    password; PLAIN users live in the listener's JAAS config, SCRAM users are created through
    the admin API after start-up.
    """

    def __init__(self, state_dir: Path) -> None:
        self.pki = make_pki(state_dir / "pki")
        self.passwords = {m: f"pw-{m.lower()}-{secrets.token_urlsafe(12)}" for m in MECHANISMS}
        plain_users = f'user_{self.username("PLAIN")}="{self.passwords["PLAIN"]}"'
        ks = self.pki
        extra = {
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": str(ks.keystore),
            "ssl.keystore.password": ks.keystore_password,
            "ssl.key.password": ks.keystore_password,
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(ks.ca_pem),
            "listener.name.ssl.ssl.client.auth": "required",
            "sasl.enabled.mechanisms": ",".join(MECHANISMS),
            "listener.name.sasl_ssl.sasl.enabled.mechanisms": ",".join(MECHANISMS),
            "listener.name.sasl_ssl.plain.sasl.jaas.config": (
                f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};"
            ),
            "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
        }
        self.broker = KafkaBroker(
            state_dir,
            die_with_parent=True,
            extra_config=extra,
            extra_listeners={"SASL_SSL": "SASL_SSL", "SSL": "SSL"},
        )

    @staticmethod
    def username(mechanism: Mechanism) -> str:
        return f"{mechanism.lower()}-user"

    @property
    def plaintext_bootstrap(self) -> str:
        return self.broker.bootstrap

    def start(self, timeout: float = 120.0) -> SecureKafka:
        self.broker.start(timeout=timeout)
        admin = AdminClient({"bootstrap.servers": self.broker.bootstrap})
        upserts: list[UserScramCredentialAlteration] = [
            UserScramCredentialUpsertion(
                self.username(m),
                ScramCredentialInfo(
                    ScramMechanism.SCRAM_SHA_256
                    if m == "SCRAM-SHA-256"
                    else ScramMechanism.SCRAM_SHA_512,
                    4096,
                ),
                self.passwords[m].encode(),
            )
            for m in MECHANISMS
            if m != "PLAIN"
        ]
        for fut in admin.alter_user_scram_credentials(upserts).values():
            fut.result(timeout=30)
        # SCRAM credentials reach the broker's cache through the metadata log: wait for them
        for m in MECHANISMS:
            self._wait_authenticates(self.sasl_config(m), timeout)
        self._wait_authenticates(self.ssl_config(), timeout)
        return self

    def stop(self) -> None:
        self.broker.stop()

    def _wait_authenticates(self, conf: dict[str, str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            client = AdminClient({**conf, "log_level": 0})
            try:
                client.list_topics(timeout=5)
                return
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def sasl_config(self, mechanism: Mechanism) -> dict[str, str]:
        """librdkafka settings for the SASL_SSL listener with ``mechanism``."""
        return {
            "bootstrap.servers": self.broker.listener_bootstrap("SASL_SSL"),
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": mechanism,
            "sasl.username": self.username(mechanism),
            "sasl.password": self.passwords[mechanism],
            "ssl.ca.location": str(self.pki.ca_pem),
        }

    def ssl_config(self) -> dict[str, str]:
        """librdkafka settings for the mutual-TLS SSL listener."""
        return {
            "bootstrap.servers": self.broker.listener_bootstrap("SSL"),
            "security.protocol": "SSL",
            "ssl.ca.location": str(self.pki.ca_pem),
            "ssl.certificate.location": str(self.pki.client_cert),
            "ssl.key.location": str(self.pki.client_key),
            "ssl.key.password": self.pki.client_key_password,
        }
