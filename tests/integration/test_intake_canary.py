"""Canary personal data sent in over HTTP and Kafka never appears in clear text on any topic, in logs or metrics."""

from __future__ import annotations

import httpx
import pytest
from kafka import KafkaAdminClient

from schakel.kafka_broker import Broker
from tests.integration.intake_support import (
    auth,
    read_topic,
    received_events,
    send_inbound,
    signal_body,
    start_intake,
    submitted_event,
    wait_until,
    write_municipality,
)

pytestmark = pytest.mark.kafka

CANARY_NAME = "Kanariedaan Vogelzang"
CANARY_BSN = "987650014"
CANARY_PUPIL = "LLN-KANARIE-4711"
CANARIES = (CANARY_NAME, CANARY_BSN, CANARY_PUPIL)


def canary_body(**overrides: object) -> dict[str, object]:
    return signal_body(
        subject={"bsn": CANARY_BSN, "school_brin": "12AB", "pupil_ref": CANARY_PUPIL,
                 "family_ref": f"gezin {CANARY_NAME}"},
        summary=f"{CANARY_NAME} (BSN {CANARY_BSN}, leerling {CANARY_PUPIL}) is vaak afwezig.", **overrides,
    )


def test_canary_name_bsn_and_pupil_number_never_appear_in_clear_text(fresh_kafka: Broker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    intake = start_intake(tmp_path, bootstrap=fresh_kafka.bootstrap, config=write_municipality(tmp_path),
                          SCHAKEL_LOG_LEVEL="DEBUG")
    url = f"{intake.base_url}/v1/signals"
    try:
        accepted = httpx.post(url, json=canary_body(), headers={**auth(), "Idempotency-Key": f"key-{CANARY_BSN}"},
                              timeout=30)
        assert accepted.status_code == 202
        assert httpx.post(url, json=canary_body(), headers={**auth(), "Idempotency-Key": f"key-{CANARY_BSN}"},
                          timeout=30).status_code == 202
        refused = httpx.post(url, json=canary_body(category="XYZ", postcode_area=CANARY_BSN), headers=auth(),
                             timeout=30)
        assert refused.status_code == 422 and not any(c in refused.text for c in CANARIES)
        bad_bsn = canary_body()
        bad_bsn["subject"] = {"bsn": CANARY_BSN[:-1] + "9", "pupil_ref": CANARY_PUPIL}
        assert httpx.post(url, json=bad_bsn, headers=auth(), timeout=30).status_code == 422
        send_inbound(fresh_kafka.bootstrap, submitted_event(canary_body(category="OVERL")))
        send_inbound(fresh_kafka.bootstrap, submitted_event(canary_body(category="NOPE")))
        send_inbound(fresh_kafka.bootstrap, submitted_event(canary_body()), signature="v1=forged")
        wait_until(lambda: len(read_topic(fresh_kafka.bootstrap, "signals.inbound.dlq")) == 2, timeout=30)
        wait_until(lambda: len(received_events(fresh_kafka.bootstrap)) == 2, timeout=30)

        admin = KafkaAdminClient(bootstrap_servers=fresh_kafka.bootstrap)
        topics = sorted(t for t in admin.list_topics() if t != "signals.inbound")  # the partners' own, untrusted input
        admin.close()
        scanned = 0
        for topic in topics:
            for record in read_topic(fresh_kafka.bootstrap, topic):
                blob = b"".join([record.key or b"", record.value or b"", *(v for _, v in record.headers)])
                scanned += 1
                for canary in CANARIES:
                    assert canary.encode() not in blob, f"{canary!r} in clear text on {topic}"
        assert scanned >= 6
        metrics = httpx.get(f"{intake.base_url}/metrics").text
        assert 'intake_signals_accepted_total{channel="kafka",partner_kind="police"} 1.0' in metrics
    finally:
        intake.stop()
    log = intake.log_path.read_text()
    assert "signal_accepted" in log
    for canary in CANARIES:
        assert canary not in log, f"{canary!r} in the intake log"
        assert canary not in metrics, f"{canary!r} in /metrics"
