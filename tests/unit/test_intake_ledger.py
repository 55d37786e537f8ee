"""The idempotency ledger: first claim wins, releases and leases free a slot, a done answer is final."""

from __future__ import annotations

from services.intake.ledger import Ledger, claim_record, done_record, fingerprint, key_hash, release_record

SLOT = "obs-de-linde:abc"


def apply(ledger: Ledger, record: tuple[str, bytes]) -> None:
    ledger.apply(*record)


def test_the_first_claim_in_the_log_owns_the_slot() -> None:
    ledger = Ledger()
    apply(ledger, claim_record(SLOT, claim_id="a", fingerprint="f", at=100.0, lease_s=30))
    apply(ledger, claim_record(SLOT, claim_id="b", fingerprint="f", at=101.0, lease_s=30))
    assert ledger.claims[SLOT].claim_id == "a"


def test_a_claim_after_the_lease_takes_the_slot_over() -> None:
    ledger = Ledger()
    apply(ledger, claim_record(SLOT, claim_id="a", fingerprint="f", at=100.0, lease_s=30))
    apply(ledger, claim_record(SLOT, claim_id="b", fingerprint="f", at=131.0, lease_s=30))
    assert ledger.claims[SLOT].claim_id == "b"


def test_a_release_frees_the_slot_only_for_its_own_claim() -> None:
    ledger = Ledger()
    apply(ledger, claim_record(SLOT, claim_id="a", fingerprint="f", at=100.0, lease_s=30))
    apply(ledger, release_record(SLOT, claim_id="b"))
    assert SLOT in ledger.claims
    apply(ledger, release_record(SLOT, claim_id="a"))
    assert SLOT not in ledger.claims


def test_a_done_answer_is_final_and_later_claims_do_not_win() -> None:
    ledger = Ledger()
    apply(ledger, claim_record(SLOT, claim_id="a", fingerprint="f", at=100.0, lease_s=30))
    apply(ledger, done_record(SLOT, claim_id="a", fingerprint="f", response={"signal_id": "s1"}))
    apply(ledger, done_record(SLOT, claim_id="b", fingerprint="g", response={"signal_id": "s2"}))
    apply(ledger, claim_record(SLOT, claim_id="c", fingerprint="f", at=999.0, lease_s=30))
    assert ledger.done[SLOT].response == {"signal_id": "s1"}
    assert ledger.claims[SLOT].claim_id == "a"


def test_every_claim_counts_as_an_attempt_even_a_released_or_losing_one() -> None:
    """An attempt may have written the signal's data key before it failed: the next one must look it up."""
    ledger = Ledger()
    assert ledger.attempts.get(SLOT, 0) == 0
    apply(ledger, claim_record(SLOT, claim_id="a", fingerprint="f", at=100.0, lease_s=30))
    apply(ledger, release_record(SLOT, claim_id="a"))
    assert SLOT not in ledger.claims and ledger.attempts[SLOT] == 1
    apply(ledger, claim_record(SLOT, claim_id="b", fingerprint="f", at=101.0, lease_s=30))
    apply(ledger, claim_record(SLOT, claim_id="c", fingerprint="f", at=102.0, lease_s=30))
    assert ledger.attempts[SLOT] == 3 and ledger.attempts.get("other:slot", 0) == 0


def test_malformed_records_are_ignored() -> None:
    ledger = Ledger()
    ledger.apply(b"claim:" + SLOT.encode(), b"not json")
    ledger.apply(None, b"{}")
    ledger.apply(b"claim:x", b'{"kind": "claim"}')
    assert not ledger.claims and not ledger.done


def test_keys_and_bodies_are_hashed_with_a_secret_so_they_reveal_nothing() -> None:
    assert key_hash(secret="s", idempotency_key="111222333") != key_hash(secret="t", idempotency_key="111222333")
    assert "111222333" not in key_hash(secret="s", idempotency_key="111222333")
    assert fingerprint({"a": 1, "b": 2}, secret="s") == fingerprint({"b": 2, "a": 1}, secret="s")
    assert fingerprint({"a": 1}, secret="s") != fingerprint({"a": 2}, secret="s")
