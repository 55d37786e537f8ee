"""Render notification e-mails from a whitelisted, content-free context (Dutch text)."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template, select_autoescape
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from shared.events import Clock, Route, Urgency
from shared.taxonomy import Outcome

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
AMSTERDAM = ZoneInfo("Europe/Amsterdam")
_NAMESPACE = uuid.UUID("0b7f6a8e-3c1d-4e52-9f0a-6d2b8c4e1a37")

MailKind = Literal[
    "receipt", "assigned", "feedback", "closed", "warning", "breach", "escalation", "match", "digest"
]
KINDS: tuple[str, ...] = MailKind.__args__  # type: ignore[attr-defined]


ROUTE_LABELS = {
    Route.ZAT: "ZAT (zorg- en adviesteam)",
    Route.WIJKTEAM: "Sociaal wijkteam",
    Route.OOV: "OOV (openbare orde en veiligheid)",
    Route.MELDCODE: "Meldcode huiselijk geweld en kindermishandeling",
    Route.COORDINATOR: "Jeugd- en veiligheidscoördinator",
}
ROUTE_SHORT = {
    Route.ZAT: "ZAT", Route.WIJKTEAM: "Wijkteam", Route.OOV: "OOV",
    Route.MELDCODE: "Meldcode", Route.COORDINATOR: "Coördinator",
}
URGENCY_LABELS = {
    Urgency.U0: "U0 – acuut", Urgency.U1: "U1 – hoog", Urgency.U2: "U2 – normaal",
    Urgency.U3: "U3 – laag / monitoren",
}
CLOCK_LABELS = {
    Clock.ACKNOWLEDGE: "oppakken",
    Clock.FEEDBACK: "terugkoppeling aan de melder",
    Clock.CLOSE: "afsluiten of evalueren",
}
OUTCOME_LABELS = {
    Outcome.HULP_INGEZET: "Hulp ingezet",
    Outcome.DOORVERWEZEN: "Doorverwezen",
    Outcome.VEILIG_THUIS: "Overgedragen aan Veilig Thuis",
    Outcome.GEEN_ACTIE_NODIG: "Geen actie nodig",
    Outcome.ONGEGROND: "Ongegrond",
}
ROLE_LABELS = {
    "reporter": "melder",
    "ib": "intern begeleider",
    "directeur": "directeur",
    "aandachtsfunctionaris": "aandachtsfunctionaris",
    "wijkteam_intake": "intake sociaal wijkteam",
    "coordinator": "jeugd- en veiligheidscoördinator",
    "wijkagent": "wijkagent / schoolagent",
    "leerplicht": "leerplichtambtenaar",
    "handler": "behandelaar",
    "team_lead": "teamleider",
}
_DAYS = ("maandag", "dinsdag", "woensdag", "donderdag", "vrijdag", "zaterdag", "zondag")
_MONTHS = ("januari", "februari", "maart", "april", "mei", "juni", "juli", "augustus",
           "september", "oktober", "november", "december")


def _check_url(value: str) -> str:
    """Accept only a plain http(s) link: no credentials, query or fragment that could carry data."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("signal_url must be an absolute http(s) URL")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError("signal_url may not carry credentials, a query or a fragment")
    if any(ch.isspace() for ch in value):
        raise ValueError("signal_url may not contain whitespace")
    return value


Reference = Annotated[str, Field(pattern=r"^[A-Z]{2,5}-\d{4}-\d{3,9}$")]
SignalUrl = Annotated[str, Field(max_length=500), AfterValidator(_check_url)]
BodyName = Annotated[str, Field(min_length=1, max_length=120, pattern=r"^[^\x00-\x1f\x7f<>]+$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Deadline(_Strict):
    """One SLA clock and the instant it falls due."""

    clock: Clock
    due_at: AwareDatetime


class DigestItem(_Strict):
    """One open signal in a digest."""

    reference: Reference
    route: Route
    urgency: Urgency
    signal_url: SignalUrl


class MailContext(_Strict):
    """Everything a template may see; deliberately nothing about the child."""

    recipient_role: Annotated[str, Field(pattern=r"^[a-z_]{2,40}$")]
    reference: Reference | None = None
    route: Route | None = None
    body_name: BodyName | None = None
    urgency: Urgency | None = None
    deadlines: tuple[Deadline, ...] = ()
    outcome_code: Outcome | None = None
    signal_url: SignalUrl | None = None
    escalation_step: Annotated[int, Field(ge=1, le=9)] | None = None
    clock: Clock | None = None
    items: tuple[DigestItem, ...] = ()

    @property
    def clock_deadline(self) -> Deadline | None:
        """The deadline of the clock this mail is about, if any."""
        return next((d for d in self.deadlines if d.clock == self.clock), None)


_SIGNAL = ("reference", "route", "urgency", "signal_url")
REQUIRED: dict[str, tuple[str, ...]] = {
    "receipt": (*_SIGNAL, "body_name"),
    "assigned": (*_SIGNAL, "body_name"),
    "feedback": _SIGNAL,
    "closed": (*_SIGNAL, "outcome_code"),
    "warning": (*_SIGNAL, "clock", "clock_deadline"),
    "breach": (*_SIGNAL, "clock", "clock_deadline"),
    "escalation": (*_SIGNAL, "clock", "clock_deadline", "escalation_step"),
    "match": _SIGNAL,
    "digest": ("items",),
}
_TITLES = {
    "receipt": "Signaal ontvangen",
    "assigned": "Nieuw signaal toegewezen",
    "feedback": "Terugkoppeling gegeven",
    "closed": "Signaal afgesloten",
    "warning": "Termijn {clock} verloopt bijna",
    "breach": "Termijn {clock} verstreken",
    "escalation": "Escalatie stap {step}: termijn {clock} verstreken",
    "match": "Match: meerdere partners signaleren",
}


@dataclass(frozen=True)
class RenderedMail:
    """A rendered e-mail: subject, plain-text part and HTML part."""

    kind: str
    subject: str
    text: str
    html: str


def nl_datetime(value: datetime) -> str:
    """Format an aware instant in Dutch, in Europe/Amsterdam: 'dinsdag 3 maart 2026 om 14:05'."""
    if value.tzinfo is None:
        raise ValueError("naive datetime")
    local = value.astimezone(AMSTERDAM)
    return (f"{_DAYS[local.weekday()]} {local.day} {_MONTHS[local.month - 1]} {local.year}"
            f" om {local:%H:%M}")


def role_label(role: str) -> str:
    """Dutch label of a recipient role (the code itself when unknown)."""
    return ROLE_LABELS.get(role, role.replace("_", " "))


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        auto_reload=False,  # compiled once: no stat() of the template file on every mail
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        route_label=ROUTE_LABELS.__getitem__, route_short=ROUTE_SHORT.__getitem__,
        urgency_label=URGENCY_LABELS.__getitem__, clock_label=CLOCK_LABELS.__getitem__,
        outcome_label=OUTCOME_LABELS.__getitem__, role_label=role_label, nl_datetime=nl_datetime,
    )
    return env


_ENV = _environment()


@functools.cache
def _template(name: str) -> Template:
    """A compiled template, kept without jinja's own cache (a lock and an LRU step on every call)."""
    return _ENV.get_template(name)


def subject_for(kind: str, context: MailContext) -> str:
    """The subject line: '[Schakel] <reference> · <route> · <urgency> · <what happened>'."""
    if kind == "digest":
        count = len(context.items)
        noun = "openstaand signaal" if count == 1 else "openstaande signalen"
        return f"[Schakel] Overzicht · {count} {noun}"
    assert context.route is not None and context.urgency is not None
    title = _TITLES[kind].format(
        clock=CLOCK_LABELS[context.clock] if context.clock else "", step=context.escalation_step
    )
    return f"[Schakel] {context.reference} · {ROUTE_SHORT[context.route]} · {context.urgency} · {title}"


def render(kind: str, context: MailContext) -> RenderedMail:
    """Render one kind of mail; fails when the context lacks a fact that kind needs."""
    if kind not in REQUIRED:
        raise ValueError(f"unknown mail kind {kind!r}; known: {', '.join(KINDS)}")
    if not isinstance(context, MailContext):
        raise TypeError("render() takes a MailContext, nothing else")
    missing = [name for name in REQUIRED[kind] if getattr(context, name) in (None, ())]
    if missing:
        raise ValueError(f"a {kind} mail needs {', '.join(missing)}")
    variables = {name: getattr(context, name) for name in MailContext.model_fields}
    variables["clock_deadline"] = context.clock_deadline
    variables["subject"] = subject = subject_for(kind, context)
    text = _template(f"{kind}.txt").render(variables)
    html = _template(f"{kind}.html").render(variables)
    return RenderedMail(kind=kind, subject=subject, text=text, html=html)


def _check_domain(domain: str) -> str:
    if not domain or any(ch in domain for ch in "<>@ \t\r\n"):
        raise ValueError(f"not a mail domain: {domain!r}")
    return domain.lower()


def message_id_for(*, event_id: str, recipient: str, domain: str) -> str:
    """A Message-ID that is the same every time one event is mailed to one recipient."""
    token = uuid.uuid5(_NAMESPACE, f"message|{event_id}|{recipient.strip().lower()}")
    return f"<{token}@{_check_domain(domain)}>"


def thread_id_for(*, signal_id: str, domain: str) -> str:
    """The root Message-ID that all mail about one signal replies to, so it threads."""
    token = uuid.uuid5(_NAMESPACE, f"thread|{signal_id}")
    return f"<signal-{token}@{_check_domain(domain)}>"


def refuse_line_breaks(*values: str) -> None:
    """Header values never carry a line break (no header injection)."""
    if any("\r" in value or "\n" in value for value in values):
        raise ValueError("header values may not contain line breaks")


def build_message(
    *,
    rendered: RenderedMail,
    sender: str,
    recipient: str,
    message_id: str,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    date: datetime | None = None,
) -> EmailMessage:
    """Assemble a multipart/alternative message (text first, then HTML) with threading headers."""
    refuse_line_breaks(sender, recipient, message_id, in_reply_to or "", *references)
    message = EmailMessage()
    message["Subject"] = rendered.subject
    message["From"] = sender
    message["To"] = recipient
    message["Date"] = format_datetime(date or datetime.now(AMSTERDAM))
    message["Message-ID"] = message_id
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
    if references:
        message["References"] = " ".join(references)
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    message["X-Schakel-Kind"] = rendered.kind
    message.set_content(rendered.text, subtype="plain", charset="utf-8")
    message.add_alternative(rendered.html, subtype="html", charset="utf-8")
    return message
