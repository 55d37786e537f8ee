"""The werkbak's settings (environment SCHAKEL_...): where the APIs and the identity provider are, the session."""

from __future__ import annotations

from typing import Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator

from shared.settings import Settings


class WerkbakSettings(Settings):
    """Settings of the werkbak; `public_base_url` is its own address (the e-mail links point at it)."""

    http_port: int = 8005
    public_base_url: str = "http://127.0.0.1:8005"
    intake_url: str = "http://127.0.0.1:8001"
    feedback_url: str = "http://127.0.0.1:8003"
    oidc_client_id: str = "werkbak"
    oidc_client_secret: SecretStr = SecretStr("development-only-werkbak-client-secret")
    # Signs the session cookie; per installation, never in the repo.
    werkbak_session_secret: SecretStr = SecretStr("development-only-werkbak-session-secret")
    # A session unused this long is over; the person logs in again.
    werkbak_idle_timeout_s: float = Field(default=900.0, gt=0)
    werkbak_api_timeout_s: float = Field(default=20.0, gt=0)

    @property
    def secure_cookies(self) -> bool:
        """Secure cookies everywhere except on a plain-http loopback address."""
        parts = urlsplit(self.public_base_url)
        return not (parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1"))

    @model_validator(mode="after")
    def _werkbak_secrets_in_production(self) -> Self:
        if self.environment == "production":
            for name in ("oidc_client_secret", "werkbak_session_secret"):
                value = getattr(self, name).get_secret_value()
                if value.startswith("development-only") or len(value) < 32:
                    raise ValueError(f"production needs a real SCHAKEL_{name.upper()} (at least 32 characters)")
            if not self.oidc_issuer:
                raise ValueError("the werkbak needs SCHAKEL_OIDC_ISSUER")
        return self
