"""The werkbak's forms as API bodies: the actions on a signal and the new-signal form (pure functions)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.taxonomy import OUTCOMES


@dataclass(frozen=True)
class Action:
    """One button on the signal page: the lifecycle event it asks for, and what the page says after."""

    event: str
    done: str


ACTIONS: dict[str, Action] = {
    "oppakken": Action("acknowledged", "U hebt het signaal opgepakt."),
    "terugkoppeling": Action("feedback", "Uw terugkoppeling is aan de melder gestuurd."),
    "afsluiten": Action("closed", "Het signaal is afgesloten."),
    "terugsturen": Action("rejected", "Het signaal is teruggestuurd en gaat naar het volgende overleg."),
    "heropenen": Action("reopened", "Het signaal is heropend."),
    "regie": Action("regie", "De regie is vastgelegd."),
}
MAX_MESSAGE = 2000


def _text(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def action_event(action: str, form: Mapping[str, Any]) -> dict[str, Any] | str:
    """The POST /events body for an action, or the Dutch reason the form is not complete."""
    event: dict[str, Any] = {"type": ACTIONS[action].event}
    if action == "terugkoppeling":
        message = _text(form, "bericht")
        if not message:
            return "Schrijf een bericht voor de melder."
        if len(message) > MAX_MESSAGE:
            return f"Het bericht is te lang (hoogstens {MAX_MESSAGE} tekens)."
        event["message"] = message
    elif action == "afsluiten":
        outcome = _text(form, "uitkomst")
        if outcome not in OUTCOMES:
            return "Kies een uitkomst."
        event["outcome"] = outcome
    elif action == "regie":
        lead = _text(form, "regie")
        if not lead:
            return "Kies wie de regie neemt."
        event["regie_body_id"] = lead
    elif action in ("terugsturen", "heropenen"):
        reason = _text(form, "reden")
        if not reason:
            return "Kies een reden."
        event["reason"] = reason[:200]
    return event


FIELDS = ("category", "urgency", "subject.bsn", "subject.school_brin", "subject.pupil_ref", "subject.family_ref",
          "postcode_area", "summary", "legal_basis")


def signal_payload(form: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The POST /v1/signals body from the form, and the values to show again (never the BSN)."""
    subject = {key: _text(form, f"subject.{key}") for key in ("bsn", "school_brin", "pupil_ref", "family_ref")}
    payload: dict[str, Any] = {
        "category": _text(form, "category"),
        "subject": {k: (v.upper() if k == "school_brin" else v) for k, v in subject.items() if v},
        "legal_basis": _text(form, "legal_basis") or "meldrecht",
        "parents_informed": _text(form, "parents_informed") == "ja",
    }
    for key in ("urgency", "postcode_area", "summary"):
        if _text(form, key):
            payload[key] = _text(form, key)
    flags = form.getlist("flags") if hasattr(form, "getlist") else []
    if flags:
        payload["flags"] = [str(f) for f in flags]
    values = {name: _text(form, name) for name in FIELDS if name != "subject.bsn"}
    values["flags"] = payload.get("flags", [])
    values["parents_informed"] = payload["parents_informed"]
    return payload, values


@dataclass
class FormErrors:
    """Intake's field errors, by form field, in Dutch."""

    by_field: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, problem: Mapping[str, Any]) -> FormErrors:
        found: dict[str, str] = {}
        for error in problem.get("errors") or []:
            name = str(error.get("field", "")).removeprefix("body.")
            if name.startswith("subject") and name not in FIELDS:
                name = "subject.bsn"  # "subject" as a whole (no identifiers): shown at the first of them
            found.setdefault(name if name in FIELDS else "", str(error.get("message", "")))
        return cls(found)

    def get(self, name: str) -> str:
        return self.by_field.get(name, "")

    @property
    def general(self) -> str:
        return self.by_field.get("", "")
