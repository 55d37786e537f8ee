"""Cross-partner matching on a key (subject or family): pure functions over one table entry.

An entry is a JSON-able dict `{"signals": [seen, ...]}` with, per signal, its id, reference,
partner, partner kind, acceptance time and the body it went to. Time is the signals' own
acceptance time (not the wall clock), so a replay decides the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.events import SignalsMatched, deterministic_id


@dataclass(frozen=True)
class Seen:
    """One signal remembered under a key."""

    signal_id: str
    reference: str
    partner_id: str
    partner_kind: str
    received_at: datetime
    body_id: str = ""
    subject_key: str = ""

    def to_json(self) -> dict[str, str]:
        return {"id": self.signal_id, "ref": self.reference, "partner": self.partner_id,
                "kind": self.partner_kind, "at": self.received_at.isoformat(), "body": self.body_id,
                "subject": self.subject_key}

    @classmethod
    def from_json(cls, raw: dict[str, str]) -> Seen:
        return cls(raw["id"], raw["ref"], raw["partner"], raw["kind"], datetime.fromisoformat(raw["at"]),
                   raw.get("body", ""), raw.get("subject", ""))


@dataclass(frozen=True)
class MatchState:
    """What a new signal finds under its key."""

    duplicate: bool
    earlier: tuple[Seen, ...] = ()
    new_partner_match: bool = False
    partner_kinds: frozenset[str] = field(default_factory=frozenset)

    @property
    def matched(self) -> bool:
        """Another partner signalled the same key within the window."""
        return bool(self.partner_kinds)


def look_up(entry: dict[str, Any] | None, signal: Seen, *, window: timedelta, other_subjects_only: bool = False
            ) -> MatchState:
    """The match state of a signal against what the key remembers (a redelivery sees only what came before it).

    For family keys (other_subjects_only) a match needs another child of the family: the same child
    across partners is already the subject key's match.
    """
    seen = [Seen.from_json(raw) for raw in (entry or {}).get("signals", [])]
    ids = [s.signal_id for s in seen]
    duplicate = signal.signal_id in ids
    before = seen[: ids.index(signal.signal_id)] if duplicate else seen
    earlier = tuple(s for s in before if signal.received_at - s.received_at <= window)
    others = [s for s in earlier if s.partner_id != signal.partner_id
              and not (other_subjects_only and s.subject_key == signal.subject_key)]
    if not others:
        return MatchState(duplicate=duplicate, earlier=earlier)
    if other_subjects_only:
        earlier = tuple(s for s in earlier if s.subject_key != signal.subject_key)
    new_partner = signal.partner_id not in {s.partner_id for s in earlier}
    kinds = frozenset({s.partner_kind for s in others} | {signal.partner_kind})
    return MatchState(duplicate=duplicate, earlier=earlier, new_partner_match=new_partner, partner_kinds=kinds)


def remember(entry: dict[str, Any] | None, signal: Seen, *, window: timedelta) -> dict[str, Any]:
    """The entry with this signal added and signals outside the window dropped."""
    seen = [Seen.from_json(raw) for raw in (entry or {}).get("signals", [])]
    if any(s.signal_id == signal.signal_id for s in seen):
        return entry or {}
    kept = [s for s in seen if signal.received_at - s.received_at <= window]
    return {"signals": [s.to_json() for s in (*kept, signal)]}


def matched_event(*, key_kind: str, key: str, signal: Seen, state: MatchState, now: datetime) -> SignalsMatched:
    """The SignalsMatched for a signal that brought a new partner to a key; its id is deterministic."""
    everyone = (*state.earlier, signal)
    return SignalsMatched(
        match_id=deterministic_id("match", key_kind, key, signal.signal_id),
        key_kind=key_kind,  # type: ignore[arg-type]
        signal_id=signal.signal_id,
        reference=signal.reference,
        matched_signal_ids=[s.signal_id for s in state.earlier],
        matched_references=[s.reference for s in state.earlier],
        partner_ids=sorted({s.partner_id for s in everyone}),
        partner_kinds=sorted({s.partner_kind for s in everyone}),
        body_ids=sorted({s.body_id for s in everyone if s.body_id}),
        matched_at=now,
    )
