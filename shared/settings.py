"""Process settings from environment variables (prefix SCHAKEL_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Settings every service shares; services subclass to add their own."""

    model_config = SettingsConfigDict(env_prefix="SCHAKEL_", extra="ignore")

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
    mail_from: str = "Schakel <noreply@schakel.example>"
    topic_partitions: int = 4

    def service_state_dir(self, service: str) -> Path:
        """Directory for one service's local state (tables, logs)."""
        path = self.state_dir / service
        path.mkdir(parents=True, exist_ok=True)
        return path
