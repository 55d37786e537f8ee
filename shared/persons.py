"""People as well as partner systems: who calls an API, decided in one place (ADR 0017).

A partner system sends its bearer token (a hash in the municipality file). A person, through the werkbak or
any client of the municipality, sends the access token the municipality's identity provider issued: a JWT
checked here against the provider's published keys (signature), its issuer, its audience and its expiry.
Identity comes from the token (a verified e-mail address and the organisation, a partner id of the file);
what the person may do follows from the municipality file (the contacts of each body) and from the signal
(who reported it), in services.feedback.lifecycle.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass, field

import httpx
import structlog
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from shared.municipality import Municipality, Partner

log = structlog.get_logger(__name__)
ALGORITHMS = ("RS256", "PS256", "ES256")
JWKS_REFRESH_MIN_S = 30.0  # an unknown key id fetches the keys again, at most this often
LEEWAY_S = 30


class IdpUnavailable(RuntimeError):
    """The identity provider's keys could not be fetched (the caller answers 503)."""


@dataclass(frozen=True)
class PersonIdentity:
    """A person as the identity provider vouches for them."""

    subject: str
    email: str
    name: str
    organisation: str  # a partner id of the municipality file


@dataclass(frozen=True)
class Actor:
    """Who calls: a partner system, or a person of a partner organisation."""

    partner: Partner
    person: PersonIdentity | None = None

    @property
    def partner_id(self) -> str:
        return self.partner.id

    @property
    def person_email(self) -> str | None:
        return self.person.email if self.person else None


def _header(token: str) -> dict[str, object]:
    head = token.split(".", 1)[0]
    try:
        value = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def looks_like_jwt(token: str) -> bool:
    """Three dot-separated parts whose first is a JSON header."""
    return token.count(".") == 2 and bool(_header(token))


@dataclass
class PersonTokens:
    """Validates people's access tokens against the identity provider's JWKS (fetched through discovery)."""

    issuer: str
    audience: str
    timeout_s: float = 5.0
    _keys: KeySet | None = None
    _kids: frozenset[str] = frozenset()
    _fetched_at: float = field(default=-1e9)
    _lock: asyncio.Lock | None = None

    async def _fetch(self) -> None:
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            discovery = (await client.get(f"{self.issuer.rstrip('/')}/.well-known/openid-configuration")).json()
            if discovery.get("issuer") != self.issuer:
                raise IdpUnavailable("the discovery document names another issuer")
            jwks = (await client.get(discovery["jwks_uri"])).json()
        self._keys = KeySet.import_key_set(jwks)
        self._kids = frozenset(str(key.get("kid")) for key in jwks.get("keys", []))
        self._fetched_at = time.monotonic()
        log.info("idp_keys_fetched", keys=len(self._kids))

    async def _keys_for(self, kid: str) -> KeySet:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            stale = time.monotonic() - self._fetched_at > JWKS_REFRESH_MIN_S
            if self._keys is None or (kid not in self._kids and stale):
                try:
                    await self._fetch()
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    if self._keys is None:
                        raise IdpUnavailable(type(exc).__name__) from exc
                    log.warning("idp_keys_refresh_failed", error=type(exc).__name__)
        assert self._keys is not None
        return self._keys

    async def verify(self, token: str) -> PersonIdentity | None:
        """The person a valid access token names; None for an invalid, expired or foreign one."""
        kid = str(_header(token).get("kid", ""))
        keys = await self._keys_for(kid)
        try:
            decoded = jwt.decode(token, keys, algorithms=list(ALGORITHMS))
            jwt.JWTClaimsRegistry(
                leeway=LEEWAY_S, iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": self.audience}, exp={"essential": True},
                sub={"essential": True}, email={"essential": True}, schakel_organisation={"essential": True},
            ).validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            log.info("person_token_refused", reason=type(exc).__name__)
            return None
        claims = decoded.claims
        if claims.get("email_verified") is not True:
            log.info("person_token_refused", reason="email_not_verified")
            return None
        return PersonIdentity(subject=str(claims["sub"]), email=str(claims["email"]).lower(),
                              name=str(claims.get("name") or claims["email"]),
                              organisation=str(claims["schakel_organisation"]))


async def authenticate(header: str | None, *, municipality: Municipality,
                       persons: PersonTokens | None) -> Actor | None:
    """The actor an `Authorization: Bearer <token>` header names: a partner system or a person; None if nobody.

    Raises IdpUnavailable when a person's token cannot be checked because the provider's keys are out of reach.
    """
    scheme, _, token = (header or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    partner = municipality.partner_by_token(token)
    if partner is not None:
        return Actor(partner)
    if persons is None or not looks_like_jwt(token):
        return None
    person = await persons.verify(token)
    if person is None:
        return None
    organisation = municipality.partners.get(person.organisation)
    if organisation is None:
        log.info("person_token_refused", reason="unknown_organisation")
        return None
    return Actor(organisation, person)


def person_tokens(issuer: str | None, audience: str) -> PersonTokens | None:
    """A validator when an identity provider is configured (SCHAKEL_OIDC_ISSUER), else None: partners only."""
    return PersonTokens(issuer=issuer, audience=audience) if issuer else None
