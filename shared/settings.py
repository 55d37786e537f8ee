"""Process settings from environment variables (prefix SCHAKEL_)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


SECRET_FIELDS = ("pseudonym_secret", "sealing_key", "inbound_signing_secret")


class Settings(BaseSettings):
    """Settings every service shares; services subclass to add their own."""

    model_config = SettingsConfigDict(env_prefix="SCHAKEL_", extra="ignore")

    # In production the development secrets below are refused at start-up.
    environment: Literal["development", "production"] = "development"
    kafka_bootstrap: str = "127.0.0.1:19092"
    state_dir: Path = REPO_ROOT / ".state"
    config: Path = REPO_ROOT / "examples" / "gemeente-voorbeeld.yaml"
    log_format: str = Field(default="console", pattern="^(console|json)$")
    log_level: str = "INFO"
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    public_base_url: str = "http://127.0.0.1:8003"
    # Secret for the HMAC pseudonyms; per municipality, never in the repo.
    pseudonym_secret: SecretStr = SecretStr("development-only-secret-change-me")
    # Key (any string, stretched with SHA-256) that seals free text on Kafka.
    sealing_key: SecretStr = SecretStr("development-only-sealing-key")
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    # notify: CA bundle (PEM) to verify the SMTP server's certificate with; the system's store when unset.
    smtp_ca_file: Path | None = None
    mail_from: str = "Schakel <noreply@schakel.example>"
    # notify: transient SMTP failures retry after base·2^(n-1) s, capped, jittered to 85–100 % (ADR 0008).
    notify_retry_base_s: float = Field(default=2.0, gt=0)
    notify_retry_max_s: float = Field(default=50.0, gt=0)
    # notify: SMTP connections used in parallel for the e-mails of a batch. A kill of notify can resend each
    # e-mail the server accepted but notify had not yet recorded: at most this many per kill (ADR 0014).
    notify_smtp_connections: int = Field(default=1, ge=1, le=64)
    # notify: daily digests go out at this local time (Europe/Amsterdam, HH:MM) ...
    notify_digest_time: str = Field(default="07:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
    # ... or, when set, every this many seconds (tests and demos); the timer looks every check interval.
    notify_digest_interval_s: float | None = Field(default=None, gt=0)
    notify_digest_check_s: float = Field(default=30.0, gt=0)
    topic_partitions: int = 4
    # A name for this worker, stable across its restarts (e.g. routing-2, a container's hostname): the stream
    # services then join their consumer group as static members (group.instance.id), so a restart within the
    # session timeout does not move partitions. Unset: dynamic membership.
    worker_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,100}$")
    # intake: per-partner token bucket (per process), answers 429 with Retry-After when empty.
    intake_rate_per_minute: float = Field(default=600.0, gt=0)
    intake_rate_burst: int = Field(default=60, ge=1)
    # intake: Retry-After (seconds) on 503, and how long to wait for Kafka's ack before answering 503.
    intake_retry_after_s: int = Field(default=5, ge=1)
    intake_send_timeout_s: float = Field(default=5.0, gt=0)
    # intake: how long an idempotency claim holds before another request may take it over (ADR 0005).
    intake_claim_lease_s: float = Field(default=30.0, gt=0)
    # Master secret from which each Kafka-connected partner's signing key is derived (ADR 0006).
    inbound_signing_secret: SecretStr = SecretStr("development-only-inbound-signing-secret")
    # feedback: how often the SLA sweep scans the lifecycle table for due warnings, breaches, escalations.
    sla_sweep_interval_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _no_development_secrets_in_production(self) -> Self:
        if self.environment == "production":
            weak = [name for name in SECRET_FIELDS
                    if getattr(self, name).get_secret_value().startswith("development-only")
                    or len(getattr(self, name).get_secret_value()) < 32]
            if weak:
                names = ", ".join(f"SCHAKEL_{name.upper()}" for name in weak)
                raise ValueError(f"production needs real secrets (at least 32 characters) for {names}")
        return self

    def service_state_dir(self, service: str) -> Path:
        """Directory for one service's local state (tables, logs)."""
        path = self.state_dir / service
        path.mkdir(parents=True, exist_ok=True)
        return path
