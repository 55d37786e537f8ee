"""Who may do what, per person (ADR 0017): the lifecycle's person rules and the access-token checks."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from services.feedback.audit import capacity
from services.feedback.lifecycle import (
    ChangeRequest,
    PersonScope,
    SignalRecord,
    apply,
    can_see,
    check,
    may_read_free_text,
    on_assigned,
)
from shared.events import Contact, LifecycleChange, Route, SignalAssigned, Urgency
from shared.persons import PersonTokens, authenticate
from shared.settings import REPO_ROOT

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SCHOOL = "obs-de-linde"
ZAT = "zat-12ab"
IB = PersonScope(email="ib@delinde.example", roles={ZAT: "intern_begeleider"})
TEACHER = PersonScope(email="juf.jansen@delinde.example")
OTHER_IB = PersonScope(email="ib@hetanker.example", roles={"zat-34cd": "intern_begeleider"})


def zat_signal(*, reporter: str = "juf.jansen@delinde.example", category: str = "EMO") -> SignalRecord:
    """A signal of OBS De Linde, reported by `reporter`, assigned to the school's own ZAT."""
    assignment = SignalAssigned(
        signal_id="s-1", reference="SK-1", category=category, urgency=Urgency.U2, route=Route.ZAT, body_id=ZAT,
        body_name="ZAT OBS De Linde", rule_id="zat", rule_description="zat", partner_id=SCHOOL, partner_kind="school",
        reporter=Contact(name="Melder", email=reporter), received_at=T0, assigned_at=T0,
    )
    result = on_assigned(None, assignment, body_partner_ids=[SCHOOL], deadlines=[])
    assert result is not None
    return result[0]


def ask(change: LifecycleChange, person: PersonScope | None, partner: str = SCHOOL) -> ChangeRequest:
    return ChangeRequest(change=change, actor_partner_id=partner, at=T0 + timedelta(hours=1), person=person,
                         message_sealed="sealed" if change is LifecycleChange.FEEDBACK else None)


def test_the_ib_of_the_zat_acts_and_history_names_her() -> None:
    record = zat_signal()
    assert can_see(record, SCHOOL, IB)
    assert check(record, ask(LifecycleChange.ACKNOWLEDGED, IB)) is None
    updated, _ = apply(record, ask(LifecycleChange.ACKNOWLEDGED, IB))
    assert updated.history[-1].actor_person == "ib@delinde.example"
    assert capacity(record, SCHOOL, IB) == f"body:{ZAT}"


def test_the_reporting_teacher_sees_her_signal_but_cannot_act_as_the_zat() -> None:
    record = zat_signal()
    assert can_see(record, SCHOOL, TEACHER)
    refusal = check(record, ask(LifecycleChange.ACKNOWLEDGED, TEACHER))
    assert refusal is not None and refusal.code == "only_assigned_body"
    assert check(record, ask(LifecycleChange.WITHDRAWN, TEACHER)) is None
    assert capacity(record, SCHOOL, TEACHER) == "reporter"
    assert not may_read_free_text(record, SCHOOL, TEACHER)


def test_an_ib_who_reported_herself_acts_only_as_the_reporter() -> None:
    record = zat_signal(reporter="ib@delinde.example")
    refusal = check(record, ask(LifecycleChange.ACKNOWLEDGED, IB))
    assert refusal is not None and refusal.code == "only_assigned_body"
    assert capacity(record, SCHOOL, IB) == "reporter"


def test_a_colleague_of_the_same_school_outside_the_zat_sees_nothing() -> None:
    colleague = PersonScope(email="directie@delinde.example")
    record = zat_signal()
    assert not can_see(record, SCHOOL, colleague)
    refusal = check(record, ask(LifecycleChange.ACKNOWLEDGED, colleague))
    assert refusal is not None and refusal.status == 404
    # The school's partner system keeps acting for the whole organisation, as before.
    assert can_see(record, SCHOOL, None) and check(record, ask(LifecycleChange.ACKNOWLEDGED, None)) is None


def test_a_person_of_another_school_gets_not_found_even_with_a_matching_role() -> None:
    record = zat_signal()
    assert not can_see(record, "cbs-het-anker", OTHER_IB)
    # Naming another organisation's body in the roles does not help: the organisation must be the body's partner.
    forged = PersonScope(email="ib@hetanker.example", roles={ZAT: "intern_begeleider"})
    assert not can_see(record, "cbs-het-anker", forged)


def test_health_details_only_for_jgz_roles_and_police_details_for_police_and_coordinator() -> None:
    health = zat_signal(category="GEZ")
    assert not may_read_free_text(health, SCHOOL, IB)
    assert may_read_free_text(health, SCHOOL, PersonScope(email="ib@delinde.example", roles={ZAT: "jeugdarts"}))
    plain = zat_signal()
    assert may_read_free_text(plain, SCHOOL, IB)
    assert not may_read_free_text(plain, SCHOOL, IB, reporter_kind="police")
    assert may_read_free_text(plain, SCHOOL, PersonScope(email="ib@delinde.example", roles={ZAT: "wijkagent"}),
                              reporter_kind="police")


def test_the_municipality_file_gives_the_roles_of_a_person() -> None:
    from shared.municipality import load_municipality

    municipality = load_municipality(REPO_ROOT / "examples" / "gemeente-voorbeeld.yaml")
    assert municipality.roles_of_person("IB@delinde.example", SCHOOL) == {ZAT: "intern_begeleider"}
    assert municipality.roles_of_person("ib@delinde.example", "cbs-het-anker") == {}
    assert municipality.roles_of_person("jvc@lindendam.example", "gemeente") == {
        "oov": "coordinator", "coordinator": "coordinator"}
    assert municipality.roles_of_person("juf.jansen@delinde.example", SCHOOL) == {}


# --- access tokens --------------------------------------------------------------------------------------------

ISSUER = "https://idp.lindendam.example"
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1", "alg": "RS256", "use": "sig"})
OTHER_KEY = RSAKey.generate_key(2048, parameters={"kid": "k1", "alg": "RS256", "use": "sig"})


def token(key: RSAKey = KEY, **overrides: Any) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": "schakel", "sub": "ib-1", "exp": now + 300, "iat": now,
              "email": "IB@delinde.example", "email_verified": True, "name": "IB De Linde",
              "schakel_organisation": SCHOOL, **overrides}
    return jwt.encode({"alg": "RS256", "kid": "k1"}, {k: v for k, v in claims.items() if v is not None}, key)


def verifier() -> PersonTokens:
    tokens = PersonTokens(issuer=ISSUER, audience="schakel")
    tokens._keys = KeySet([KEY])
    tokens._kids = frozenset({"k1"})
    tokens._fetched_at = time.monotonic()
    return tokens


def test_a_valid_token_names_the_person_and_organisation() -> None:
    person = asyncio.run(verifier().verify(token()))
    assert person is not None
    assert (person.email, person.organisation, person.subject) == ("ib@delinde.example", SCHOOL, "ib-1")


@pytest.mark.parametrize("bad", [
    {"iss": "https://evil.example"}, {"aud": "another-api"}, {"exp": int(time.time()) - 3600},
    {"email_verified": False}, {"schakel_organisation": None}, {"email": None},
])
def test_wrong_issuer_audience_expiry_or_claims_are_refused(bad: dict[str, Any]) -> None:
    assert asyncio.run(verifier().verify(token(**bad))) is None


def test_a_token_signed_with_another_key_is_refused() -> None:
    assert asyncio.run(verifier().verify(token(OTHER_KEY))) is None
    tampered = token().rsplit(".", 1)[0] + "." + token(OTHER_KEY).rsplit(".", 1)[1]
    assert asyncio.run(verifier().verify(tampered)) is None


def test_authenticate_maps_partner_tokens_and_person_tokens_and_refuses_unknown_organisations() -> None:
    from shared.municipality import load_municipality

    municipality = load_municipality(REPO_ROOT / "examples" / "gemeente-voorbeeld.yaml")
    partner = asyncio.run(authenticate("Bearer demo-obs-de-linde-token", municipality=municipality,
                                       persons=verifier()))
    assert partner is not None and partner.person is None and partner.partner_id == SCHOOL
    person = asyncio.run(authenticate(f"Bearer {token()}", municipality=municipality, persons=verifier()))
    assert person is not None and person.partner_id == SCHOOL and person.person_email == "ib@delinde.example"
    unknown = token(schakel_organisation="nobody")
    assert asyncio.run(authenticate(f"Bearer {unknown}", municipality=municipality, persons=verifier())) is None
    # Without an identity provider configured, only partner tokens count.
    assert asyncio.run(authenticate(f"Bearer {token()}", municipality=municipality, persons=None)) is None


def test_regie_on_a_match_only_by_the_coordinator_and_the_status_stays() -> None:
    coordinator = PersonScope(email="jvc@lindendam.example", roles={ZAT: "coordinator"})
    record = zat_signal().model_copy(update={"matched": True})
    regie = ChangeRequest(change=LifecycleChange.REGIE, actor_partner_id=SCHOOL, at=T0, person=coordinator,
                          regie_body_id="oov")
    assert check(record, regie) is None
    updated, event = apply(record, regie)
    assert (updated.status, updated.regie_body_id, event.reason) == (record.status, "oov", "oov")
    assert updated.history[-1].reason == "oov" and updated.history[-1].actor_person == "jvc@lindendam.example"
    by_ib = ChangeRequest(change=LifecycleChange.REGIE, actor_partner_id=SCHOOL, at=T0, person=IB,
                          regie_body_id="oov")
    assert check(record, by_ib).code == "only_coordinator"  # type: ignore[union-attr]
    unmatched = check(zat_signal(), regie)
    assert unmatched is not None and unmatched.code == "no_match"
    nobody = ChangeRequest(change=LifecycleChange.REGIE, actor_partner_id=SCHOOL, at=T0, person=coordinator)
    assert check(record, nobody).code == "regie_body_required"  # type: ignore[union-attr]
