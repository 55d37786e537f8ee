"""Intake over HTTP against the real broker: every validation error, auth, media type, size, receipt data."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from schakel.kafka_broker import Broker
from services.intake.app import create_app
from tests.integration.intake_support import (
    OTHER_BSN,
    READ_ONLY_PARTNER,
    auth,
    received_events,
    settings_for,
    signal_body,
    wait_until,
)

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def client(kafka: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    app = create_app(settings_for(kafka.bootstrap, tmp_path_factory.mktemp("intake-http")))
    with TestClient(app) as test_client:
        wait_until(lambda: test_client.get("/readyz").status_code == 200, timeout=60, message="intake ready")
        yield test_client


def post(client: TestClient, body: Any, *, partner: str = "obs-de-linde", **headers: str) -> Any:
    return client.post("/v1/signals", content=json.dumps(body), headers={
        **auth(partner), "Content-Type": "application/json", **headers})


def assert_problem(response: Any, *, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == status and problem["code"] == code
    assert problem["title"] and problem["detail"] and problem["type"].endswith(code)
    if field is not None:
        assert [e["field"] for e in problem["errors"]] == [field]
        assert problem["errors"][0]["code"] == code
    return problem


FUTURE = (datetime.now(UTC) + timedelta(days=2)).isoformat()

VALIDATION_CASES = [
    ("unknown category", {"category": "XYZ"}, "unknown_category", "category", "Onbekende categorie"),
    ("bad urgency", {"urgency": "U9"}, "invalid_urgency", "urgency", "Onbekende urgentie"),
    ("missing identifiers", {"subject": {"family_ref": "gezin-1"}}, "missing_identifiers", "subject", "BSN"),
    ("pupil without school", {"subject": {"pupil_ref": "4711"}}, "missing_identifiers", "subject", "BRIN"),
    ("BSN failing the elfproef", {"subject": {"bsn": "123456789"}}, "invalid_bsn", "subject.bsn", "elfproef"),
    ("postcode area of five digits", {"postcode_area": "12345"}, "invalid_postcode_area", "postcode_area", "vier"),
    ("postcode area with letters", {"postcode_area": "1234AB"}, "invalid_postcode_area", "postcode_area", "vier"),
    ("summary over 500 characters", {"summary": "x" * 501}, "summary_too_long", "summary", "500"),
    ("unknown flag", {"flags": ["MATCH"]}, "unknown_flag", "flags", "Onbekende vlag"),
    ("observation in the future", {"observed_at": FUTURE}, "observed_in_future", "observed_at", "toekomst"),
    ("observation without time zone", {"observed_at": "2025-01-01T10:00:00"}, "naive_datetime", "observed_at",
     "tijdzone"),
    ("unknown legal basis", {"legal_basis": "zomaar"}, "unknown_legal_basis", "legal_basis", "grondslag"),
    ("bad reporter e-mail", {"reporter": {"name": "X", "email": "geen-adres"}}, "invalid_email", "reporter.email",
     "e-mailadres"),
    ("unknown field", {"child_name": "Jan"}, "unknown_field", "child_name", "onbekend"),
    ("category of the wrong type", {"category": 7}, "wrong_type", "category", "tekst"),
]


@pytest.mark.parametrize(("case", "change", "code", "field", "dutch"), VALIDATION_CASES,
                         ids=[case[0].replace(" ", "_") for case in VALIDATION_CASES])
def test_each_invalid_field_is_refused_with_a_dutch_problem_naming_the_field(
    client: TestClient, case: str, change: dict[str, Any], code: str, field: str, dutch: str
) -> None:
    problem = assert_problem(post(client, signal_body(**change)), status=422, code=code, field=field)
    assert dutch.lower() in problem["errors"][0]["message"].lower()


def test_a_missing_category_is_refused_as_a_missing_field(client: TestClient) -> None:
    body = signal_body()
    del body["category"]
    assert_problem(post(client, body), status=422, code="missing_field", field="category")


def test_several_wrong_fields_are_all_named(client: TestClient) -> None:
    problem = assert_problem(post(client, signal_body(category="XYZ", postcode_area="1")), status=422,
                             code="validation_failed")
    assert {e["field"] for e in problem["errors"]} == {"category", "postcode_area"}


def test_an_idempotency_key_over_255_characters_is_refused(client: TestClient) -> None:
    long_key = "k" * 256
    assert_problem(post(client, signal_body(), **{"Idempotency-Key": long_key}), status=422,
                   code="invalid_idempotency_key", field="Idempotency-Key")


def test_a_request_without_a_token_is_refused_with_401(client: TestClient) -> None:
    response = client.post("/v1/signals", json=signal_body())
    assert_problem(response, status=401, code="unauthenticated")
    assert response.headers["www-authenticate"] == "Bearer"


def test_an_unknown_token_is_refused_with_401(client: TestClient) -> None:
    response = client.post("/v1/signals", json=signal_body(), headers={"Authorization": "Bearer nope"})
    assert_problem(response, status=401, code="unauthenticated")


def test_a_token_without_the_submit_scope_is_refused_with_403(client: TestClient) -> None:
    assert_problem(post(client, signal_body(), partner=READ_ONLY_PARTNER), status=403, code="forbidden")


def test_a_body_over_64_kib_is_refused_with_413(client: TestClient) -> None:
    response = client.post("/v1/signals", content=b'{"summary": "' + b"x" * 70000 + b'"}',
                           headers={**auth(), "Content-Type": "application/json"})
    assert_problem(response, status=413, code="payload_too_large")


def test_a_body_that_is_not_json_is_refused_with_415(client: TestClient) -> None:
    response = client.post("/v1/signals", content=b"category=PEST",
                           headers={**auth(), "Content-Type": "application/x-www-form-urlencoded"})
    assert_problem(response, status=415, code="unsupported_media_type")


@pytest.mark.parametrize("raw", [b"{not json", b"[" * 60000, b"\xff\xfe", b""],
                         ids=["broken", "deep", "binary", "empty"])
def test_broken_json_is_a_400_never_a_5xx(client: TestClient, raw: bytes) -> None:
    response = client.post("/v1/signals", content=raw, headers={**auth(), "Content-Type": "application/json"})
    assert_problem(response, status=400, code="bad_json")


@pytest.mark.parametrize("payload", [[], "PEST", 42, None, {"subject": []}],
                         ids=["list", "string", "number", "null", "subject_list"])
def test_json_of_the_wrong_shape_is_a_422(client: TestClient, payload: Any) -> None:
    assert post(client, payload).status_code == 422


def test_a_valid_signal_is_accepted_and_carries_what_the_receipt_needs(client: TestClient, kafka: Broker) -> None:
    response = post(client, signal_body())
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] == "received" and accepted["reference"].startswith("SK-")
    assert response.headers["location"] == f"/v1/signals/{accepted['signal_id']}"
    events = wait_until(lambda: received_events(kafka.bootstrap, signal_id=accepted["signal_id"]), timeout=20)
    data = events[0]["data"]
    assert data["reference"] == accepted["reference"]
    assert data["reporter"] == {"name": "Juf Anna", "email": "anna@delinde.example"}
    assert data["subject_key"].startswith("sk_") and "subject" not in data and "summary" not in data


def test_without_a_reporter_the_partner_contact_gets_the_receipt(client: TestClient, kafka: Broker) -> None:
    body = signal_body()
    del body["reporter"]
    accepted = post(client, body).json()
    events = wait_until(lambda: received_events(kafka.bootstrap, signal_id=accepted["signal_id"]), timeout=20)
    assert events[0]["data"]["reporter"]["email"] == "administratie@delinde.example"


def test_school_and_police_reporting_the_same_bsn_give_the_same_subject_key(client: TestClient, kafka: Broker) -> None:
    school = post(client, signal_body(subject={"bsn": OTHER_BSN, "school_brin": "12AB", "pupil_ref": "9"})).json()
    police = post(client, signal_body(category="OVERL", subject={"bsn": OTHER_BSN}), partner="politie-basisteam").json()
    keys = {
        wait_until(lambda sid=sid: received_events(kafka.bootstrap, signal_id=sid),
                   timeout=20)[0]["data"]["subject_key"]
        for sid in (school["signal_id"], police["signal_id"])
    }
    assert len(keys) == 1


def test_refusals_and_acceptances_are_counted_by_partner_kind_and_code(client: TestClient) -> None:
    post(client, signal_body(category="XYZ"))
    text = client.get("/metrics").text
    assert 'intake_signals_rejected_total{partner_kind="school",reason="unknown_category"}' in text
    assert 'intake_signals_accepted_total{channel="http",partner_kind="school"}' in text
    assert 'intake_request_duration_seconds_count{method="POST",route="/v1/signals"}' in text
    assert "intake_idempotent_replays_total" in text and "intake_dead_letters_total" in text
