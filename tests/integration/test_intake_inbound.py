"""Kafka-connected partners: good records reach signals.received, bad ones the DLQ with provenance; no restarts."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from schakel.kafka_broker import Broker
from schakel.processes import ServiceProcess
from services.intake.validation import MAX_BODY_BYTES
from shared.pseudonym import unseal
from tests.integration.intake_support import (
    SEALING_KEY,
    read_topic,
    received_events,
    send_inbound,
    signal_body,
    start_intake,
    submitted_event,
    wait_until,
    write_municipality,
)
from tests.privacy_support import open_field, system_ring

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def intake(kafka: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    workdir: Path = tmp_path_factory.mktemp("intake-inbound")
    process = start_intake(workdir, bootstrap=kafka.bootstrap, config=write_municipality(workdir))
    yield process
    process.stop()


def dead_letters(kafka: Broker) -> list[dict[str, object]]:
    result = []
    for record in read_topic(kafka.bootstrap, "signals.inbound.dlq"):
        headers = {name: value.decode() for name, value in record.headers}
        result.append({"headers": headers, "value": record.value, "key": record.key})
    return result


def dead_letter_for(kafka: Broker, marker: bytes) -> dict[str, object]:
    """The dead letter whose (sealed) original value contains a marker."""

    def find() -> dict[str, object] | None:
        letters = dead_letters(kafka)
        ring = system_ring(kafka.bootstrap)  # after the letters: it holds the key of every one of them
        for letter in letters:
            h = letter["headers"]
            context = f"{h['schakel-original-topic']}:{h['schakel-original-partition']}:{h['schakel-original-offset']}"
            sealed = letter["value"].decode()  # type: ignore[attr-defined]
            if h["schakel-value-sealed"] == "v2":  # type: ignore[index]  # about a known child: under a key of that child
                opened = open_field(sealed, bootstrap=kafka.bootstrap, field="inbound_record", ring=ring)
                assert opened is not None
                raw = base64.b64decode(opened)
            else:
                raw = base64.b64decode(unseal(sealed, key=SEALING_KEY, context=context))
            if marker in raw:
                return {**letter, "raw": raw}
        return None

    return wait_until(find, timeout=30, message=f"dead letter with {marker!r}")


def test_a_signed_good_record_reaches_signals_received(intake: ServiceProcess, kafka: Broker) -> None:
    summary = f"inbound-good-{uuid.uuid4()}"
    event_id = str(uuid.uuid4())
    send_inbound(kafka.bootstrap, submitted_event(signal_body(category="OVERL", summary=summary), event_id=event_id))
    events = wait_until(lambda: [e for e in received_events(kafka.bootstrap)
                                 if summary_of(e, kafka.bootstrap) == summary], timeout=30)
    assert len(events) == 1
    data = events[0]["data"]
    assert data["partner_id"] == "politie-basisteam" and data["category"] == "OVERL"
    assert summary.encode() not in json.dumps(events[0]).encode()


def summary_of(event: dict[str, object], bootstrap: str) -> str | None:
    data: Any = event["data"]
    sealed = data.get("summary_sealed")
    return open_field(sealed, bootstrap=bootstrap, field="summary") if sealed else None


def test_a_redelivered_record_is_published_once(intake: ServiceProcess, kafka: Broker) -> None:
    event_id = str(uuid.uuid4())
    value = submitted_event(signal_body(category="GROEP"), event_id=event_id)
    send_inbound(kafka.bootstrap, value)
    send_inbound(kafka.bootstrap, value)
    marker = f"after-{event_id}".encode()
    send_inbound(kafka.bootstrap, b"not json " + marker)
    dead_letter_for(kafka, marker)  # everything before it has been handled
    groep = [e for e in received_events(kafka.bootstrap) if e["data"]["category"] == "GROEP"]
    assert len(groep) == 1


BAD_RECORDS = [
    ("bad_json", dict(value=b"{oops MARK"), "bad_json"),
    ("schema_violation", dict(value=submitted_event(signal_body(category="XYZ", summary="MARK"))), "unknown_category"),
    ("bad_bsn", dict(value=submitted_event(signal_body(subject={"bsn": "123456789"}, summary="MARK"))), "invalid_bsn"),
    ("not_a_cloudevent", dict(value=json.dumps({"category": "PEST", "x": "MARK"}).encode()), "bad_envelope"),
    ("wrong_type",
     dict(value=submitted_event(signal_body(summary="MARK")).replace(b"signal.submitted", b"signal.other")),
     "unknown_event_type"),
    ("oversize", dict(value=submitted_event(signal_body(summary="MARK" + "x" * MAX_BODY_BYTES))), "payload_too_large"),
    ("unsigned", dict(value=submitted_event(signal_body(summary="MARK")), signature=None), "bad_signature"),
    ("forged", dict(value=submitted_event(signal_body(summary="MARK")), signature="v1=00"), "bad_signature"),
    ("no_partner", dict(value=submitted_event(signal_body(summary="MARK")), partner=None), "missing_partner"),
    ("unknown_partner", dict(value=submitted_event(signal_body(summary="MARK")), partner="onbekend"),
     "unknown_partner"),
]


@pytest.mark.parametrize(("case", "record", "code"), BAD_RECORDS, ids=[c[0] for c in BAD_RECORDS])
def test_a_bad_record_lands_in_the_dead_letter_topic_with_provenance(
    intake: ServiceProcess, kafka: Broker, case: str, record: dict[str, object], code: str
) -> None:
    marker = f"MARK-{uuid.uuid4()}".encode()
    value = record["value"].replace(b"MARK", marker)  # type: ignore[attr-defined]
    options = {k: v for k, v in record.items() if k != "value"}
    send_inbound(kafka.bootstrap, value, **options)  # type: ignore[arg-type]
    letter = dead_letter_for(kafka, marker)
    headers = letter["headers"]
    assert headers["schakel-original-topic"] == "signals.inbound"  # type: ignore[index]
    assert int(headers["schakel-original-offset"]) >= 0  # type: ignore[index]
    assert headers["schakel-original-partition"].isdigit()  # type: ignore[index]
    assert headers["schakel-error-code"] == code  # type: ignore[index]
    assert marker not in letter["value"]  # type: ignore[operator]
    assert letter["raw"] == value


def test_the_consumer_never_restarted_and_dead_letters_are_counted(intake: ServiceProcess) -> None:
    assert intake.alive()
    assert intake.proc is not None
    metrics = httpx.get(f"{intake.base_url}/metrics").text
    assert 'intake_dead_letters_total{reason="bad_signature",topic="signals.inbound"} 2.0' in metrics
    assert 'intake_signals_accepted_total{channel="kafka",partner_kind="police"}' in metrics
    assert "Traceback" not in intake.log_path.read_text()
