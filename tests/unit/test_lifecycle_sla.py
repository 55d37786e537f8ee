"""Which warnings, breaches and escalation steps a signal is due, once each, with stable event ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.feedback.breaches import due_emissions, emission_event_id, sla_event
from services.feedback.calendar import DutchCalendar
from services.feedback.lifecycle import ChangeRequest, SignalRecord, Status, apply, on_assigned
from services.feedback.sla import SlaPolicy, compute_deadlines
from shared.events import LifecycleChange, SlaBreached, SlaWarned
from tests.unit.test_lifecycle import BODY, assigned

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
POLICY = SlaPolicy.model_validate({"acknowledge": "PT20S", "feedback": None, "close": None})


def record(*, interval_s: float = 10.0, attempt: int = 1, at: datetime = T0) -> SignalRecord:
    """A signal assigned at `at` with a 20-second acknowledge clock."""
    deadlines = compute_deadlines(policy=POLICY, assigned_at=at, calendar=DutchCalendar(), region=None, school=None,
                                  policy_id="test:wijkteam/U2")
    result = on_assigned(None, assigned(attempt=attempt, at=at), body_partner_ids=[BODY], deadlines=deadlines,
                         escalation_interval_s=interval_s)
    assert result is not None
    return result[0]


def keys(rec: SignalRecord, seconds: float) -> list[str]:
    return [e.key for e in due_emissions(rec, now=T0 + timedelta(seconds=seconds))]


def remember(rec: SignalRecord, seconds: float) -> SignalRecord:
    """What the agent does: publish what is due, then remember it."""
    return rec.model_copy(update={"emitted": [*rec.emitted, *keys(rec, seconds)]})


def test_nothing_is_due_before_eighty_percent_of_the_term() -> None:
    assert keys(record(), 15.9) == []


def test_the_warning_falls_due_at_eighty_percent_and_the_breach_at_the_deadline() -> None:
    assert keys(record(), 16) == ["a1:acknowledge:warning"]
    assert keys(record(), 20) == ["a1:acknowledge:warning", "a1:acknowledge:breach:handler"]


def test_escalation_climbs_one_rung_per_interval_while_the_clock_stays_breached() -> None:
    rec = record()
    assert keys(rec, 29.9)[-1] == "a1:acknowledge:breach:handler"
    assert keys(rec, 30)[-1] == "a1:acknowledge:breach:team_lead"
    assert keys(rec, 40)[-1] == "a1:acknowledge:breach:coordinator"
    assert len(keys(rec, 3600)) == 4


def test_what_was_emitted_is_not_due_again_so_each_step_goes_out_once() -> None:
    rec = record()
    emitted: list[str] = []
    for second in range(0, 60):
        due = keys(rec, second)
        emitted += due
        rec = remember(rec, second)
    assert emitted == ["a1:acknowledge:warning", "a1:acknowledge:breach:handler", "a1:acknowledge:breach:team_lead",
                       "a1:acknowledge:breach:coordinator"]


def test_a_sweep_that_comes_late_publishes_every_missed_step_in_order() -> None:
    steps = [(e.kind, e.step_index) for e in due_emissions(record(), now=T0 + timedelta(minutes=5))]
    assert steps == [("warning", 0), ("breach", 1), ("breach", 2), ("breach", 3)]


def test_a_signal_acknowledged_in_time_gets_nothing() -> None:
    rec, _ = apply(record(), ChangeRequest(change=LifecycleChange.ACKNOWLEDGED, actor_partner_id=BODY,
                                           at=T0 + timedelta(seconds=5)))
    assert keys(rec, 3600) == []


def test_acknowledging_after_the_breach_stops_the_ladder() -> None:
    rec = remember(record(), 25)
    rec, _ = apply(rec, ChangeRequest(change=LifecycleChange.ACKNOWLEDGED, actor_partner_id=BODY,
                                      at=T0 + timedelta(seconds=25)))
    assert keys(rec, 3600) == []


def test_closed_withdrawn_and_rejected_signals_have_their_clocks_stopped() -> None:
    for status in (Status.CLOSED, Status.WITHDRAWN, Status.REJECTED):
        assert keys(record().model_copy(update={"status": status}), 3600) == []


def test_a_re_routed_signal_gets_new_clocks_and_its_own_ladder() -> None:
    first = remember(record(), 3600)
    later = T0 + timedelta(hours=2)
    deadlines = compute_deadlines(policy=POLICY, assigned_at=later, calendar=DutchCalendar(), region=None,
                                  school=None, policy_id="test:oov/U2")
    rejected = first.model_copy(update={"status": Status.REJECTED})
    result = on_assigned(rejected, assigned(attempt=2, body_id="oov", at=later), body_partner_ids=["gemeente"],
                         deadlines=deadlines, escalation_interval_s=10)
    assert result is not None
    second = result[0]
    assert second.deadlines[0].due_at == later + timedelta(seconds=20)
    assert [e.key for e in due_emissions(second, now=later + timedelta(seconds=20))] == [
        "a2:acknowledge:warning", "a2:acknowledge:breach:handler"]


def test_event_ids_depend_on_signal_attempt_clock_and_step_only() -> None:
    rec = record()
    early, late = due_emissions(rec, now=T0 + timedelta(seconds=20)), due_emissions(rec, now=T0 + timedelta(hours=1))
    assert [emission_event_id(rec, e) for e in early] == [emission_event_id(rec, e) for e in late[:2]]
    assert len({emission_event_id(rec, e) for e in late}) == 4


def test_the_events_carry_clock_deadline_and_rung_but_nothing_about_the_child() -> None:
    rec = record()
    warning, breach, *_ = due_emissions(rec, now=T0 + timedelta(seconds=30))
    warned = sla_event(rec, warning, at=T0)
    breached = sla_event(rec, breach, at=T0)
    assert isinstance(warned, SlaWarned) and isinstance(breached, SlaBreached)
    assert (breached.step, breached.step_index, breached.clock.value) == ("handler", 1, "acknowledge")
    assert breached.due_at == T0 + timedelta(seconds=20)
    assert set(breached.model_dump()) >= {"signal_id", "reference", "body_id", "route", "urgency"}
    assert not {"summary_sealed", "reporter", "subject_key"} & set(breached.model_dump())
