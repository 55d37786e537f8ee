"""Signed inbound records (ADR 0006): per-partner keys derived from a master secret, HMAC over the value."""

from __future__ import annotations

import hashlib
import hmac

PARTNER_HEADER = "schakel-partner"
SIGNATURE_HEADER = "schakel-signature"
IDEMPOTENCY_HEADER = "idempotency-key"
SIGNATURE_VERSION = "v1"


def partner_signing_key(*, master_secret: str, partner_id: str) -> str:
    """The signing key of one Kafka-connected partner (hex), derived so only the master secret is stored."""
    return hmac.new(master_secret.encode(), f"schakel-inbound:{partner_id}".encode(), hashlib.sha256).hexdigest()


def sign(value: bytes, *, signing_key: str) -> str:
    """The signature header value a partner puts on a record: 'v1=' + hex HMAC-SHA256 of the value."""
    digest = hmac.new(bytes.fromhex(signing_key), value, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


def verify(value: bytes, signature: str | None, *, signing_key: str) -> bool:
    """Whether a signature header matches the value; compared in constant time."""
    if not signature:
        return False
    return hmac.compare_digest(sign(value, signing_key=signing_key).encode(), signature.strip().encode())
