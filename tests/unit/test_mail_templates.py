"""Notification e-mails: only whitelisted facts reach them, and both parts tell the same story."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from email import message_from_bytes, policy

import pytest
from pydantic import ValidationError

from schakel.mail_preview import preview
from services.notify.rendering import (
    KINDS,
    Deadline,
    DigestItem,
    MailContext,
    RenderedMail,
    build_message,
    message_id_for,
    nl_datetime,
    render,
    thread_id_for,
)

CHILD_NAME = "Canarykind Jansen"
BSN = "111222333"
SUMMARY = "Canary-samenvatting: kind komt met blauwe plekken op school"
CATEGORY = "Vermoeden huiselijk geweld / kindermishandeling"
PERSONAL = {
    "child_name": CHILD_NAME,
    "name": CHILD_NAME,
    "initials": "C.J.",
    "birth_date": "2016-04-01",
    "bsn": BSN,
    "category": "HGKM",
    "category_text": CATEGORY,
    "summary": SUMMARY,
    "free_text": SUMMARY,
    "class_name": "groep 5b",
    "school_class": "groep 5b",
    "message": SUMMARY,
}
FORBIDDEN_IN_OUTPUT = (CHILD_NAME, "Canarykind", "Jansen", BSN, SUMMARY, "Canary-samenvatting", CATEGORY,
                       "HGKM", "groep 5b", "2016-04-01", "C.J.")

# Canary values for every string the templates may legitimately reach.
BODY_CANARY = "Canarybody Overleg Noord"
URL = "https://canary.schakel.example/signalen/canary-0001"
ITEM_URL = "https://canary.schakel.example/signalen/canary-0002"
DEADLINES = (
    Deadline(clock="acknowledge", due_at=datetime(2026, 3, 3, 16, 0, tzinfo=UTC)),
    Deadline(clock="feedback", due_at=datetime(2026, 3, 31, 15, 5, tzinfo=UTC)),
    Deadline(clock="close", due_at=datetime(2026, 7, 1, 8, 30, tzinfo=UTC)),
)


def canary_fields(kind: str) -> dict[str, object]:
    """Every allowed field filled, so every branch of every template is reached."""
    return {
        "recipient_role": "coordinator",
        "reference": "SK-2026-000123",
        "route": "zat",
        "body_name": BODY_CANARY,
        "urgency": "U0",
        "deadlines": DEADLINES,
        "outcome_code": "veilig_thuis",
        "signal_url": URL,
        "escalation_step": 3,
        "clock": "feedback",
        "items": (DigestItem(reference="SK-2026-000124", route="oov", urgency="U1", signal_url=ITEM_URL),),
    }


def canary_context(kind: str) -> MailContext:
    """A valid context with canary values everywhere."""
    return MailContext(**canary_fields(kind))  # type: ignore[arg-type]


def everything(mail: RenderedMail) -> str:
    """Subject, text and HTML (unescaped) in one string."""
    return "\n".join((mail.subject, mail.text, html.unescape(mail.html)))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("field", sorted(PERSONAL))
def test_a_context_with_personal_data_cannot_be_built(kind: str, field: str) -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        MailContext(**canary_fields(kind), **{field: PERSONAL[field]})  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["child_name", "bsn", "summary"])
def test_a_deadline_or_digest_item_with_personal_data_cannot_be_built(field: str) -> None:
    with pytest.raises(ValidationError):
        Deadline(clock="close", due_at=DEADLINES[0].due_at,
                 **{field: PERSONAL[field]})  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        DigestItem(reference="SK-2026-000124", route="oov", urgency="U1", signal_url=ITEM_URL,
                   **{field: PERSONAL[field]})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("reference", CHILD_NAME),
        ("reference", BSN),
        ("signal_url", f"https://schakel.example/s?bsn={BSN}"),
        ("signal_url", "https://schakel.example/s#Canarykind"),
        ("signal_url", "javascript:alert(1)"),
        ("body_name", "Overleg\nBcc: iemand@example.org"),
        ("recipient_role", CHILD_NAME),
        ("urgency", "U9"),
        ("route", "school"),
        ("outcome_code", SUMMARY),
    ],
)
def test_whitelisted_fields_refuse_values_that_could_smuggle_data(field: str, value: str) -> None:
    with pytest.raises(ValidationError):
        MailContext(**{**canary_fields("assigned"), field: value})  # type: ignore[arg-type]


def test_the_context_is_frozen() -> None:
    context = canary_context("assigned")
    with pytest.raises(ValidationError):
        context.body_name = CHILD_NAME  # type: ignore[misc]


def test_a_naive_deadline_is_refused() -> None:
    with pytest.raises(ValidationError):
        Deadline(clock="close", due_at=datetime(2026, 3, 3, 16, 0))


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders_without_any_canary_personal_data(kind: str) -> None:
    mail = render(kind, canary_context(kind))
    output = everything(mail)
    for forbidden in FORBIDDEN_IN_OUTPUT:
        assert forbidden not in output, f"{forbidden!r} leaked into the {kind} mail"
    assert mail.text.strip() and "<html" in mail.html and mail.subject.startswith("[Schakel] ")


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "digest"])
def test_text_and_html_parts_carry_the_same_facts(kind: str) -> None:
    mail = render(kind, canary_context(kind))
    facts = [
        "SK-2026-000123",
        "ZAT (zorg- en adviesteam)",
        BODY_CANARY,
        "U0 – acuut",
        URL,
        "Overgedragen aan Veilig Thuis",
        *(nl_datetime(d.due_at) for d in DEADLINES),
        "112",
    ]
    html_text = html.unescape(mail.html)
    for fact in facts:
        assert fact in mail.text, f"{fact!r} missing from the text part of {kind}"
        assert fact in html_text, f"{fact!r} missing from the HTML part of {kind}"
    assert f'href="{URL}"' in mail.html


def test_the_digest_lists_each_item_in_both_parts() -> None:
    mail = render("digest", canary_context("digest"))
    for part in (mail.text, html.unescape(mail.html)):
        for fact in ("SK-2026-000124", "OOV (openbare orde en veiligheid)", "U1 – hoog", ITEM_URL):
            assert fact in part
    assert mail.subject == "[Schakel] Overzicht · 1 openstaand signaal"


def test_deadlines_are_shown_in_amsterdam_time_in_dutch() -> None:
    assert nl_datetime(datetime(2026, 3, 3, 16, 0, tzinfo=UTC)) == "dinsdag 3 maart 2026 om 17:00"
    assert nl_datetime(datetime(2026, 7, 1, 8, 30, tzinfo=UTC)) == "woensdag 1 juli 2026 om 10:30"


@pytest.mark.parametrize(
    ("kind", "title"),
    [
        ("receipt", "Signaal ontvangen"),
        ("assigned", "Nieuw signaal toegewezen"),
        ("feedback", "Terugkoppeling gegeven"),
        ("closed", "Signaal afgesloten"),
        ("warning", "Termijn terugkoppeling aan de melder verloopt bijna"),
        ("breach", "Termijn terugkoppeling aan de melder verstreken"),
        ("escalation", "Escalatie stap 3: termijn terugkoppeling aan de melder verstreken"),
        ("match", "Match: meerdere partners signaleren"),
    ],
)
def test_the_subject_reads_reference_route_urgency_then_what_happened(kind: str, title: str) -> None:
    context = MailContext(**{**canary_fields(kind), "urgency": "U2"})  # type: ignore[arg-type]
    assert render(kind, context).subject == f"[Schakel] SK-2026-000123 · ZAT · U2 · {title}"


def test_the_feedback_mail_points_to_the_page_and_not_the_feedback_text() -> None:
    mail = render("feedback", canary_context("feedback"))
    assert "terugkoppeling gegeven" in mail.text
    assert "na inloggen" in mail.text and URL in mail.text


def test_html_escapes_what_it_shows() -> None:
    fields = {**canary_fields("assigned"), "body_name": "Wijkteam Noord & Oost"}
    context = MailContext(**fields)  # type: ignore[arg-type]
    mail = render("assigned", context)
    assert "Noord &amp; Oost" in mail.html and "Noord & Oost" in mail.text


def test_a_kind_missing_a_fact_it_needs_is_refused() -> None:
    with pytest.raises(ValueError, match="clock"):
        render("breach", MailContext(**{**canary_fields("breach"), "clock": None}))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown mail kind"):
        render("newsletter", canary_context("assigned"))


def test_message_ids_are_stable_per_event_and_recipient() -> None:
    first = message_id_for(event_id="evt-1", recipient="ib@school.example", domain="schakel.example")
    assert first == message_id_for(event_id="evt-1", recipient="IB@school.example ", domain="schakel.example")
    assert first != message_id_for(event_id="evt-1", recipient="dir@school.example", domain="schakel.example")
    assert first != message_id_for(event_id="evt-2", recipient="ib@school.example", domain="schakel.example")
    assert re.fullmatch(r"<[0-9a-f-]{36}@schakel\.example>", first)
    assert "ib@school" not in first
    thread = thread_id_for(signal_id="sig-1", domain="schakel.example")
    assert thread == thread_id_for(signal_id="sig-1", domain="schakel.example") != first


def test_a_built_message_threads_on_the_signal_and_has_both_parts() -> None:
    mail = render("assigned", canary_context("assigned"))
    thread = thread_id_for(signal_id="sig-1", domain="schakel.example")
    message_id = message_id_for(event_id="evt-1", recipient="ib@school.example", domain="schakel.example")
    message = build_message(rendered=mail, sender="Schakel <noreply@schakel.example>",
                            recipient="ib@school.example", message_id=message_id,
                            in_reply_to=thread, references=(thread,))
    parsed = message_from_bytes(message.as_bytes(), policy=policy.default)
    assert parsed["Subject"] == mail.subject
    assert parsed["Message-ID"] == message_id
    assert parsed["In-Reply-To"] == thread and parsed["References"] == thread
    assert parsed["Date"] and parsed.get_content_type() == "multipart/alternative"
    text, body = (part.get_content() for part in parsed.iter_parts())
    assert text == mail.text and body == mail.html


def test_preview_renders_every_kind_with_sample_data() -> None:
    for kind in KINDS:
        printed = preview(kind)
        assert printed.startswith("Onderwerp: [Schakel] ") and "text/html" in printed
