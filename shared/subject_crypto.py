"""Per-child encryption of personal fields (crypto-shredding, ADR 0020): pure functions, no I/O.

Every signal gets its own random 256-bit data key in its child's key ring (the ring is the child's subject
pseudonym; the key id is the signal id, or another id for records that belong to no signal yet). A data key
travels only wrapped: AES-256-GCM under the municipality's master key, bound to subject and key id. A personal
field is an AES-256-GCM token whose header names the subject, the key id, the event id and the field name;
the header is the associated data, so a token moved to another event or another field does not decrypt.
Deleting a key (or a child's whole ring) makes every copy of its tokens, on every topic, noise.

Token:   v2.<base64url(header JSON)>.<base64url(nonce ‖ ciphertext ‖ tag)>
Wrapped: w1.<base64url(nonce ‖ ciphertext ‖ tag)>
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

TOKEN_VERSION = "v2"  # noqa: S105 - a format version, not a secret
WRAP_VERSION = "w1"
NONCE_BYTES = 12
KEY_BYTES = 32
MASTER_INFO = b"schakel master key v1"


class UndecryptableField(ValueError):
    """A token that is malformed, belongs to another field, or does not authenticate under the key."""


@dataclass(frozen=True)
class TokenHeader:
    """What a token says about itself: whose key, which key, which event, which field."""

    subject: str
    kid: str
    event_id: str
    field: str

    def encode(self) -> bytes:
        """Canonical JSON: the associated data of the token."""
        return json.dumps({"s": self.subject, "k": self.kid, "e": self.event_id, "f": self.field},
                          separators=(",", ":"), sort_keys=True).encode()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hkdf_sha256(ikm: bytes, *, salt: bytes | None, info: bytes, length: int = KEY_BYTES) -> bytes:
    """HKDF with SHA-256 (RFC 5869)."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def master_key_from(secret: str) -> bytes:
    """The 256-bit master key derived from the municipality's master secret (SCHAKEL_MASTER_KEY)."""
    return hkdf_sha256(secret.encode(), salt=None, info=MASTER_INFO)


def new_data_key() -> bytes:
    """A fresh random data key."""
    return AESGCM.generate_key(bit_length=256)


def _wrap_aad(subject: str, kid: str) -> bytes:
    return f"schakel-data-key|{subject}|{kid}".encode()


def wrap_key(data_key: bytes, *, master_key: bytes, subject: str, kid: str, nonce: bytes | None = None) -> str:
    """A data key encrypted under the master key, bound to its subject and key id."""
    if len(data_key) != KEY_BYTES:
        raise ValueError("a data key is 32 bytes")
    nonce = nonce or os.urandom(NONCE_BYTES)
    sealed = AESGCM(master_key).encrypt(nonce, data_key, _wrap_aad(subject, kid))
    return f"{WRAP_VERSION}.{_b64(nonce + sealed)}"


def unwrap_key(wrapped: str, *, master_key: bytes, subject: str, kid: str) -> bytes:
    """The data key of a wrapped key; UndecryptableField when it is not this subject's key under this master."""
    version, _, body = wrapped.partition(".")
    if version != WRAP_VERSION or not body:
        raise UndecryptableField("unknown key wrapping")
    raw = _unb64(body)
    try:
        return AESGCM(master_key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _wrap_aad(subject, kid))
    except InvalidTag as exc:
        raise UndecryptableField("wrapped key does not authenticate") from exc


def is_token(value: str | None) -> bool:
    """Whether a value is a per-child token (else: absent, or legacy v1 sealing)."""
    return bool(value) and value.startswith(TOKEN_VERSION + ".")  # type: ignore[union-attr]


def token_header(token: str) -> TokenHeader:
    """The header of a token (not authenticated until it is decrypted)."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != TOKEN_VERSION:
        raise UndecryptableField("not a per-child token")
    try:
        fields = json.loads(_unb64(parts[1]))
        return TokenHeader(subject=fields["s"], kid=fields["k"], event_id=fields["e"], field=fields["f"])
    except (ValueError, KeyError, TypeError) as exc:
        raise UndecryptableField("token header is malformed") from exc


def encrypt_field(
    text: str, *, data_key: bytes, subject: str, kid: str, event_id: str, field: str, nonce: bytes | None = None
) -> str:
    """Encrypt one personal field; the header (subject, key id, event id, field name) is the associated data."""
    header = TokenHeader(subject=subject, kid=kid, event_id=event_id, field=field).encode()
    nonce = nonce or os.urandom(NONCE_BYTES)
    sealed = AESGCM(data_key).encrypt(nonce, text.encode(), header)
    return f"{TOKEN_VERSION}.{_b64(header)}.{_b64(nonce + sealed)}"


def decrypt_field(token: str, *, data_key: bytes, field: str, event_id: str | None = None) -> str:
    """The text of a token, checked to be this field (and this event, when given)."""
    header = token_header(token)
    if header.field != field:
        raise UndecryptableField(f"token is for field {header.field!r}, not {field!r}")
    if event_id is not None and header.event_id != event_id:
        raise UndecryptableField("token belongs to another event")
    raw = _unb64(token.split(".")[2])
    try:
        return AESGCM(data_key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], header.encode()).decode()
    except InvalidTag as exc:
        raise UndecryptableField("token does not authenticate under this key") from exc
