import ipaddress
from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator

from shared.settings import ServiceSettings


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class NotificationSettings(ServiceSettings):
    http_port: int = Field(default=18003, ge=0, le=65535, description="HTTP port.")
    sms_gateway_url: str = Field(
        default="http://127.0.0.1:18025",
        pattern=r"^https?://",
        description="Base URL of the SMS gateway (the generic JSON gateway API); https, "
        "or http to a loopback address only.",
    )
    sms_gateway_plain_http: bool = Field(
        default=False,
        description="Allow http:// to a gateway that is not on loopback: for a closed "
        "development network only (docker-compose's stand-in).",
    )
    sms_gateway_token: SecretStr | None = Field(
        default=None, description="Sent as 'Authorization: Bearer <token>' to the gateway."
    )
    sms_sender_id: str = Field(default="PERISAI", min_length=1, max_length=11)
    smtp_host: str = Field(default="127.0.0.1", min_length=1)
    smtp_port: int = Field(default=18026, ge=1, le=65535)
    smtp_tls: Literal["opportunistic", "starttls", "implicit", "off"] = Field(
        default="opportunistic",
        description="opportunistic: STARTTLS when the server offers it; starttls: "
        "STARTTLS or no session; implicit: TLS from the first byte (port 465); off: "
        "never (no credentials then).",
    )
    smtp_ca_file: Path | None = Field(
        default=None,
        description="CA certificates to check the SMTP server's against (default: the system's).",
    )
    smtp_username: str | None = None
    smtp_password: SecretStr | None = Field(
        default=None, description="Sent only over TLS: a session without it sends none."
    )
    email_from: str = Field(default="Perisai Kota Pasuruan <perisai@pasuruankota.go.id>")
    help_line: str = Field(default="BPJSTK 175", description="Help line quoted in every message.")
    sms_bulk_size: int = Field(
        default=100, ge=1, le=500, description="Messages per request to the SMS gateway."
    )
    sms_concurrency: int = Field(default=4, ge=1, le=64, description="SMS requests in flight.")
    smtp_connections: int = Field(default=4, ge=1, le=64, description="Open SMTP connections.")
    send_batch_size: int = Field(default=200, ge=1, le=10_000, description="Deliveries per round.")
    send_timeout_s: float = Field(default=10.0, gt=0)
    send_lease_s: float = Field(
        default=120.0,
        gt=0,
        description="A delivery claimed for sending by a process that then died is "
        "claimed again after this long.",
    )
    max_attempts: int = Field(
        default=12,
        ge=1,
        le=100,
        description="Attempts before giving up. With the default backoff a delivery "
        "rides out a provider outage of about 20 minutes on average.",
    )
    retry_base_s: float = Field(default=2.0, gt=0)
    retry_max_s: float = Field(default=600.0, gt=0)
    delivery_retention_days: int = Field(
        default=90,
        ge=1,
        description="Days after which a finished delivery loses its recipient and text "
        "(its status, channel and times stay).",
    )
    retention_interval_s: float = Field(
        default=3600.0, gt=0, description="How often the retention sweep runs."
    )
    shutdown_grace_s: float = Field(
        default=15.0,
        gt=0,
        description="On SIGTERM, how long the delivery round in flight may take to finish "
        "and record; keep it under the orchestrator's kill timeout.",
    )

    @model_validator(mode="after")
    def _transport_is_safe(self) -> Self:
        url = urlsplit(self.sms_gateway_url)
        plain_allowed = self.sms_gateway_plain_http or is_loopback(url.hostname or "")
        if url.scheme != "https" and not plain_allowed:
            raise ValueError("sms_gateway_url: plain http only to a loopback address; use https")
        if self.smtp_username and self.smtp_tls == "off":
            raise ValueError("smtp_username: credentials are sent only over TLS (smtp_tls)")
        return self
