"""Inzage (AVG art. 15): all Schakel holds about one child, assembled from the topics (ADR 0020).

`collect` reads every topic that can hold something about the child — signals.received (keyed by the child's
pseudonym), then by the child's signal ids signals.assigned, signals.lifecycle, sla.*, notifications.sent,
audit.log and feedback's lifecycle changelog (deadlines, status) — and `assemble` (pure) builds the document.
Free text is decrypted with the child's keys; an erased signal shows as erased, never with content.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from shared.subject_crypto import is_token

SIGNAL_TOPICS = ("signals.assigned", "signals.lifecycle", "sla.warning", "sla.breached", "notifications.sent",
                 "audit.log")
LIFECYCLE_CHANGELOG = "schakel-feedback-signal-state-changelog"
Opener = Callable[[str, str, str], str | None]  # token, field, signal id -> text (None: key erased)


@dataclass
class Holdings:
    """The raw material: CloudEvents (as dicts) per topic, and feedback's latest table value per signal."""

    received: list[dict[str, Any]] = field(default_factory=list)
    by_topic: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    matched: list[dict[str, Any]] = field(default_factory=list)
    state: dict[str, dict[str, Any]] = field(default_factory=dict)


def _opened(opener: Opener, token: str | None, field_name: str, signal_id: str) -> str | None:
    if not token:
        return None
    try:
        return opener(token, field_name, signal_id)
    except ValueError:
        return None


def _route(data: dict[str, Any]) -> dict[str, Any]:
    return {key: data.get(key) for key in ("attempt", "route", "body_id", "body_name", "rule_id",
                                            "rule_description", "assigned_at", "matched")}


def _history(data: dict[str, Any], opener: Opener) -> dict[str, Any]:
    entry = {key: data.get(key) for key in ("change", "status", "actor_partner_id", "at", "outcome", "reason")}
    if data.get("message_sealed"):
        entry["message"] = _opened(opener, data["message_sealed"], "feedback_message", data["signal_id"])
    return entry


def _once(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each event once, in the order of its first copy (a redelivery, or a republished one, has the same id)."""
    seen: set[str] = set()
    kept = []
    for event in events:
        event_id = event.get("id")
        if event_id is not None:
            if event_id in seen:
                continue
            seen.add(event_id)
        kept.append(event)
    return kept


def _signal(received: dict[str, Any], holdings: Holdings, opener: Opener) -> dict[str, Any]:
    data = received["data"]
    signal_id = data["signal_id"]
    events = {topic: _once(e for e in holdings.by_topic.get(topic, []) if e["data"].get("signal_id") == signal_id)
              for topic in SIGNAL_TOPICS}
    erased = [e for e in events["signals.lifecycle"] if e["type"] == "nl.schakel.signal.erased.v1"]
    state = holdings.state.get(signal_id, {})
    summary = _opened(opener, data.get("summary_sealed"), "summary", signal_id)
    key_gone = summary is None and is_token(data.get("summary_sealed"))  # its key destroyed, the stub on its way
    return {
        "signal_id": signal_id,
        "reference": data["reference"],
        "erased": bool(erased) or bool(state.get("erased")) or key_gone,
        "received_at": data["received_at"],
        "reported_by": {"partner_id": data["partner_id"], "partner_kind": data["partner_kind"]},
        "category": data["category"],
        "urgency": data["urgency"],
        "legal_basis": data["legal_basis"],
        "parents_informed": data.get("parents_informed", False),
        "school_brin": data.get("school_brin"),
        "postcode_area": data.get("postcode_area"),
        "flags": data.get("flags", []),
        "summary": summary,
        "routes": [_route(e["data"]) for e in events["signals.assigned"]],
        "history": [_history(e["data"], opener) for e in events["signals.lifecycle"]
                    if e["type"] == "nl.schakel.signal.lifecycle.v1"],
        "status": state.get("status") or state.get("status_at_erasure"),
        "deadlines": state.get("deadlines", []),
        "deadlines_met": state.get("met", {}),
        "sla_events": [{"kind": "warning" if t == "sla.warning" else "breach", **{
            k: e["data"].get(k) for k in ("clock", "due_at", "step", "at")}}
            for t in ("sla.warning", "sla.breached") for e in events[t]],
        "emails": [{k: e["data"].get(k) for k in ("template", "recipient_role", "sent_at")}
                   for e in events["notifications.sent"]],
        "accesses": [{k: e["data"].get(k) for k in ("at", "actor_partner_id", "on_behalf_of", "action", "outcome",
                                                     "service")} for e in events["audit.log"]],
    }


def assemble(subject_key: str, holdings: Holdings, *, opener: Opener, exported_at: str) -> dict[str, Any]:
    """The inzage document of one child (only its own signals; matches by its own pseudonym only)."""
    own = [r for r in holdings.received if r["data"].get("subject_key") == subject_key]
    first = {r["data"]["signal_id"]: r for r in reversed(own)}  # a signal is published once; keep the first copy
    signals = [_signal(r, holdings, opener) for r in sorted(first.values(), key=lambda r: r["data"]["received_at"])]
    matches = [{k: m["data"].get(k) for k in ("match_id", "signal_id", "matched_signal_ids", "partner_kinds",
                                              "matched_at")}
               for m in holdings.matched if m["data"].get("key_kind") == "subject"]
    return {"subject_key": subject_key, "exported_at": exported_at, "signals": signals, "matches": matches}


def decode_all(values: Iterable[bytes | None]) -> list[dict[str, Any]]:
    """The CloudEvents among raw record values (anything else skipped)."""
    events = []
    for raw in values:
        try:
            event = json.loads(raw or b"")
        except ValueError:
            continue
        if isinstance(event, dict) and isinstance(event.get("data"), dict) and "type" in event:
            events.append(event)
    return events
