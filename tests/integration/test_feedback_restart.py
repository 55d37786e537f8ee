"""Feedback over HTTP on the real broker: the lifecycle, who may do what, the audit trail, and a SIGKILL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from schakel.kafka_broker import Broker
from shared.settings import REPO_ROOT
from tests.harness import System, auth, read_topic, wait_until

pytestmark = pytest.mark.kafka

REPORTER, BODY, STRANGER, NEXT_BODY = "obs-de-linde", "wijkteam-centrum", "cbs-het-anker", "obs-de-linde"


def thuis(n: int) -> dict[str, Any]:
    """A school signal about home that routing sends to wijkteam Centrum (postcode 3511)."""
    return {
        "category": "THUIS", "subject": {"school_brin": "12AB", "pupil_ref": f"R-{n}"}, "postcode_area": "3511",
        "summary": "Komt vaak zonder ontbijt.", "reporter": {"name": "Juf", "email": "juf@delinde.example"},
        "legal_basis": "meldrecht",
    }


@pytest.fixture
def system(fresh_kafka: Broker, tmp_path: Path) -> Iterator[System]:
    stack = System(broker=fresh_kafka, root=tmp_path).start(["intake", "routing", "feedback"])
    yield stack
    stack.stop()


def new_signal(system: System, n: int) -> str:
    response = system.submit(REPORTER, thuis(n), **{"Idempotency-Key": f"restart-{n}"})
    assert response.status_code == 202, response.text
    signal_id: str = response.json()["signal_id"]
    system.wait_for_signal(REPORTER, signal_id)
    return signal_id


def audit_records(system: System) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in read_topic(system.broker.bootstrap, "audit.log", timeout_ms=2000)]


def audit_records_for(system: System, signal_id: str) -> list[dict[str, Any]]:
    return [r for r in audit_records(system)
            if r["data"].get("signal_id") == signal_id and r["data"]["action"] != "export"]


def export_audit(system: System, *args: str) -> list[dict[str, Any]]:
    """Run `schakel audit export` against the test broker and parse its JSON lines."""
    done = subprocess.run([sys.executable, "-m", "schakel", "audit", "export", *args], capture_output=True,
                          text=True, timeout=60, check=True, cwd=REPO_ROOT,
                          env={**os.environ, "SCHAKEL_KAFKA_BOOTSTRAP": system.broker.bootstrap})
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def test_the_seed_cycle_authorisation_and_audit_trail_hold_over_http(system: System) -> None:
    signal_id = new_signal(system, 0)
    assert system.get_signal(BODY, signal_id).json()["body"]["id"] == "wijkteam-centrum"

    # Strangers see nothing and can do nothing: 404, as for an unknown id.
    assert system.get_signal(STRANGER, signal_id).status_code == 404
    assert system.post_event(STRANGER, signal_id, {"type": "acknowledged"}).status_code == 404
    assert system.post_event(STRANGER, signal_id, {"type": "withdrawn"}).status_code == 404
    assert system.get_signal(BODY, "00000000-0000-0000-0000-000000000000").status_code == 404
    # The reporter may see it but not handle it.
    refused = system.post_event(REPORTER, signal_id, {"type": "acknowledged"})
    assert (refused.status_code, refused.json()["code"]) == (403, "only_assigned_body")

    assert system.post_event(BODY, signal_id, {"type": "acknowledged"}).status_code == 200
    twice = system.post_event(BODY, signal_id, {"type": "acknowledged"})
    assert twice.status_code == 409 and twice.json()["current_status"] == "acknowledged"
    early = system.post_event(BODY, signal_id, {"type": "closed", "outcome": "hulp_ingezet"})
    assert (early.status_code, early.json()["code"]) == (409, "feedback_required_before_closing")
    assert early.json()["signal"]["status"] == "acknowledged"
    assert system.post_event(BODY, signal_id, {"type": "feedback", "message": "Gesprek met ouders gepland."}
                             ).status_code == 200
    closed = system.post_event(BODY, signal_id, {"type": "closed", "outcome": "hulp_ingezet"})
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    after = system.post_event(BODY, signal_id, {"type": "feedback", "message": "Nog iets"})
    assert after.status_code == 409 and after.json()["current_status"] == "closed"

    state = system.get_signal(REPORTER, signal_id).json()
    assert [h["type"] for h in state["history"]] == ["assigned", "acknowledged", "feedback", "closed"]
    assert state["feedback"] == ["Gesprek met ouders gepland."]
    assert "summary" not in state  # the summary is for the assigned body only

    def audited() -> list[dict[str, Any]]:
        mine = [r for r in audit_records(system) if r["data"].get("signal_id") == signal_id]
        return mine if len(mine) >= 13 else []

    trail = wait_until(audited, timeout=20, what="audit records of every access")
    actions = [(r["data"]["actor_partner_id"], r["data"]["action"], r["data"]["outcome"]) for r in trail]
    assert (STRANGER, "read", "refused") in actions and (STRANGER, "withdrawn", "refused") in actions
    assert (BODY, "acknowledged", "allowed") in actions and (BODY, "closed", "refused") in actions
    assert (REPORTER, "read", "allowed") in actions
    assert {r["data"]["on_behalf_of"] for r in trail if r["data"]["actor_partner_id"] == STRANGER} == {"none"}
    assert {r["data"]["on_behalf_of"] for r in trail if r["data"]["actor_partner_id"] == BODY} == {
        "body:wijkteam-centrum"}
    text = json.dumps(trail)
    assert "Gesprek met ouders" not in text and "ontbijt" not in text and "juf@" not in text

    # The municipality exports the trail as JSON lines; the export is audited too.
    exported = export_audit(system, "--signal", signal_id)
    assert len(exported) == len(audit_records_for(system, signal_id)) >= 13
    assert {"id", "time", "actor_partner_id", "on_behalf_of", "action", "outcome", "signal_id"} <= set(exported[0])
    assert export_audit(system, "--since", "2999-01-01T00:00:00+00:00") == []
    assert any(r["data"]["action"] == "export" for r in audit_records(system))
    assert_the_export_shows_its_progress_on_a_terminal(system, signal_id)
    assert_every_error_is_a_dutch_problem(system, signal_id)


def assert_the_export_shows_its_progress_on_a_terminal(system: System, signal_id: str) -> None:
    """On a terminal a rich bar on standard error counts the records read; standard output stays JSON lines."""
    done = subprocess.run([sys.executable, "-m", "schakel", "audit", "export", "--signal", signal_id],
                          capture_output=True, text=True, timeout=60, check=True, cwd=REPO_ROOT,
                          env={**os.environ, "SCHAKEL_KAFKA_BOOTSTRAP": system.broker.bootstrap,
                               "TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1", "COLUMNS": "120"})
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines and all(line["signal_id"] == signal_id for line in lines)
    total = len(audit_records(system)) - 1  # everything on audit.log before this export's own record
    assert "exporting audit.log" in done.stderr and f"{total}/{total}" in done.stderr, done.stderr[-2000:]


def assert_problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json", response.headers
    body = response.json()
    assert (body["status"], body["code"]) == (status, code) and body["title"] and body["detail"]
    assert response.headers["api-version"] == "1.0.0"


def assert_every_error_is_a_dutch_problem(system: System, signal_id: str) -> None:
    """NL API Design Rules: problem+json for every error, the framework's own (unknown path, method) included."""
    for name in system.services:
        assert_problem(httpx.get(system.url(name, "/v1/nothing-here"), timeout=10), 404, "not_found")
        wrong = httpx.delete(system.url(name, "/healthz"), timeout=10)
        assert_problem(wrong, 405, "method_not_allowed")
        assert wrong.headers["allow"] == "GET" and "DELETE" in wrong.json()["detail"]
        assert httpx.get(system.url(name, "/healthz"), timeout=10).headers["api-version"] == "1.0.0"
    assert_problem(httpx.get(system.url("intake", "/v1/signals"), timeout=10), 405, "method_not_allowed")
    assert_problem(system.get_signal(BODY, "not-a-uuid"), 400, "bad_signal_id")
    broken = httpx.post(system.url("feedback", f"/v1/signals/{signal_id}/events"), content=b"{not json",
                        headers={**auth(BODY), "Content-Type": "application/json"}, timeout=10)
    assert_problem(broken, 400, "bad_json")
    # Only the services with partner routes have an OpenAPI document.
    assert httpx.get(system.url("feedback", "/openapi.json"), timeout=10).json()["servers"][0]["url"] == "/v1"
    assert_problem(httpx.get(system.url("routing", "/openapi.json"), timeout=10), 404, "not_found")


def test_a_rejected_signal_is_re_routed_and_the_old_body_loses_sight_of_it(system: System) -> None:
    signal_id = new_signal(system, 1)
    rejected = system.post_event(BODY, signal_id, {"type": "rejected", "reason": "niet_onze_doelgroep"})
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"

    def re_routed() -> dict[str, Any] | None:
        state = system.get_signal(REPORTER, signal_id).json()
        return state if state["status"] == "assigned" and state["body"]["id"] == "zat-12ab" else None

    state = wait_until(re_routed, timeout=30, what="routing's hand-off to the school's ZAT")
    assert [h["type"] for h in state["history"]] == ["assigned", "rejected", "assigned"]
    assert system.get_signal(BODY, signal_id).status_code == 404
    assert system.post_event(NEXT_BODY, signal_id, {"type": "acknowledged"}).status_code == 200


def test_feedback_killed_with_sigkill_comes_back_with_every_signal_in_full(system: System) -> None:
    ids = [new_signal(system, n) for n in range(10, 22)]
    steps = [[], [{"type": "acknowledged"}],
             [{"type": "acknowledged"}, {"type": "feedback", "message": "Besproken in het team."}],
             [{"type": "acknowledged"}, {"type": "feedback", "message": "Hulp loopt."},
              {"type": "closed", "outcome": "hulp_ingezet"}]]
    for i, signal_id in enumerate(ids):
        for event in steps[i % len(steps)]:
            assert system.post_event(BODY, signal_id, event).status_code == 200
    before = {signal_id: system.get_signal(BODY, signal_id).json() for signal_id in ids}

    system.restart("feedback")  # SIGKILL, then start again and wait for /readyz

    after = {signal_id: system.get_signal(BODY, signal_id).json() for signal_id in ids}
    assert after == before
    assert system.post_event(BODY, ids[0], {"type": "acknowledged"}).status_code == 200
    assert system.get_signal(REPORTER, ids[0]).json()["status"] == "acknowledged"
