"""The lifecycle state machine: every legal and illegal transition, and who may ask for which."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.feedback.lifecycle import ChangeRequest, SignalRecord, Status, apply, check, on_assigned
from shared.events import Contact, LifecycleChange, Route, SignalAssigned, Urgency

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
REPORTER = "politie-basisteam"
BODY = "wijkteam-centrum"
STRANGER = "cbs-het-anker"

# What the issue allows: change -> the statuses it may start from. Everything else is refused with 409.
LEGAL: dict[LifecycleChange, set[Status]] = {
    LifecycleChange.ACKNOWLEDGED: {Status.ASSIGNED},
    LifecycleChange.FEEDBACK: {Status.ACKNOWLEDGED, Status.FEEDBACK_GIVEN, Status.REOPENED},
    LifecycleChange.CLOSED: {Status.FEEDBACK_GIVEN, Status.REOPENED},
    LifecycleChange.REJECTED: {Status.ASSIGNED, Status.ACKNOWLEDGED},
    LifecycleChange.REOPENED: {Status.CLOSED},
    LifecycleChange.WITHDRAWN: {Status.ASSIGNED, Status.ACKNOWLEDGED, Status.FEEDBACK_GIVEN, Status.REOPENED,
                                Status.REJECTED},
}
REQUESTABLE = list(LEGAL)


def assigned(*, attempt: int = 1, body_id: str = "wijkteam-centrum", at: datetime = T0) -> SignalAssigned:
    """An assignment of a police signal to a wijkteam."""
    return SignalAssigned(
        signal_id="s-1", reference="SK-1", category="THUIS", urgency=Urgency.U2, route=Route.WIJKTEAM,
        body_id=body_id, body_name=body_id, rule_id="thuis", rule_description="thuis", partner_id=REPORTER,
        partner_kind="police", reporter=Contact(name="Wijkagent", email="wijkagent@politie.example"),
        received_at=at - timedelta(minutes=1), assigned_at=at, attempt=attempt,
    )


def started(body_partners: tuple[str, ...] = (BODY,)) -> SignalRecord:
    """A freshly assigned record."""
    result = on_assigned(None, assigned(), body_partner_ids=list(body_partners), deadlines=[])
    assert result is not None
    return result[0]


def in_status(status: Status) -> SignalRecord:
    """A record standing in a status, with the feedback that status implies."""
    feedback = 1 if status in (Status.FEEDBACK_GIVEN, Status.CLOSED, Status.REOPENED) else 0
    return started().model_copy(update={"status": status, "feedback_count": feedback})


def ask(change: LifecycleChange, actor: str = BODY, **extra: str) -> ChangeRequest:
    """A complete request for a change (reason, outcome or message filled in where it needs one)."""
    defaults = {
        LifecycleChange.FEEDBACK: {"message_sealed": "sealed"},
        LifecycleChange.CLOSED: {"outcome": "hulp_ingezet"},
        LifecycleChange.REJECTED: {"reason": "niet_onze_doelgroep"},
        LifecycleChange.REOPENED: {"reason": "nieuwe_zorgen"},
    }.get(change, {})
    actor = REPORTER if change is LifecycleChange.WITHDRAWN and actor == BODY else actor
    return ChangeRequest(change=change, actor_partner_id=actor, at=T0 + timedelta(hours=1),
                         **{**defaults, **extra})  # type: ignore[arg-type]


CASES = [(change, status) for change in REQUESTABLE for status in Status]


@pytest.mark.parametrize(("change", "status"), CASES, ids=[f"{c.value}-from-{s.value}" for c, s in CASES])
def test_every_change_from_every_status_is_accepted_or_refused_with_409_as_the_issue_says(
    change: LifecycleChange, status: Status
) -> None:
    record = in_status(status)
    refusal = check(record, ask(change))
    if status in LEGAL[change]:
        assert refusal is None
        updated, event = apply(record, ask(change))
        assert event.change is change and event.status == updated.status.value
        assert updated.history[:-1] == record.history
        assert updated.history[-1].change is change
    else:
        assert refusal is not None and refusal.status == 409, refusal


def test_the_seed_cycle_runs_from_assigned_to_closed_with_an_append_only_history() -> None:
    record = started()
    for change in (LifecycleChange.ACKNOWLEDGED, LifecycleChange.FEEDBACK, LifecycleChange.FEEDBACK,
                   LifecycleChange.CLOSED, LifecycleChange.REOPENED, LifecycleChange.FEEDBACK,
                   LifecycleChange.CLOSED):
        assert check(record, ask(change)) is None, change
        before = record.history
        record, _ = apply(record, ask(change))
        assert record.history[: len(before)] == before
    assert [h.change.value for h in record.history] == [
        "assigned", "acknowledged", "feedback", "feedback", "closed", "reopened", "feedback", "closed"]
    assert record.status is Status.CLOSED and record.feedback_count == 3
    assert set(record.met) == {"acknowledge", "feedback", "close"}


def test_closing_without_feedback_is_refused_with_its_own_code() -> None:
    refusal = check(in_status(Status.ACKNOWLEDGED), ask(LifecycleChange.CLOSED))
    assert refusal is not None and (refusal.status, refusal.code) == (409, "feedback_required_before_closing")


def test_acknowledging_twice_is_refused() -> None:
    record, _ = apply(started(), ask(LifecycleChange.ACKNOWLEDGED))
    refusal = check(record, ask(LifecycleChange.ACKNOWLEDGED))
    assert refusal is not None and refusal.status == 409


def test_a_closed_signal_accepts_only_reopening() -> None:
    closed = in_status(Status.CLOSED)
    answers = {change: check(closed, ask(change)) for change in REQUESTABLE}
    assert [c for c, refusal in answers.items() if refusal is None] == [LifecycleChange.REOPENED]


@pytest.mark.parametrize(("change", "missing", "code"), [
    (LifecycleChange.CLOSED, {"outcome": "weet_niet"}, "invalid_outcome"),
    (LifecycleChange.REJECTED, {"reason": ""}, "reason_required"),
    (LifecycleChange.REOPENED, {"reason": ""}, "reason_required"),
    (LifecycleChange.FEEDBACK, {"message_sealed": ""}, "message_required"),
])
def test_a_change_without_what_it_needs_is_refused_with_422(
    change: LifecycleChange, missing: dict[str, str], code: str
) -> None:
    status = next(iter(LEGAL[change] - {Status.REOPENED}))
    refusal = check(in_status(status), ask(change, **missing))
    assert refusal is not None and (refusal.status, refusal.code) == (422, code)


# --- authorisation ------------------------------------------------------------------------------------------

BODY_CHANGES = [c for c in REQUESTABLE if c is not LifecycleChange.WITHDRAWN]


@pytest.mark.parametrize("change", BODY_CHANGES, ids=[c.value for c in BODY_CHANGES])
def test_the_assigned_body_may_do_every_body_change(change: LifecycleChange) -> None:
    status = sorted(LEGAL[change])[0]
    assert check(in_status(status), ask(change, actor=BODY)) is None


@pytest.mark.parametrize("change", BODY_CHANGES, ids=[c.value for c in BODY_CHANGES])
def test_the_reporter_may_not_do_a_body_change_and_hears_403_because_it_may_see_the_signal(
    change: LifecycleChange,
) -> None:
    status = sorted(LEGAL[change])[0]
    refusal = check(in_status(status), ask(change, actor=REPORTER))
    assert refusal is not None and (refusal.status, refusal.code) == (403, "only_assigned_body")


def test_only_the_reporter_may_withdraw() -> None:
    record = started()
    assert check(record, ask(LifecycleChange.WITHDRAWN, actor=REPORTER)) is None
    refusal = check(record, ChangeRequest(change=LifecycleChange.WITHDRAWN, actor_partner_id=BODY, at=T0))
    assert refusal is not None and (refusal.status, refusal.code) == (403, "only_reporter_may_withdraw")


@pytest.mark.parametrize("change", REQUESTABLE, ids=[c.value for c in REQUESTABLE])
def test_another_partner_gets_404_for_every_change_as_if_the_signal_did_not_exist(change: LifecycleChange) -> None:
    status = sorted(LEGAL[change])[0]
    refusal = check(in_status(status), ask(change, actor=STRANGER))
    assert refusal is not None and (refusal.status, refusal.code) == (404, "signal_not_found")


def test_an_unknown_signal_answers_404() -> None:
    refusal = check(None, ask(LifecycleChange.ACKNOWLEDGED))
    assert refusal is not None and refusal.status == 404


def test_a_partner_that_reported_to_its_own_body_may_both_handle_and_withdraw() -> None:
    record = started(body_partners=(REPORTER,))
    assert check(record, ask(LifecycleChange.ACKNOWLEDGED, actor=REPORTER)) is None
    assert check(record, ask(LifecycleChange.WITHDRAWN, actor=REPORTER)) is None


# --- rejection and re-routing -------------------------------------------------------------------------------

def test_a_rejected_signal_is_assigned_again_to_the_next_body_with_its_history_kept() -> None:
    record, _ = apply(started(), ask(LifecycleChange.REJECTED))
    result = on_assigned(record, assigned(attempt=2, body_id="oov", at=T0 + timedelta(hours=2)),
                         body_partner_ids=["gemeente"], deadlines=[])
    assert result is not None
    again, event = result
    assert (again.status, again.attempt, again.body_id) == (Status.ASSIGNED, 2, "oov")
    assert [h.change.value for h in again.history] == ["assigned", "rejected", "assigned"]
    assert again.met == {} and event.change is LifecycleChange.ASSIGNED
    assert check(again, ask(LifecycleChange.ACKNOWLEDGED, actor=BODY)).status == 404  # type: ignore[union-attr]
    assert check(again, ask(LifecycleChange.ACKNOWLEDGED, actor="gemeente")) is None


def test_a_redelivered_assignment_changes_nothing() -> None:
    record = started()
    assert on_assigned(record, assigned(), body_partner_ids=[BODY], deadlines=[]) is None


def test_a_withdrawn_signal_stays_withdrawn_when_a_late_re_routing_arrives() -> None:
    record, _ = apply(started(), ask(LifecycleChange.REJECTED))
    record, _ = apply(record, ask(LifecycleChange.WITHDRAWN, actor=REPORTER))
    assert on_assigned(record, assigned(attempt=2, body_id="oov"), body_partner_ids=["gemeente"],
                       deadlines=[]) is None
