"""The idempotency ledger (ADR 0005): a pure fold over the records of the intake.idempotency topic."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from shared import fastjson

CLAIM = "claim"
RELEASE = "release"
DONE = "done"


def key_hash(*, secret: str, idempotency_key: str) -> str:
    """A keyed hash of an Idempotency-Key, so a key that holds personal data never reaches Kafka."""
    return hmac.new(secret.encode(), f"idem:{idempotency_key}".encode(), hashlib.sha256).hexdigest()[:40]


def fingerprint(payload: object, *, secret: str) -> str:
    """A keyed hash of a canonical body, to tell a retry from another request under the same key."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hmac.new(secret.encode(), canonical.encode(), hashlib.sha256).hexdigest()


def slot_for(partner_id: str, hashed_key: str) -> str:
    """The ledger slot of one partner's key."""
    return f"{partner_id}:{hashed_key}"


@dataclass(frozen=True)
class Claim:
    """A request said it would publish the signal for a slot."""

    claim_id: str
    fingerprint: str
    at: float
    lease_s: float

    def expired(self, now: float) -> bool:
        """Whether another request may take the slot over (the claimant died or hangs)."""
        return now >= self.at + self.lease_s


@dataclass(frozen=True)
class Done:
    """The signal of a slot was published; the answer to replay."""

    claim_id: str
    fingerprint: str
    response: dict[str, Any]


def claim_record(slot: str, *, claim_id: str, fingerprint: str, at: float, lease_s: float) -> tuple[str, bytes]:
    """Key and value of a claim."""
    value = {"kind": CLAIM, "claim_id": claim_id, "fingerprint": fingerprint, "at": at, "lease_s": lease_s}
    return f"claim:{slot}", fastjson.dumps(value)


def release_record(slot: str, *, claim_id: str) -> tuple[str, bytes]:
    """Key and value that give up a claim (the publish failed)."""
    return f"claim:{slot}", fastjson.dumps({"kind": RELEASE, "claim_id": claim_id})


def done_record(slot: str, *, claim_id: str, fingerprint: str, response: dict[str, Any]) -> tuple[str, bytes]:
    """Key and value that record the published answer."""
    value = {"kind": DONE, "claim_id": claim_id, "fingerprint": fingerprint, "response": response}
    return f"done:{slot}", fastjson.dumps(value)


class Ledger:
    """Every process folds the same log in the same order, so all agree who owns a slot."""

    def __init__(self) -> None:
        self.claims: dict[str, Claim] = {}
        self.done: dict[str, Done] = {}
        self.attempts: dict[str, int] = {}  # claim records per slot, won or not (an attempt may have made keys)

    def admits(self, slot: str, claim: Claim) -> bool:
        """Whether a claim appended now would own the slot: no answer yet, and no claim or only an expired one."""
        current = self.claims.get(slot)
        return slot not in self.done and (current is None or claim.at >= current.at + current.lease_s)

    def apply(self, key: bytes | str | None, value: bytes | None) -> None:
        """Apply one record; malformed records are ignored (they cannot win a slot)."""
        if key is None or value is None:
            return
        key_text = key.decode() if isinstance(key, bytes) else key
        _, _, slot = key_text.partition(":")
        try:
            record = fastjson.loads(value)
            kind = record["kind"]
            if kind == DONE:
                self.done.setdefault(slot, Done(record["claim_id"], record["fingerprint"], record["response"]))
            elif kind == CLAIM:
                claim = Claim(record["claim_id"], record["fingerprint"], float(record["at"]), float(record["lease_s"]))
                self.attempts[slot] = self.attempts.get(slot, 0) + 1
                if self.admits(slot, claim):
                    self.claims[slot] = claim
            elif kind == RELEASE:
                current = self.claims.get(slot)
                if current is not None and current.claim_id == record["claim_id"]:
                    del self.claims[slot]
        except (ValueError, KeyError, TypeError):
            return
