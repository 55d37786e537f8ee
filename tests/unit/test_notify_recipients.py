"""Who gets which e-mail, by role, from the example municipality (domain.md: roles and e-mail)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.notify.recipients import Recipient, plan, prefers_digest
from shared.events import (
    Clock,
    Contact,
    LifecycleChange,
    Route,
    SignalAssigned,
    SignalLifecycleChanged,
    SignalsMatched,
    SlaBreached,
    SlaWarned,
    Urgency,
)
from shared.municipality import load_municipality
from shared.settings import REPO_ROOT

M = load_municipality(REPO_ROOT / "examples" / "gemeente-voorbeeld.yaml")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
REPORTER = "leerkracht@delinde.example"
JVC = "jvc@lindendam.example"


def assigned(**overrides: object) -> SignalAssigned:
    fields: dict[str, object] = {
        "signal_id": "s1", "reference": "SK-2026-000001", "category": "KLAS", "urgency": Urgency.U2, "route": Route.ZAT,
        "body_id": "zat-12ab", "body_name": "ZAT OBS De Linde", "rule_id": "zat", "rule_description": "zat",
        "partner_id": "obs-de-linde", "partner_kind": "school", "school_brin": "12AB",
        "reporter": Contact(name="Leerkracht", email=REPORTER), "received_at": T0, "assigned_at": T0,
    }
    return SignalAssigned(**{**fields, **overrides})  # type: ignore[arg-type]


def mails(event: object) -> set[tuple[str, str, str]]:
    return {(m.kind, m.recipient.role, m.recipient.email) for m in plan(event, M)}  # type: ignore[arg-type]


def test_a_u2_zat_signal_goes_to_the_zat_and_the_reporter_gets_a_receipt() -> None:
    assert mails(assigned()) == {
        ("assigned", "intern_begeleider", "ib@delinde.example"),
        ("assigned", "schoolmaatschappelijk_werk", "smw@delinde.example"),
        ("receipt", "reporter", REPORTER),
    }


def test_a_u1_signal_from_the_school_also_reaches_its_directeur() -> None:
    assert ("assigned", "directeur", "directie@delinde.example") in mails(assigned(urgency=Urgency.U1))


def test_a_u1_signal_about_a_school_reported_by_the_police_does_not_reach_the_directeur() -> None:
    event = assigned(urgency=Urgency.U1, partner_id="politie-basisteam", partner_kind="police")
    assert "directeur" not in {role for _, role, _ in mails(event)}


def test_a_u0_signal_reaches_the_coordinator_and_the_directeur() -> None:
    event = assigned(urgency=Urgency.U0, category="ACUUT", route=Route.COORDINATOR, body_id="coordinator",
                     body_name="JVC")
    assert mails(event) == {
        ("assigned", "coordinator", JVC),
        ("assigned", "directeur", "directie@delinde.example"),
        ("receipt", "reporter", REPORTER),
    }


def test_hgkm_reaches_the_aandachtsfunctionaris_and_the_coordinator() -> None:
    event = assigned(category="HGKM", urgency=Urgency.U1, route=Route.MELDCODE, body_id="meldcode-12ab",
                     body_name="AF", inform_body_ids=["coordinator"])
    assert mails(event) == {
        ("assigned", "aandachtsfunctionaris", "aandacht@delinde.example"),
        ("assigned", "coordinator", JVC),
        ("assigned", "directeur", "directie@delinde.example"),
        ("receipt", "reporter", REPORTER),
    }


def test_verzuim_reaches_leerplicht() -> None:
    assert ("assigned", "leerplicht", "leerplicht@lindendam.example") in mails(assigned(category="VERZ"))
    assert "leerplicht" not in {role for _, role, _ in mails(assigned(category="PEST"))}


def test_an_oov_signal_reaches_the_coordinator_and_the_police_only_after_triage() -> None:
    event = assigned(category="OVERL", route=Route.OOV, body_id="oov", body_name="OOV")
    assert mails(event) == {("assigned", "coordinator", JVC), ("receipt", "reporter", REPORTER)}
    acknowledged = SignalLifecycleChanged(
        signal_id="s1", reference="SK-2026-000001", change=LifecycleChange.ACKNOWLEDGED, status="acknowledged",
        actor_partner_id="gemeente", route=Route.OOV, body_id="oov", body_name="OOV", urgency=Urgency.U2,
        reporter=Contact(name="L", email=REPORTER), reporter_partner_id="obs-de-linde", at=T0)
    assert mails(acknowledged) == {("assigned", "wijkagent", "wijkagent.centrum@politie.example")}


def test_a_hand_off_mails_the_new_body_but_no_second_receipt() -> None:
    event = assigned(attempt=2, route=Route.WIJKTEAM, body_id="wijkteam-centrum", body_name="Wijkteam Centrum",
                     category="VERZ", urgency=Urgency.U1)
    assert mails(event) == {("assigned", "wijkteam_intake", "intake.centrum@wijkteam.example")}


def test_informed_bodies_hear_of_it_too() -> None:
    event = assigned(inform_body_ids=["wijkteam-oost"])
    assert ("assigned", "wijkteam_intake", "intake.oost@wijkteam.example") in mails(event)


@pytest.mark.parametrize(("change", "kind"), [(LifecycleChange.FEEDBACK, "feedback"),
                                              (LifecycleChange.CLOSED, "closed")])
def test_the_reporter_hears_of_feedback_and_closure_and_nobody_else(change: LifecycleChange, kind: str) -> None:
    event = SignalLifecycleChanged(
        signal_id="s1", reference="SK-2026-000001", change=change, status=str(change), actor_partner_id="obs-de-linde",
        route=Route.ZAT, body_id="zat-12ab", body_name="ZAT", urgency=Urgency.U2, outcome="hulp_ingezet",
        reporter=Contact(name="L", email=REPORTER), reporter_partner_id="obs-de-linde", at=T0)
    assert mails(event) == {(kind, "reporter", REPORTER)}


@pytest.mark.parametrize("change", [LifecycleChange.ACKNOWLEDGED, LifecycleChange.REJECTED,
                                    LifecycleChange.REOPENED, LifecycleChange.WITHDRAWN])
def test_other_lifecycle_changes_of_a_zat_signal_mail_nobody(change: LifecycleChange) -> None:
    event = SignalLifecycleChanged(
        signal_id="s1", reference="SK-2026-000001", change=change, status=str(change), actor_partner_id="obs-de-linde",
        route=Route.ZAT, body_id="zat-12ab", body_name="ZAT", urgency=Urgency.U2,
        reporter=Contact(name="L", email=REPORTER), reporter_partner_id="obs-de-linde", at=T0)
    assert mails(event) == set()


def sla(model: type, **extra: object) -> object:
    fields: dict[str, object] = {
        "signal_id": "s1", "reference": "SK-2026-000001", "clock": Clock.ACKNOWLEDGE, "due_at": T0, "route": Route.ZAT,
        "body_id": "zat-12ab", "body_name": "ZAT", "urgency": Urgency.U2, "reporter_partner_id": "obs-de-linde",
        "at": T0}
    return model(**{**fields, **extra})


def test_warnings_and_breaches_climb_the_ladder() -> None:
    zat = {("intern_begeleider", "ib@delinde.example"), ("schoolmaatschappelijk_werk", "smw@delinde.example")}
    assert mails(sla(SlaWarned)) == {("warning", r, e) for r, e in zat}
    assert mails(sla(SlaBreached, step="handler")) == {("breach", r, e) for r, e in zat}
    assert mails(sla(SlaBreached, step="team_lead", step_index=2)) == {
        ("escalation", "directeur", "directie@delinde.example")}
    assert mails(sla(SlaBreached, step="coordinator", step_index=3)) == {("escalation", "coordinator", JVC)}


def test_a_match_reaches_the_coordinator_and_every_body_involved() -> None:
    event = SignalsMatched(match_id="m1", key_kind="subject", signal_id="s2", reference="SK-2026-000002",
                           matched_signal_ids=["s1"], matched_references=["SK-2026-000001"],
                           partner_ids=["obs-de-linde", "politie-basisteam"], partner_kinds=["school", "police"],
                           body_ids=["oov", "zat-12ab"], matched_at=T0)
    assert mails(event) == {
        ("match", "coordinator", JVC),
        ("match", "intern_begeleider", "ib@delinde.example"),
        ("match", "schoolmaatschappelijk_werk", "smw@delinde.example"),
    }


def test_one_address_gets_one_mail_per_event() -> None:
    event = assigned(reporter=Contact(name="IB", email="ib@delinde.example"))
    assert [m.kind for m in plan(event, M) if m.recipient.email == "ib@delinde.example"] == ["assigned"]


def test_a_digest_partner_gets_u2_and_u3_assignments_as_digest_and_the_rest_at_once() -> None:
    base = {"school_brin": "34CD", "partner_id": "cbs-het-anker", "body_id": "zat-34cd", "body_name": "ZAT Het Anker"}
    for urgency, digest in ((Urgency.U3, True), (Urgency.U2, True), (Urgency.U1, False), (Urgency.U0, False)):
        planned = {m.recipient.email: m for m in plan(assigned(**base, urgency=urgency), M)}
        assert planned["ib@hetanker.example"].digest is digest, urgency
        assert planned[REPORTER].digest is False  # receipts are never held back
    warning = plan(sla(SlaWarned, body_id="zat-34cd"), M)
    assert warning and not any(m.digest for m in warning)
    assert not any(m.digest for m in plan(assigned(), M))  # De Linde wants every mail at once


def test_digest_preference_follows_the_partner_behind_the_address_or_the_body() -> None:
    assert prefers_digest(Recipient("x", "ib@hetanker.example"), "zat-34cd", M)
    assert prefers_digest(Recipient("x", "administratie@hetanker.example"), None, M)
    assert not prefers_digest(Recipient("x", "ib@delinde.example"), "zat-12ab", M)
    assert not prefers_digest(Recipient("x", "nobody@else.example"), None, M)
    # Het Anker's address mailed for the OOV body: its partners want every mail at once, so the mail goes at once.
    assert not prefers_digest(Recipient("x", "administratie@hetanker.example"), "oov", M)
    assert not prefers_digest(Recipient("x", "ib@hetanker.example"), "no-such-body", M)


def test_asking_for_a_digest_preference_leaves_the_municipalitys_look_ups_as_they_were() -> None:
    fresh = load_municipality(REPO_ROOT / "examples" / "gemeente-voorbeeld.yaml")
    before = {body: set(ids) for body, ids in fresh.known_partner_ids_by_body.items()}
    # Het Anker's contact mailed for the OOV body, then the OOV body's own handler: the second answer must not see
    # Het Anker among the OOV body's partners.
    assert not prefers_digest(Recipient("x", "administratie@hetanker.example"), "oov", fresh)
    assert not prefers_digest(Recipient("x", "jvc@gemeente.example"), "oov", fresh)
    assert {body: set(ids) for body, ids in fresh.known_partner_ids_by_body.items()} == before
    assert all(isinstance(ids, frozenset) for ids in fresh.known_partner_ids_by_body.values())
