"""What the pages show, as pure functions over feedback's answers: Dutch labels, deadlines, order, filters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from services.notify.rendering import (
    CLOCK_LABELS,
    OUTCOME_LABELS,
    ROUTE_LABELS,
    URGENCY_LABELS,
    nl_datetime,
    role_label,
)
from shared.events import Clock, Route, Urgency
from shared.taxonomy import CATEGORIES, OUTCOMES, Outcome

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
STATUS_LABELS = {
    "assigned": "Nieuw, nog niet opgepakt",
    "acknowledged": "Opgepakt",
    "feedback_given": "Terugkoppeling gegeven",
    "closed": "Afgesloten",
    "rejected": "Teruggestuurd",
    "reopened": "Heropend",
    "withdrawn": "Ingetrokken",
}
CHANGE_LABELS = {
    "assigned": "Toegewezen", "acknowledged": "Opgepakt", "feedback": "Terugkoppeling gegeven",
    "closed": "Afgesloten", "rejected": "Teruggestuurd", "reopened": "Heropend", "withdrawn": "Ingetrokken",
    "regie": "Regie bepaald",
}
DEADLINE_STATE_LABELS = {"open": "loopt", "warning": "bijna verlopen", "breached": "verlopen", "met": "gehaald"}
OPEN_STATUSES = frozenset({"assigned", "acknowledged", "feedback_given", "reopened"})
URGENCY_ORDER = {u.value: i for i, u in enumerate(Urgency)}
OUTCOME_CHOICES = [(code, OUTCOME_LABELS[Outcome(code)]) for code in OUTCOMES]
REJECT_REASONS = [
    ("niet_onze_doelgroep", "Niet onze doelgroep"),
    ("buiten_ons_gebied", "Buiten ons gebied"),
    ("elders_in_behandeling", "Al elders in behandeling"),
    ("andere_route_nodig", "Hoort bij een ander overleg"),
]
REOPEN_REASONS = [("nieuwe_zorgen", "Nieuwe zorgen"), ("afspraak_niet_nagekomen", "Afspraak niet nagekomen")]


__all__ = ["role_label"]  # the templates use it through this module


def route_label(route: str) -> str:
    try:
        return ROUTE_LABELS[Route(route)]
    except ValueError:
        return route


def urgency_label(urgency: str) -> str:
    try:
        return URGENCY_LABELS[Urgency(urgency)]
    except ValueError:
        return urgency


def category_label(code: str) -> str:
    category = CATEGORIES.get(code)
    return category.label if category else code


def clock_label(clock: str) -> str:
    try:
        return CLOCK_LABELS[Clock(clock)]
    except ValueError:
        return clock


def how_close(due_at: datetime, now: datetime) -> str:
    """'nog 3 dagen', 'nog 2 uur', '5 uur te laat' — how near a deadline is, in words."""
    seconds = (due_at - now).total_seconds()
    late = seconds < 0
    span = abs(seconds)
    if span >= 2 * 86400:
        amount = f"{int(span // 86400)} dagen"
    elif span >= 7200:
        amount = f"{int(span // 3600)} uur"
    elif span >= 120:
        amount = f"{int(span // 60)} minuten"
    else:
        amount = "minder dan 2 minuten"
    return f"{amount} te laat" if late else f"nog {amount}"


@dataclass(frozen=True)
class DeadlineView:
    clock: str
    label: str
    due_text: str
    closeness: str
    state: str
    state_label: str


def deadlines(signal: dict[str, Any], now: datetime) -> list[DeadlineView]:
    """Each deadline of a signal with its date, how close it is and its state."""
    shown = []
    for d in signal.get("deadlines", []):
        due = datetime.fromisoformat(d["due_at"])
        closeness = "" if d["state"] == "met" else how_close(due, now)
        shown.append(DeadlineView(clock=d["clock"], label=clock_label(d["clock"]), due_text=nl_datetime(due),
                                  closeness=closeness, state=d["state"],
                                  state_label=DEADLINE_STATE_LABELS.get(d["state"], d["state"])))
    return shown


def next_due(signal: dict[str, Any]) -> datetime | None:
    """The earliest deadline not yet met."""
    due = [datetime.fromisoformat(d["due_at"]) for d in signal.get("deadlines", []) if d["state"] != "met"]
    return min(due) if due else None


def most_urgent_first(signals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Open before done, then by urgency (U0 first), then by the nearest deadline, then oldest first."""
    far = datetime.max.replace(tzinfo=AMSTERDAM)

    def key(signal: dict[str, Any]) -> tuple[int, int, datetime, str]:
        return (0 if signal["status"] in OPEN_STATUSES else 1, URGENCY_ORDER.get(signal["urgency"], 9),
                next_due(signal) or far, signal.get("received_at", ""))

    return sorted(signals, key=key)


def filtered(signals: list[dict[str, Any]], *, status: str, urgency: str) -> list[dict[str, Any]]:
    """The signals a filter keeps: status 'open' (default), 'alle' or one status; urgency '' or one code."""
    kept = signals
    if status == "open":
        kept = [s for s in kept if s["status"] in OPEN_STATUSES]
    elif status in STATUS_LABELS:
        kept = [s for s in kept if s["status"] == status]
    if urgency in URGENCY_ORDER:
        kept = [s for s in kept if s["urgency"] == urgency]
    return kept


def history(signal: dict[str, Any], *, organisations: dict[str, str],
            bodies: dict[str, str] | None = None) -> list[dict[str, str]]:
    """The history of a signal in words: when, what, who (person and organisation)."""
    rows = []
    for h in signal.get("history", []):
        who = "Schakel" if h["actor"] == "schakel" else organisations.get(h["actor"], h["actor"])
        if h.get("person"):
            who = f"{h['person']} ({who})"
        extra = OUTCOME_LABELS.get(Outcome(h["outcome"])) if h.get("outcome") in OUTCOMES else h.get("reason", "")
        if h["type"] == "regie":
            extra = f"Regie bij {(bodies or {}).get(h.get('reason', ''), h.get('reason', ''))}"
        rows.append({"at": nl_datetime(datetime.fromisoformat(h["at"])),
                     "what": CHANGE_LABELS.get(h["type"], h["type"]), "who": who,
                     "extra": extra if h["type"] != "assigned" else ""})
    return rows


def actions(signal: dict[str, Any]) -> set[str]:
    """Which actions the page offers the viewer; the API decides again when one is used."""
    status = signal["status"]
    viewer = signal.get("viewer", {})
    offered: set[str] = set()
    if viewer.get("body"):
        if status == "assigned":
            offered |= {"oppakken", "terugsturen"}
        if status == "acknowledged":
            offered |= {"terugkoppeling", "terugsturen"}
        if status in ("feedback_given", "reopened"):
            offered |= {"terugkoppeling", "afsluiten"}
        if status == "closed":
            offered.add("heropenen")
        if signal.get("match") and viewer.get("role") == "coordinator" and status in OPEN_STATUSES:
            offered.add("regie")
    return offered
