"""Per-child field encryption and key wrapping (shared.subject_crypto), with published test vectors."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.keystore import KeyRing, key_record_value, parse_record_key, record_key
from shared.subject_crypto import (
    TokenHeader,
    UndecryptableField,
    decrypt_field,
    encrypt_field,
    hkdf_sha256,
    is_token,
    master_key_from,
    new_data_key,
    token_header,
    unwrap_key,
    wrap_key,
)


def test_hkdf_matches_rfc_5869_test_case_1() -> None:
    ikm = bytes.fromhex("0b" * 22)
    okm = hkdf_sha256(ikm, salt=bytes.fromhex("000102030405060708090a0b0c"),
                      info=bytes.fromhex("f0f1f2f3f4f5f6f7f8f9"), length=42)
    assert okm.hex() == ("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
                         "34007208d5b887185865")


def test_aes_256_gcm_matches_the_gcm_spec_test_case_14() -> None:
    # McGrew & Viega, "The Galois/Counter Mode of Operation", test case 14 (256-bit key).
    sealed = AESGCM(bytes(32)).encrypt(bytes(12), bytes(16), None)
    assert sealed.hex() == "cea7403d4d606b6e074ec5d3baf39d18" + "d0d1c8a799996bf0265b98b5d48ab919"


def test_a_field_token_is_aes_gcm_over_its_header_as_associated_data() -> None:
    key, nonce = bytes(range(32)), bytes(range(12))
    token = encrypt_field("kort lontje", data_key=key, subject="sk_a", kid="sig-1", event_id="ev-1",
                          field="summary", nonce=nonce)
    version, header_b64, body_b64 = token.split(".")
    assert version == "v2"
    header = base64.urlsafe_b64decode(header_b64 + "=" * (-len(header_b64) % 4))
    assert header == b'{"e":"ev-1","f":"summary","k":"sig-1","s":"sk_a"}'
    body = base64.urlsafe_b64decode(body_b64 + "=" * (-len(body_b64) % 4))
    assert body == nonce + AESGCM(key).encrypt(nonce, b"kort lontje", header)
    assert token_header(token) == TokenHeader(subject="sk_a", kid="sig-1", event_id="ev-1", field="summary")
    assert decrypt_field(token, data_key=key, field="summary", event_id="ev-1") == "kort lontje"
    assert is_token(token) and not is_token("v1.abc") and not is_token(None)


def test_a_token_does_not_open_for_another_field_event_key_or_edited_header() -> None:
    key = new_data_key()
    token = encrypt_field("geheim", data_key=key, subject="sk_a", kid="sig-1", event_id="ev-1", field="summary")
    with pytest.raises(UndecryptableField):
        decrypt_field(token, data_key=key, field="message")
    with pytest.raises(UndecryptableField):
        decrypt_field(token, data_key=key, field="summary", event_id="ev-2")
    with pytest.raises(UndecryptableField):
        decrypt_field(token, data_key=new_data_key(), field="summary")
    forged_header = base64.urlsafe_b64encode(b'{"e":"ev-9","f":"summary","k":"sig-1","s":"sk_a"}').decode()
    forged = ".".join(["v2", forged_header.rstrip("="), token.split(".")[2]])
    with pytest.raises(UndecryptableField):
        decrypt_field(forged, data_key=key, field="summary")
    with pytest.raises(UndecryptableField):
        token_header("v2.bm90IGpzb24.x")


def test_master_key_is_derived_and_wrapping_binds_subject_and_key_id() -> None:
    master = master_key_from("development-only-master-key")
    assert master == hkdf_sha256(b"development-only-master-key", salt=None, info=b"schakel master key v1")
    assert len(master) == 32 and master != master_key_from("another municipality's secret")
    data_key = new_data_key()
    wrapped = wrap_key(data_key, master_key=master, subject="sk_a", kid="sig-1")
    assert wrapped.startswith("w1.") and data_key.hex() not in wrapped
    assert unwrap_key(wrapped, master_key=master, subject="sk_a", kid="sig-1") == data_key
    for subject, kid, key in (("sk_b", "sig-1", master), ("sk_a", "sig-2", master),
                              ("sk_a", "sig-1", master_key_from("x"))):
        with pytest.raises(UndecryptableField):
            unwrap_key(wrapped, master_key=key, subject=subject, kid=kid)
    with pytest.raises(ValueError, match="32 bytes"):
        wrap_key(b"short", master_key=master, subject="sk_a", kid="sig-1")


def test_the_ring_follows_keys_and_tombstones_in_order() -> None:
    ring = KeyRing()
    value = key_record_value(subject="sk_a", kid="sig-1", wrapped="w1.x", created_at=0.0)
    ring.apply(record_key("sk_a", "sig-1"), value)
    ring.apply(record_key("sk_a", "sig-2"), key_record_value(subject="sk_a", kid="sig-2", wrapped="w1.y",
                                                             created_at=0.0))
    ring.apply(record_key("sk_b", "sig-3"), key_record_value(subject="sk_b", kid="sig-3", wrapped="w1.z",
                                                             created_at=0.0))
    ring.apply(b"~heartbeat", b"{}")
    ring.apply(record_key("sk_a", "sig-1"), b"not json")
    assert ring.kids_of("sk_a") == ["sig-1", "sig-2"]
    assert ring.get("sk_a", "sig-1") == "w1.x"
    ring.apply(record_key("sk_a", "sig-1"), None)
    assert ring.kids_of("sk_a") == ["sig-2"] and ring.get("sk_a", "sig-1") is None
    assert ring.drop("sk_a") == ["sig-2"] and ring.kids_of("sk_a") == []
    assert ring.kids_of("sk_b") == ["sig-3"]
    assert parse_record_key(b"~heartbeat") is None
    assert parse_record_key(record_key("sk_a", "inbound:signals.inbound:2:7")) == (
        "sk_a", "inbound:signals.inbound:2:7")
