"""Per-partner rate limit against the real broker: 429 with Retry-After, other partners unaffected."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from schakel.kafka_broker import Broker
from services.intake.app import create_app
from tests.integration.intake_support import auth, settings_for, signal_body, wait_until

pytestmark = pytest.mark.kafka


def test_a_partner_over_its_rate_gets_429_with_retry_after_and_others_go_on(kafka: Broker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(kafka.bootstrap, tmp_path, intake_rate_per_minute=6, intake_rate_burst=3)
    with TestClient(create_app(settings, consume_inbound=False)) as client:
        wait_until(lambda: client.get("/readyz").status_code == 200, timeout=60)
        body = json.dumps(signal_body())
        headers = {**auth("obs-de-linde"), "Content-Type": "application/json"}
        statuses = [client.post("/v1/signals", content=body, headers=headers).status_code for _ in range(3)]
        assert statuses == [202, 202, 202]
        limited = client.post("/v1/signals", content=body, headers=headers)
        assert limited.status_code == 429
        assert limited.headers["content-type"].startswith("application/problem+json")
        assert limited.json()["code"] == "rate_limited"
        assert 1 <= int(limited.headers["retry-after"]) <= 10
        other = client.post("/v1/signals", content=body,
                            headers={**auth("politie-basisteam"), "Content-Type": "application/json"})
        assert other.status_code == 202
        rejected = 'intake_signals_rejected_total{partner_kind="school",reason="rate_limited"} 1.0'
        assert rejected in client.get("/metrics").text
