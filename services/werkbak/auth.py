"""Login with OpenID Connect (authorization code + PKCE, authlib), the session, CSRF and logout.

The session lives in a signed cookie (Starlette's SessionMiddleware: HttpOnly, SameSite=Lax, Secure outside
localhost) and holds the person (from the validated ID token), their access token and its expiry, the CSRF
token and when the session was last used. No data about a child is ever put in it.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import structlog
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.starlette_client import OAuth
from fastapi import Request

from services.werkbak.settings import WerkbakSettings

log = structlog.get_logger(__name__)
SCOPES = "openid email profile schakel"
TOKEN_MARGIN_S = 30


@dataclass(frozen=True)
class SessionPerson:
    """The person logged in, as the werkbak's session knows them."""

    email: str
    name: str
    organisation: str
    access_token: str
    csrf: str


class LoginFailed(Exception):
    """The identity provider's answer could not be used (the page says so in Dutch)."""


class Auth:
    """The OIDC client and everything about the session."""

    def __init__(self, settings: WerkbakSettings) -> None:
        self.settings = settings
        self.oauth = OAuth()
        self.oauth.register(
            name="idp", client_id=settings.oidc_client_id,
            client_secret=settings.oidc_client_secret.get_secret_value(),
            server_metadata_url=f"{(settings.oidc_issuer or '').rstrip('/')}/.well-known/openid-configuration",
            client_kwargs={"scope": SCOPES, "code_challenge_method": "S256"},
        )
        self.callback_url = f"{settings.public_base_url.rstrip('/')}/auth/callback"
        self.logged_out_url = f"{settings.public_base_url.rstrip('/')}/afgemeld"

    @property
    def client(self) -> Any:
        return self.oauth.create_client("idp")

    async def metadata(self) -> dict[str, Any]:
        """The identity provider's discovery document (cached by authlib)."""
        result: dict[str, Any] = await self.client.load_server_metadata()
        return result

    async def login_redirect(self, request: Request, *, next_path: str) -> Any:
        """Send the browser to the identity provider; remember where to come back to."""
        request.session["next"] = safe_next(next_path)
        return await self.client.authorize_redirect(request, self.callback_url)

    async def complete_login(self, request: Request) -> str:
        """Exchange the code (PKCE), check the ID token, start the session; the path to go to next."""
        try:
            token = await self.client.authorize_access_token(request)
        except OAuthError as exc:
            raise LoginFailed(exc.error) from exc
        claims = token.get("userinfo") or {}
        organisation = claims.get("schakel_organisation")
        if not claims.get("email") or claims.get("email_verified") is not True or not organisation:
            raise LoginFailed("missing_claims")
        next_path = safe_next(request.session.get("next", "/signalen"))
        request.session.clear()  # a new session at login: nothing from before it carries over
        request.session.update({
            "email": str(claims["email"]).lower(), "name": str(claims.get("name") or claims["email"]),
            "organisation": str(organisation), "access_token": token["access_token"],
            "expires_at": float(token.get("expires_at") or time.time() + 300),
            "csrf": secrets.token_urlsafe(32), "last_seen": time.time(),
        })
        return next_path

    def person(self, request: Request) -> SessionPerson | str | None:
        """The person of a live session; 'idle' or 'expired' for a session that just ended; None for none."""
        session = request.session
        if "access_token" not in session:
            return None
        now = time.time()
        if now - float(session.get("last_seen", 0)) > self.settings.werkbak_idle_timeout_s:
            session.clear()
            return "idle"
        if float(session.get("expires_at", 0)) - TOKEN_MARGIN_S < now:
            session.clear()
            return "expired"
        session["last_seen"] = now
        return SessionPerson(email=session["email"], name=session["name"], organisation=session["organisation"],
                             access_token=session["access_token"], csrf=session["csrf"])

    async def logout_url(self, request: Request) -> str:
        """End the session here and return the identity provider's end-session address (RP-initiated logout)."""
        request.session.clear()
        try:
            end_session = (await self.metadata()).get("end_session_endpoint")
        except Exception:
            log.warning("idp_metadata_unavailable")
            end_session = None
        if not end_session:
            return "/afgemeld"
        query = urlencode({"client_id": self.settings.oidc_client_id,
                           "post_logout_redirect_uri": self.logged_out_url})
        return f"{end_session}?{query}"


def csrf_ok(person: SessionPerson, submitted: object) -> bool:
    """Whether a form carried this session's CSRF token."""
    return isinstance(submitted, str) and hmac.compare_digest(submitted.encode(), person.csrf.encode())


def safe_next(path: object) -> str:
    """Only a path on this site to go back to after login (no other host, no scheme)."""
    if not isinstance(path, str) or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/signalen"
    return path
