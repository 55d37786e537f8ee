"""The werkbak's pure parts: order and filters of Mijn signalen, deadlines in words, forms as API bodies, the
return path after login, the directory's candidates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.datastructures import FormData

from services.werkbak import views
from services.werkbak.auth import SessionPerson, csrf_ok, safe_next
from services.werkbak.directory import Directory
from services.werkbak.forms import FormErrors, action_event, signal_payload
from shared.events import Contact, LifecycleChange, Route, SignalLifecycleChanged, Urgency

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def signal(n: int, *, urgency: str = "U2", status: str = "assigned", due_in_h: float | None = 24.0,
           met: bool = False) -> dict[str, Any]:
    deadlines = [] if due_in_h is None else [{"clock": "acknowledge", "due_at": (NOW + timedelta(hours=due_in_h))
                                              .isoformat(), "state": "met" if met else "open"}]
    return {"signal_id": f"s-{n}", "reference": f"SK-{n}", "urgency": urgency, "status": status,
            "deadlines": deadlines, "received_at": f"2026-11-{n:02d}T10:00:00+00:00"}


def test_most_urgent_first_open_before_done_then_urgency_then_nearest_deadline() -> None:
    ordered = views.most_urgent_first([
        signal(1, urgency="U3", due_in_h=1), signal(2, urgency="U1", due_in_h=48), signal(3, urgency="U1", due_in_h=2),
        signal(4, urgency="U0", status="closed"), signal(5, urgency="U2", due_in_h=None),
    ])
    assert [s["signal_id"] for s in ordered] == ["s-3", "s-2", "s-5", "s-1", "s-4"]


def test_filters_keep_open_by_default_and_one_status_or_urgency_when_asked() -> None:
    signals = [signal(1), signal(2, status="closed"), signal(3, urgency="U1", status="acknowledged")]
    assert [s["signal_id"] for s in views.filtered(signals, status="open", urgency="")] == ["s-1", "s-3"]
    assert [s["signal_id"] for s in views.filtered(signals, status="alle", urgency="")] == ["s-1", "s-2", "s-3"]
    assert [s["signal_id"] for s in views.filtered(signals, status="closed", urgency="")] == ["s-2"]
    assert [s["signal_id"] for s in views.filtered(signals, status="alle", urgency="U1")] == ["s-3"]
    assert len(views.filtered(signals, status="<script>", urgency="nonsense")) == 3


@pytest.mark.parametrize(("hours", "text"), [
    (50, "nog 2 dagen"), (5, "nog 5 uur"), (0.5, "nog 30 minuten"), (0.01, "nog minder dan 2 minuten"),
    (-3, "3 uur te laat"), (-72, "3 dagen te laat"),
])
def test_how_close_a_deadline_is_in_words(hours: float, text: str) -> None:
    assert views.how_close(NOW + timedelta(hours=hours), NOW) == text


def test_deadlines_say_when_and_how_close_and_met_ones_say_only_met() -> None:
    [open_one] = views.deadlines(signal(1, due_in_h=50), NOW)
    assert (open_one.label, open_one.closeness, open_one.state_label) == ("oppakken", "nog 2 dagen", "loopt")
    assert open_one.due_text == "donderdag 3 december 2026 om 15:00"
    [met] = views.deadlines(signal(1, met=True), NOW)
    assert (met.closeness, met.state_label) == ("", "gehaald")


def test_actions_follow_the_status_and_only_for_the_body() -> None:
    body = {"viewer": {"body": True, "reporter": False}}
    assert views.actions({**signal(1), **body}) == {"oppakken", "terugsturen"}
    assert views.actions({**signal(1, status="acknowledged"), **body}) == {"terugkoppeling", "terugsturen"}
    assert views.actions({**signal(1, status="feedback_given"), **body}) == {"terugkoppeling", "afsluiten"}
    assert views.actions({**signal(1, status="closed"), **body}) == {"heropenen"}
    assert views.actions({**signal(1), "viewer": {"body": False, "reporter": True}}) == set()


def test_action_forms_become_lifecycle_events_or_a_dutch_reason() -> None:
    assert action_event("oppakken", FormData()) == {"type": "acknowledged"}
    assert action_event("terugkoppeling", FormData({"bericht": "  Besproken.  "})) == {
        "type": "feedback", "message": "Besproken."}
    assert action_event("terugkoppeling", FormData({"bericht": " "})) == "Schrijf een bericht voor de melder."
    assert action_event("afsluiten", FormData({"uitkomst": "hulp_ingezet"})) == {
        "type": "closed", "outcome": "hulp_ingezet"}
    assert action_event("afsluiten", FormData({"uitkomst": "weg"})) == "Kies een uitkomst."
    assert action_event("terugsturen", FormData()) == "Kies een reden."
    assert action_event("heropenen", FormData({"reden": "nieuwe_zorgen"})) == {
        "type": "reopened", "reason": "nieuwe_zorgen"}


def test_the_new_signal_form_becomes_intakes_body_and_never_shows_the_bsn_again() -> None:
    form = FormData([("category", "PEST"), ("subject.bsn", "111222333"), ("subject.school_brin", "12ab"),
                     ("subject.pupil_ref", ""), ("flags", "SIBLING_LINK"), ("flags", "GROUP_LINK"),
                     ("parents_informed", "ja"), ("summary", "Wordt gepest.")])
    payload, values = signal_payload(form)
    assert payload == {"category": "PEST", "subject": {"bsn": "111222333", "school_brin": "12AB"},
                       "legal_basis": "meldrecht", "parents_informed": True, "summary": "Wordt gepest.",
                       "flags": ["SIBLING_LINK", "GROUP_LINK"]}
    assert "subject.bsn" not in values and "111222333" not in str(values)
    errors = FormErrors.of({"errors": [{"field": "subject", "message": "Geef een BSN"},
                                       {"field": "postcode_area", "message": "Vier cijfers"},
                                       {"field": "reporter.email", "message": "?"}]})
    assert errors.get("subject.bsn") == "Geef een BSN" and errors.get("postcode_area") == "Vier cijfers"
    assert errors.general == "?"


@pytest.mark.parametrize(("given", "kept"), [
    ("/signalen/abc", "/signalen/abc"), ("https://evil.example/", "/signalen"), ("//evil.example", "/signalen"),
    ("/\\evil.example", "/signalen"), (None, "/signalen"), ("signalen", "/signalen"),
])
def test_after_login_only_a_path_on_this_site(given: object, kept: str) -> None:
    assert safe_next(given) == kept


def test_csrf_token_must_be_this_sessions() -> None:
    person = SessionPerson(email="a@b.example", name="A", organisation="o", access_token="t", csrf="abc123")
    assert csrf_ok(person, "abc123")
    assert not csrf_ok(person, "abc124") and not csrf_ok(person, None) and not csrf_ok(person, "")


def test_the_directory_finds_candidates_by_body_and_by_reporter_and_follows_hand_offs() -> None:
    directory = Directory("127.0.0.1:1")

    def event(signal_id: str, body: str, reporter: str) -> SignalLifecycleChanged:
        return SignalLifecycleChanged(
            signal_id=signal_id, reference="SK-1", change=LifecycleChange.ASSIGNED, status="assigned",
            actor_partner_id="schakel", route=Route.ZAT, body_id=body, body_name=body, urgency=Urgency.U2,
            reporter=Contact(name="R", email=reporter), reporter_partner_id="obs-de-linde", at=NOW, received_at=NOW)

    directory.take(event("s-1", "zat-12ab", "Juf.Jansen@delinde.example"))
    directory.take(event("s-2", "oov", "wijkagent@politie.example"))
    assert directory.assigned_to({"zat-12ab"}) == ["s-1"]
    assert directory.reported_by("obs-de-linde", "juf.jansen@delinde.example") == ["s-1"]
    assert directory.reported_by("cbs-het-anker", "juf.jansen@delinde.example") == []
    directory.take(event("s-1", "wijkteam-centrum", "juf.jansen@delinde.example"))  # handed off
    assert directory.assigned_to({"zat-12ab"}) == []


class _Request:
    """Just the session of a request (what Auth.person reads and writes)."""

    def __init__(self, session: dict[str, Any]) -> None:
        self.session = session


def test_a_session_ends_when_idle_or_when_its_access_token_expires() -> None:
    import time

    from services.werkbak.auth import Auth
    from services.werkbak.settings import WerkbakSettings

    auth = Auth(WerkbakSettings(oidc_issuer="http://127.0.0.1:9", werkbak_idle_timeout_s=900))
    now = time.time()
    live = {"email": "ib@delinde.example", "name": "IB", "organisation": "obs-de-linde", "access_token": "t",
            "csrf": "c", "expires_at": now + 3600, "last_seen": now - 60}
    request = _Request(dict(live))
    person = auth.person(request)  # type: ignore[arg-type]
    assert isinstance(person, SessionPerson) and person.email == "ib@delinde.example"
    assert request.session["last_seen"] >= now  # use keeps it alive
    idle = _Request({**live, "last_seen": now - 901})
    assert auth.person(idle) == "idle" and idle.session == {}  # type: ignore[arg-type]
    expired = _Request({**live, "expires_at": now + 10})
    assert auth.person(expired) == "expired" and expired.session == {}  # type: ignore[arg-type]
    assert auth.person(_Request({})) is None  # type: ignore[arg-type]


def test_cookies_are_secure_everywhere_but_plain_http_on_loopback() -> None:
    from services.werkbak.settings import WerkbakSettings

    assert not WerkbakSettings(public_base_url="http://127.0.0.1:8005").secure_cookies
    assert WerkbakSettings(public_base_url="https://werkbak.lindendam.example").secure_cookies
    assert WerkbakSettings(public_base_url="http://werkbak.lindendam.example").secure_cookies
    with pytest.raises(ValueError, match="SCHAKEL_WERKBAK_SESSION_SECRET"):
        WerkbakSettings(environment="production", oidc_issuer="https://idp.example",
                        pseudonym_secret="p" * 40, sealing_key="s" * 40, inbound_signing_secret="i" * 40,
                        master_key="m" * 40, oidc_client_secret="c" * 40)
