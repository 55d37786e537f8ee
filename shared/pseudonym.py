"""Keyed pseudonyms for children and families, and sealing of free text on Kafka."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def subject_key(
    *, secret: str, bsn: str | None = None, school_brin: str | None = None, pupil_ref: str | None = None
) -> str:
    """The pseudonymous key of a child: from the BSN when known, else from school + pupil number."""
    if bsn:
        material = f"bsn:{bsn}"
    elif school_brin and pupil_ref:
        material = f"pupil:{school_brin.upper()}:{pupil_ref}"
    else:
        raise ValueError("a subject needs a BSN or a school and pupil number")
    return "sk_" + hmac.new(secret.encode(), material.encode(), hashlib.sha256).hexdigest()[:40]


def family_key(*, secret: str, family_ref: str) -> str:
    """The pseudonymous key of a family reference."""
    return "fk_" + hmac.new(secret.encode(), f"family:{family_ref}".encode(), hashlib.sha256).hexdigest()[:40]


def _aead(key: str) -> AESGCM:
    return AESGCM(hashlib.sha256(key.encode()).digest())


def seal(text: str, *, key: str, context: str) -> str:
    """Encrypt free text (AES-GCM) bound to a context such as the signal id."""
    nonce = os.urandom(12)
    sealed = _aead(key).encrypt(nonce, text.encode(), context.encode())
    return "v1." + base64.urlsafe_b64encode(nonce + sealed).decode()


def unseal(token: str, *, key: str, context: str) -> str:
    """Decrypt text sealed with `seal`; raises ValueError when it does not authenticate."""
    if not token.startswith("v1."):
        raise ValueError("unknown sealing version")
    raw = base64.urlsafe_b64decode(token[3:])
    try:
        return _aead(key).decrypt(raw[:12], raw[12:], context.encode()).decode()
    except Exception as exc:  # cryptography raises InvalidTag
        raise ValueError("sealed text does not authenticate") from exc
