"""A signal travels through real Kafka from a partner's request to partners' mailboxes."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from schakel.trace_sink import ReceivedSpan, TraceSink
from shared.events import decode_event
from shared.topics import ALL_TOPICS
from tests.conftest import start_broker
from tests.harness import System, read_topic, wait_until

BSN = "111222333"  # passes the elfproef; a test value
PUPIL_REF = "LL-4711"
SUMMARY = "Vecht op het schoolplein en heeft een kort lontje"

IB = "ib@delinde.example"
REPORTER = "juf.jansen@delinde.example"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """The four services, a mail sink and a broker of their own, shared by this module's tests."""
    broker = start_broker(tmp_path_factory.mktemp("kafka-e2e"))
    traces = TraceSink().start()  # every service exports its spans over OTLP/HTTP to this receiver
    stack = System(broker=broker, root=tmp_path_factory.mktemp("e2e"),
                   extra_env={"SCHAKEL_OTLP_ENDPOINT": traces.url}).start()
    stack.traces = traces  # type: ignore[attr-defined]
    yield stack
    stack.stop()
    traces.stop()
    broker.stop(kill=True)


def _all_mail_text(system: System) -> str:
    return "\n".join(m.data.decode("utf-8", errors="replace") for m in system.sink.messages)


def test_a_school_signal_reaches_the_zat_and_the_reporter_hears_back(system: System) -> None:
    response = system.submit("obs-de-linde", {
        "category": "KLAS",
        "subject": {"bsn": BSN, "school_brin": "12AB", "pupil_ref": PUPIL_REF},
        "summary": SUMMARY,
        "reporter": {"name": "Juf Jansen", "email": REPORTER},
        "legal_basis": "meldrecht",
    }, **{"Idempotency-Key": "e2e-1"})
    assert response.status_code == 202, response.text
    accepted = response.json()
    signal_id, reference = accepted["signal_id"], accepted["reference"]
    assert response.headers["location"] == f"/v1/signals/{signal_id}"

    assigned_mail = system.wait_for_mail(IB, subject_contains=reference)
    assert "Nieuw signaal toegewezen" in str(assigned_mail.message["Subject"])

    state = system.wait_for_signal("obs-de-linde", signal_id)
    assert state["status"] == "assigned"
    assert state["route"] == "zat"
    assert state["body"]["id"] == "zat-12ab"
    assert {d["clock"] for d in state["deadlines"]} == {"acknowledge", "feedback", "close"}

    for event, status in (
        ({"type": "acknowledged"}, "acknowledged"),
        ({"type": "feedback", "message": "We hebben ouders uitgenodigd voor een gesprek."}, "feedback_given"),
        ({"type": "closed", "outcome": "hulp_ingezet"}, "closed"),
    ):
        answer = system.post_event("obs-de-linde", signal_id, event)
        assert answer.status_code == 200, answer.text
        assert system.get_signal("obs-de-linde", signal_id).json()["status"] == status

    history = [h["type"] for h in system.get_signal("obs-de-linde", signal_id).json()["history"]]
    assert history == ["assigned", "acknowledged", "feedback", "closed"]

    system.wait_for_mail(REPORTER, subject_contains="Terugkoppeling")
    system.wait_for_mail(REPORTER, subject_contains="afgesloten")

    text = _all_mail_text(system)
    for secret in (BSN, PUPIL_REF, SUMMARY, "kort lontje", "Juf Jansen"):
        assert secret not in text


def test_no_identifier_or_free_text_reaches_kafka_in_clear_text(system: System) -> None:
    response = system.submit("politie-basisteam", {
        "category": "OVERL",
        "subject": {"bsn": BSN, "family_ref": "FAM-99"},
        "postcode_area": "3511",
        "summary": SUMMARY,
    })
    assert response.status_code == 202, response.text
    signal_id = response.json()["signal_id"]
    system.wait_for_signal("politie-basisteam", signal_id)
    for topic in ("signals.received", "signals.assigned", "signals.lifecycle"):
        for record in read_topic(system.broker.bootstrap, topic):
            raw = record.value.decode()
            assert BSN not in raw and "FAM-99" not in raw and "kort lontje" not in raw


def test_closing_before_feedback_is_refused_with_the_current_state(system: System) -> None:
    response = system.submit("politie-basisteam", {"category": "CRIM", "subject": {"bsn": BSN}})
    signal_id = response.json()["signal_id"]
    system.wait_for_signal("gemeente", signal_id)
    answer = system.post_event("gemeente", signal_id, {"type": "closed", "outcome": "ongegrond"})
    assert answer.status_code == 409
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["current_status"] == "assigned"
    assert system.get_signal("obs-de-linde", signal_id).status_code == 404


def test_the_seed_story_matches_school_and_police_and_tells_the_coordinator_and_both_bodies(system: System) -> None:
    child = {"bsn": "123456782", "family_ref": "FAM-SEED"}
    school = system.submit("obs-de-linde", {
        "category": "EMO", "subject": {**child, "school_brin": "12AB", "pupil_ref": "L-SEED"},
        "summary": "Vecht op het plein, kort lontje", "postcode_area": "3511",
        "reporter": {"name": "Juf Jansen", "email": REPORTER},
    })
    assert school.status_code == 202, school.text
    system.wait_for_signal("obs-de-linde", school.json()["signal_id"])
    police = system.submit("politie-basisteam", {
        "category": "OVERL", "subject": child, "flags": ["SIBLING_LINK", "GROUP_LINK"], "postcode_area": "3511",
        "summary": "'s Nachts bij de groep van zijn broer",
    })
    assert police.status_code == 202, police.text
    police_state = system.wait_for_signal("politie-basisteam", police.json()["signal_id"])
    assert police_state["route"] == "oov"
    assert police_state["match"] is True

    matches = [r for r in read_topic(system.broker.bootstrap, "signals.matched")
               if police.json()["signal_id"] in r.value.decode()]
    assert len(matches) == 1
    reference = police.json()["reference"]
    for address in ("jvc@lindendam.example", IB):
        system.wait_for_mail(address, subject_contains="Match")
    system.wait_for_mail("jvc@lindendam.example", subject_contains=reference)
    assert "123456782" not in _all_mail_text(system)


def test_one_signal_is_one_trace_from_intake_through_routing_feedback_and_notify(system: System) -> None:
    """The trace an operator follows: intake's HTTP request, routing's and feedback's and notify's handling,
    notify's SMTP send, all one trace (W3C traceparent in the Kafka headers), exported over OTLP."""
    response = system.submit("obs-de-linde", {
        "category": "KLAS", "subject": {"bsn": "999999990", "school_brin": "12AB", "pupil_ref": "TRACE-4711"},
        "summary": "Spoorcanarie: huilt vaak in de pauze", "reporter": {"name": "Meester Spoor", "email": REPORTER},
    })
    assert response.status_code == 202, response.text
    signal_id, reference = response.json()["signal_id"], response.json()["reference"]
    system.wait_for_mail(IB, subject_contains=reference)
    sink: TraceSink = system.traces  # type: ignore[attr-defined]

    def whole_trace() -> list[ReceivedSpan] | None:
        spans = sink.snapshot()
        ours = {s.trace_id for s in spans if s.attributes.get("schakel.signal_id") == signal_id
                and s.service in ("intake", "routing", "notify")}
        if len(ours) != 1:
            return None
        trace = [s for s in spans if s.trace_id in ours]
        services = {s.service for s in trace}
        return trace if {"intake", "routing", "feedback", "notify"} <= services and any(
            s.name == "notify smtp send" for s in trace) else None

    trace = wait_until(whole_trace, timeout=30, what="one trace with spans of every service")
    names = {(s.service, s.name) for s in trace}
    assert ("intake", "Schakel intake POST") in names
    assert ("routing", "routing handle signals.received") in names
    assert ("feedback", "feedback handle signals.assigned") in names
    assert ("notify", "notify handle signals.assigned") in names
    by_id = {s.span_id: s for s in trace}
    roots = [s for s in trace if s.parent_span_id not in by_id]
    assert [r.name for r in roots] == ["Schakel intake POST"], roots  # one tree under the HTTP request
    everything = json.dumps([(s.name, s.attributes, s.resource) for s in sink.snapshot()])
    for canary in ("999999990", "TRACE-4711", "Spoorcanarie", "huilt", "Meester Spoor", REPORTER, BSN, SUMMARY):
        assert canary not in everything, f"{canary!r} in a span"


STRUCTURED = "application/cloudevents+json; charset=UTF-8"
SOURCE = re.compile(r"^urn:nld:oin:[0-9]{20}:systeem:schakel-[a-z][a-z0-9-]*$")
EVENT_TYPE = re.compile(r"^nl\.[a-z0-9]+(\.[a-z][a-z0-9_]*)+\.v[0-9]+$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# Not events: intake's idempotency log is plain JSON; dead letters keep the original's (or notify's JSON) type.
NOT_EVENTS = {"intake.idempotency": "application/json", "privacy.keys": "application/json"}
DEAD_LETTERS = {spec.name for spec in ALL_TOPICS if spec.name.endswith(".dlq")}
CANARIES = (BSN, "123456782", PUPIL_REF, "L-SEED", "FAM-99", "FAM-SEED", "kort lontje", "Juf Jansen", REPORTER)


def _headers(record: Any) -> dict[str, str]:
    return {name.lower(): value.decode() for name, value in record.headers or ()}


def test_every_record_on_every_topic_follows_the_kafka_binding_and_the_nl_gov_profile(system: System) -> None:
    """Runs last in this module: every topic holds the records of the flows above (signals, lifecycle, matches,
    e-mails, audit). Structured mode: a content-type header on every record, no ce_ headers, the whole envelope
    in the value; NL GOV profile: source a URN, type reverse-DNS from nl. with a version, time the moment of
    logging, subject a signal id or absent (never personal data)."""
    seen: dict[str, int] = {}
    for spec in ALL_TOPICS:
        records = read_topic(system.broker.bootstrap, spec.name, timeout_ms=2000)
        seen[spec.name] = len(records)
        for record in records:
            headers = _headers(record)
            where = f"{spec.name}@{record.partition}:{record.offset}"
            assert "content-type" in headers, f"{where} has no content-type header"
            assert not any(name.startswith("ce_") for name in headers), f"{where} is in binary mode"
            if spec.name in NOT_EVENTS:
                assert headers["content-type"] == NOT_EVENTS[spec.name], where
                continue
            if spec.name in DEAD_LETTERS:
                assert headers["schakel-error-code"], where
                continue
            assert headers["content-type"] == STRUCTURED, where
            envelope, _ = decode_event(record.value, content_type=headers["content-type"])
            assert envelope.specversion == "1.0" and envelope.id and envelope.datacontenttype == "application/json"
            assert SOURCE.match(envelope.source), f"{where}: source {envelope.source!r} is not a URN"
            assert EVENT_TYPE.match(envelope.type), f"{where}: type {envelope.type!r}"
            logged = abs(envelope.time.timestamp() * 1000 - record.timestamp)
            assert envelope.time.tzinfo is not None and logged < 60_000, f"{where}: time is not when it was logged"
            assert envelope.subject is None or UUID.match(envelope.subject), f"{where}: subject {envelope.subject!r}"
            for canary in CANARIES:
                assert canary not in json.dumps(headers) and canary not in (envelope.subject or ""), where
    busy = ("signals.received", "signals.assigned", "signals.matched", "signals.lifecycle.requests",
            "signals.lifecycle", "notifications.sent", "audit.log", "intake.idempotency")
    assert all(seen[name] > 0 for name in busy), seen
