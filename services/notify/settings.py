"""notify's settings: the SMTP server, retries, the pool, digests (environment SCHAKEL_...)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from shared.settings import Settings


class NotifySettings(Settings):
    """Settings of the notify service."""

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    # CA bundle (PEM) to verify the SMTP server's certificate with; the system's store when unset.
    smtp_ca_file: Path | None = None
    # transient SMTP failures retry after base·2^(n-1) s, capped, jittered to 85–100 % (ADR 0008).
    notify_retry_base_s: float = Field(default=2.0, gt=0)
    notify_retry_max_s: float = Field(default=50.0, gt=0)
    # SMTP connections used in parallel for the e-mails of a batch. A kill of notify can resend each
    # e-mail the server accepted but notify had not yet recorded: at most this many per kill (ADR 0014).
    notify_smtp_connections: int = Field(default=1, ge=1, le=64)
    # daily digests go out at this local time (Europe/Amsterdam, HH:MM) ...
    notify_digest_time: str = Field(default="07:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
    # ... or, when set, every this many seconds (tests and demos); the timer looks every check interval.
    notify_digest_interval_s: float | None = Field(default=None, gt=0)
    notify_digest_check_s: float = Field(default=30.0, gt=0)
