"""Pure parts of intake: the rate limiter, inbound signatures, sealed dead letters, the elfproef."""

from __future__ import annotations

import base64

from services.intake.inbound import dead_letter_value
from services.intake.ratelimit import RateLimiter
from services.intake.signing import partner_signing_key, sign, verify
from services.intake.validation import elfproef
from shared.pseudonym import unseal


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_rate_limiter_allows_a_burst_then_asks_to_wait() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=2, clock=clock)
    assert limiter.acquire("p") is None and limiter.acquire("p") is None
    assert limiter.acquire("p") == 1
    assert limiter.acquire("q") is None
    clock.now = 1.0
    assert limiter.acquire("p") is None


def test_the_retry_after_covers_the_time_until_a_token_is_back() -> None:
    limiter = RateLimiter(per_minute=6, burst=1, clock=Clock())
    assert limiter.acquire("p") is None
    assert limiter.acquire("p") == 10


def test_a_signature_verifies_only_for_the_same_value_and_partner() -> None:
    key = partner_signing_key(master_secret="m", partner_id="politie")
    value = b'{"x": 1}'
    signature = sign(value, signing_key=key)
    assert verify(value, signature, signing_key=key)
    assert not verify(value + b" ", signature, signing_key=key)
    assert not verify(value, signature, signing_key=partner_signing_key(master_secret="m", partner_id="school"))
    assert not verify(value, None, signing_key=key)
    assert not verify(value, "v1=zz", signing_key=key)


def test_a_dead_letter_value_is_sealed_and_opens_with_the_key_and_its_provenance() -> None:
    raw = b'{"bsn": "111222333"}'
    sealed = dead_letter_value(raw, sealing_key="k", topic="signals.inbound", partition=2, offset=7)
    assert b"111222333" not in sealed
    assert base64.b64decode(unseal(sealed.decode(), key="k", context="signals.inbound:2:7")) == raw


def test_the_elfproef() -> None:
    assert elfproef("111222333") and elfproef("123456782")
    assert not elfproef("123456789") and not elfproef("000000000")
    assert not elfproef("12345678") and not elfproef("12345678a")
