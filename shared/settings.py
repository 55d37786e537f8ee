"""Process settings from environment variables (prefix SCHAKEL_)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


SECRET_FIELDS = ("pseudonym_secret", "sealing_key", "inbound_signing_secret", "master_key")


class Settings(BaseSettings):
    """Settings every service shares; each service adds its own in a subclass (services/*/settings.py).

    The environment variables keep one namespace (SCHAKEL_...), so a service's class reads only its own
    fields and every other service's variables are ignored.
    """

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
    # Where people read a signal: the werkbak (its page /signalen/<id>); the e-mail links point here.
    public_base_url: str = "http://127.0.0.1:8005"
    mail_from: str = "Schakel <noreply@schakel.example>"  # notify sends as; the Message-ID domain comes from it
    # Secret for the HMAC pseudonyms; per municipality, never in the repo.
    pseudonym_secret: SecretStr = SecretStr("development-only-secret-change-me")
    # Key (any string, stretched with SHA-256) that seals free text on Kafka.
    sealing_key: SecretStr = SecretStr("development-only-sealing-key")
    # The municipality's master secret: every child's data key on privacy.keys is wrapped by a key derived from it
    # (ADR 0020). The sealing key above only opens records sealed before per-child keys existed.
    master_key: SecretStr = SecretStr("development-only-master-key")
    topic_partitions: int = 4
    # How long a record loop's batch that is not full waits once for more records (ADR 0014): a few ms per hop
    # buy one produce request for several records. 0: take only what is ready.
    batch_linger_s: float = Field(default=0.005, ge=0, le=0.1)
    # A name for this worker, stable across its restarts (e.g. routing-2, a container's hostname): the stream
    # services then join their consumer group as static members (group.instance.id), so a restart within the
    # session timeout does not move partitions. Unset: dynamic membership.
    worker_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,100}$")
    # The identity provider whose access tokens name people (ADR 0016/0017); unset: partner tokens only.
    oidc_issuer: str | None = None
    oidc_audience: str = "schakel"
    # An OTLP/HTTP receiver for traces (e.g. http://127.0.0.1:4318); unset: no traces are exported (ADR 0019).
    otlp_endpoint: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(/\S*)?$")
    # Master secret from which each Kafka-connected partner's signing key is derived (ADR 0006).
    inbound_signing_secret: SecretStr = SecretStr("development-only-inbound-signing-secret")

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
