"""Answers this process gave and the idempotency log has not shown yet, and who wins a claim (ADR 0005)."""

from __future__ import annotations

from collections.abc import Mapping

from services.intake.ledger import Claim, Done, Ledger


def claim_wins(ledger: Ledger, *, slot: str, claim: Claim, read_past: bool) -> bool:
    """Whether a claim owns its slot, given a ledger folded up to the claim (read_past=False) or beyond it."""
    if not read_past:
        return ledger.admits(slot, claim)
    owner = ledger.claims.get(slot)
    return owner is not None and owner.claim_id == claim.claim_id and slot not in ledger.done


class PendingAnswers:
    """The 202 bodies whose `done` record is being written: replayed from here until the log holds them."""

    def __init__(self) -> None:
        self._answers: dict[str, Done] = {}
        self._written: set[str] = set()

    def __len__(self) -> int:
        return len(self._answers)

    def put(self, slot: str, answer: Done) -> None:
        """Remember an answer before its `done` record is written."""
        self._answers[slot] = answer

    def get(self, slot: str) -> Done | None:
        """The answer given for a slot, if the log has not shown it yet."""
        return self._answers.get(slot)

    def unwritten(self, slot: str) -> Done | None:
        """The answer of a slot whose `done` record Kafka has not acknowledged yet."""
        return None if slot in self._written else self._answers.get(slot)

    def written(self, slot: str) -> None:
        """Kafka acknowledged the `done` record; keep the answer until the tailer has read it."""
        if slot in self._answers:
            self._written.add(slot)

    def forget(self, done: Mapping[str, Done]) -> None:
        """Drop the answers the log now holds (ours, or an earlier one that wins in log order)."""
        for slot in [s for s in self._answers if s in done]:
            del self._answers[slot]
            self._written.discard(slot)
