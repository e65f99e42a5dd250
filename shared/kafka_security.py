"""How every Kafka client of a service connects: plaintext (the local default), TLS,
or SASL_SSL with SCRAM. One object made from the settings, handed to the consumers
(FastStream), the relay's producer and the admin client alike, so no client can be
left on plaintext by accident."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from faststream.security import BaseSecurity, SASLScram256, SASLScram512
from pydantic import SecretStr

from shared.errors import StartupError

Protocol = Literal["PLAINTEXT", "SSL", "SASL_SSL"]
Mechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256"]


@dataclass(frozen=True)
class KafkaSecurity:
    """A client's transport and identity. ``ssl_context`` is set for SSL and SASL_SSL;
    ``username`` and ``password`` for SASL_SSL only (never over plaintext)."""

    protocol: Protocol = "PLAINTEXT"
    ssl_context: ssl.SSLContext | None = None
    mechanism: Mechanism = "SCRAM-SHA-512"
    username: str | None = None
    password: SecretStr | None = None

    def __post_init__(self) -> None:
        if self.protocol != "PLAINTEXT" and self.ssl_context is None:
            raise ValueError(f"{self.protocol} needs an SSL context")
        sasl = self.protocol == "SASL_SSL"
        if sasl != (self.username is not None and self.password is not None):
            raise ValueError("a username and password go with SASL_SSL, and only with it")

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's producer, consumer and admin client."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.ssl_context is not None:
            options["ssl_context"] = self.ssl_context
        if self.protocol == "SASL_SSL":
            assert self.username is not None and self.password is not None
            options |= {
                "sasl_mechanism": self.mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password.get_secret_value(),
            }
        return options

    def for_faststream(self) -> BaseSecurity | None:
        """The same, as FastStream's ``KafkaBroker(security=...)``."""
        if self.protocol == "PLAINTEXT":
            return None
        if self.protocol == "SSL":
            return BaseSecurity(ssl_context=self.ssl_context, use_ssl=True)
        assert self.username is not None and self.password is not None
        scram = SASLScram512 if self.mechanism == "SCRAM-SHA-512" else SASLScram256
        return scram(
            self.username,
            self.password.get_secret_value(),
            ssl_context=self.ssl_context,
            use_ssl=True,
        )

    def describe(self) -> str:
        """For logs and errors: the protocol and user, never the password."""
        if self.protocol == "SASL_SSL":
            return f"SASL_SSL ({self.mechanism}, user {self.username})"
        return self.protocol


PLAINTEXT = KafkaSecurity()


def tls_context(
    ca_file: Path | None, cert_file: Path | None = None, key_file: Path | None = None
) -> ssl.SSLContext:
    """A client context that verifies the broker's certificate and host name against
    ``ca_file`` (the system's authorities when None), presenting a client certificate
    when ``cert_file`` and ``key_file`` are given. StartupError names an unreadable file."""
    try:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        if cert_file is not None:
            context.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    except (OSError, ssl.SSLError) as error:
        raise StartupError(f"cannot load the Kafka TLS files: {error}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def security_from(
    protocol: Protocol,
    *,
    mechanism: Mechanism = "SCRAM-SHA-512",
    username: str | None = None,
    password: SecretStr | None = None,
    ca_file: Path | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
) -> KafkaSecurity:
    """The security of the settings' values (validated together by ServiceSettings)."""
    if protocol == "PLAINTEXT":
        return PLAINTEXT
    context = tls_context(ca_file, cert_file, key_file)
    if protocol == "SSL":
        return KafkaSecurity("SSL", context)
    return KafkaSecurity("SASL_SSL", context, mechanism, username, password)
