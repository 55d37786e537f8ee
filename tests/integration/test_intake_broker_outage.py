"""Broker stopped mid-run: intake answers 503 with Retry-After, then 202 again by itself when the broker returns."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from schakel.kafka_broker import Broker
from tests.integration.intake_support import (
    auth,
    received_events,
    send_inbound,
    signal_body,
    start_intake,
    submitted_event,
    wait_until,
    write_municipality,
)

pytestmark = pytest.mark.kafka


def test_with_the_broker_down_intake_answers_503_and_recovers_without_a_restart(
    broker_factory, tmp_path  # type: ignore[no-untyped-def]
) -> None:
    broker: Broker = broker_factory()
    intake = start_intake(tmp_path, bootstrap=broker.bootstrap, config=write_municipality(tmp_path),
                          SCHAKEL_INTAKE_SEND_TIMEOUT_S="3")
    url = f"{intake.base_url}/v1/signals"
    try:
        assert httpx.post(url, json=signal_body(), headers=auth(), timeout=30).status_code == 202
        pid = intake.proc.pid if intake.proc else None

        broker.stop()
        key = str(uuid.uuid4())
        started = time.monotonic()
        down = httpx.post(url, json=signal_body(), headers={**auth(), "Idempotency-Key": key}, timeout=30)
        seconds_to_503 = time.monotonic() - started
        assert down.status_code == 503, down.text
        assert down.headers["retry-after"].isdigit()
        assert down.json()["code"] == "kafka_unavailable"
        plain = httpx.post(url, json=signal_body(), headers=auth(), timeout=30)
        assert plain.status_code == 503

        broker.start()
        restarted_at = time.monotonic()
        back = wait_until(
            lambda: (r := httpx.post(url, json=signal_body(), headers={**auth(), "Idempotency-Key": key},
                                     timeout=30)).status_code == 202 and r,
            timeout=90, interval=1.0, message="202 after the broker returned")
        seconds_to_recover = time.monotonic() - restarted_at
        assert intake.alive() and intake.proc is not None and intake.proc.pid == pid
        assert len(received_events(broker.bootstrap, signal_id=back.json()["signal_id"])) == 1

        event_id = str(uuid.uuid4())
        send_inbound(broker.bootstrap, submitted_event(signal_body(category="CRIM"), event_id=event_id))
        wait_until(lambda: [e for e in received_events(broker.bootstrap) if e["data"]["category"] == "CRIM"],
                   timeout=60, message="inbound consumer works again")
        print(f"\nbroker outage: 503 after {seconds_to_503:.2f}s; 202 again {seconds_to_recover:.1f}s after restart")
    finally:
        intake.stop()
