from pydantic import Field

from shared.settings import ServiceSettings


class NotificationSettings(ServiceSettings):
    http_port: int = Field(default=18003, ge=0, le=65535, description="HTTP port.")
    sms_gateway_url: str = Field(
        default="http://127.0.0.1:18025",
        pattern=r"^https?://",
        description="Base URL of the SMS gateway (the generic JSON gateway API).",
    )
    sms_sender_id: str = Field(default="PERISAI", min_length=1, max_length=11)
    smtp_host: str = Field(default="127.0.0.1", min_length=1)
    smtp_port: int = Field(default=18026, ge=1, le=65535)
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: str | None = None
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
    shutdown_grace_s: float = Field(
        default=15.0,
        gt=0,
        description="On SIGTERM, how long the delivery round in flight may take to finish "
        "and record; keep it under the orchestrator's kill timeout.",
    )
