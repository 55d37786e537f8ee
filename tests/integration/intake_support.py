"""Helpers for intake's integration tests: a municipality file with known tokens, processes, topic readers."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from schakel.kafka_broker import free_port
from schakel.processes import ServiceProcess
from services.intake.settings import IntakeSettings
from services.intake.signing import PARTNER_HEADER, SIGNATURE_HEADER, partner_signing_key, sign
from shared.municipality import MunicipalityInfo, hash_token
from shared.settings import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "gemeente-voorbeeld.yaml"
READ_ONLY_PARTNER = "alleen-bijwerken"
SIGNING_SECRET = "test-inbound-signing-secret"
PSEUDONYM_SECRET = "test-pseudonym-secret"
SEALING_KEY = "test-sealing-key"
VALID_BSN = "111222333"  # passes the elfproef
OTHER_BSN = "123456782"


def token(partner_id: str) -> str:
    """The test token of a partner."""
    return f"test-token-{partner_id}"


def auth(partner_id: str = "obs-de-linde") -> dict[str, str]:
    """An Authorization header for a partner."""
    return {"Authorization": f"Bearer {token(partner_id)}"}


def write_municipality(directory: Path) -> Path:
    """The example municipality with test tokens, plus a partner that may only update signals."""
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    # The example and the schema are edited by others; keep only what the schema knows.
    data["municipality"] = {k: v for k, v in data["municipality"].items() if k in MunicipalityInfo.model_fields}
    for partner in data["partners"]:
        partner["token_hashes"] = [hash_token(token(partner["id"]))]
    data["partners"].append({
        "id": READ_ONLY_PARTNER, "kind": "municipality", "name": "Alleen bijwerken", "scopes": ["signals:update"],
        "token_hashes": [hash_token(token(READ_ONLY_PARTNER))],
        "contact": {"name": "Beheer", "email": "beheer@lindendam.example"},
    })
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "gemeente.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def intake_env(*, bootstrap: str, config: Path, state_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for an intake process (or Settings) on a test broker."""
    return {
        "SCHAKEL_KAFKA_BOOTSTRAP": bootstrap, "SCHAKEL_CONFIG": str(config), "SCHAKEL_STATE_DIR": str(state_dir),
        "SCHAKEL_PSEUDONYM_SECRET": PSEUDONYM_SECRET, "SCHAKEL_SEALING_KEY": SEALING_KEY,
        "SCHAKEL_INBOUND_SIGNING_SECRET": SIGNING_SECRET, "SCHAKEL_LOG_FORMAT": "json",
        "SCHAKEL_INTAKE_RATE_PER_MINUTE": "60000", "SCHAKEL_INTAKE_RATE_BURST": "10000", **extra,
    }


def settings_for(bootstrap: str, directory: Path, **extra: Any) -> IntakeSettings:
    """Settings for an in-process intake on a test broker."""
    env = intake_env(bootstrap=bootstrap, config=write_municipality(directory), state_dir=directory / "state")
    values: dict[str, Any] = {key.removeprefix("SCHAKEL_").lower(): value for key, value in env.items()}
    return IntakeSettings(**{**values, **extra})


def start_intake(
    directory: Path, *, bootstrap: str, config: Path, name: str = "intake", **extra: str
) -> ServiceProcess:
    """Start intake as its own process on a free port and wait until it is ready."""
    process = ServiceProcess(
        "intake", free_port(), intake_env(bootstrap=bootstrap, config=config, state_dir=directory / "state", **extra),
        directory / f"{name}.log",
    )
    process.start()
    process.wait_ready(timeout=60)
    return process


def signal_body(**overrides: Any) -> dict[str, Any]:
    """A valid POST /v1/signals body."""
    body: dict[str, Any] = {
        "category": "PEST", "urgency": "U2",
        "subject": {"bsn": VALID_BSN, "school_brin": "12AB", "pupil_ref": "4711"},
        "flags": ["SIBLING_LINK"], "postcode_area": "1234", "summary": "Wordt gepest op het plein.",
        "observed_at": "2025-11-20T21:30:00+01:00",
        "reporter": {"name": "Juf Anna", "email": "anna@delinde.example"},
        "legal_basis": "meldrecht", "parents_informed": False,
    }
    body.update(overrides)
    return body


def wait_until(condition: Callable[[], Any], *, timeout: float, interval: float = 0.2, message: str = "") -> Any:
    """Poll a condition until it is truthy (returned) or fail after the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {message}")
        time.sleep(interval)


def read_topic(bootstrap: str, topic: str, *, timeout_s: float = 3.0) -> list[Any]:
    """Every record currently in a topic (all partitions, from the beginning)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                             group_id=None, consumer_timeout_ms=int(timeout_s * 1000))
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in tps) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def received_events(bootstrap: str, *, signal_id: str | None = None) -> list[dict[str, Any]]:
    """The CloudEvents on signals.received, optionally for one signal id."""
    events = [json.loads(r.value) for r in read_topic(bootstrap, "signals.received")]
    return [e for e in events if signal_id is None or e["data"]["signal_id"] == signal_id]


def submitted_event(body: dict[str, Any], *, event_id: str | None = None) -> bytes:
    """A partner's CloudEvent for signals.inbound."""
    return json.dumps({
        "specversion": "1.0", "id": event_id or str(uuid.uuid4()), "source": "urn:partner:test",
        "type": "nl.schakel.signal.submitted.v1", "time": "2025-11-21T08:00:00Z",
        "datacontenttype": "application/json", "data": body,
    }).encode()


def send_inbound(
    bootstrap: str, value: bytes, *, partner: str | None = "politie-basisteam", signature: str | None = "valid",
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    """Produce one record to signals.inbound as a Kafka-connected partner would (signed unless told)."""
    all_headers = list(headers or [])
    if partner is not None:
        all_headers.append((PARTNER_HEADER, partner.encode()))
        if signature == "valid":
            key = partner_signing_key(master_secret=SIGNING_SECRET, partner_id=partner)
            all_headers.append((SIGNATURE_HEADER, sign(value, signing_key=key).encode()))
        elif signature is not None:
            all_headers.append((SIGNATURE_HEADER, signature.encode()))
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        producer.send("signals.inbound", key=(partner or "").encode(), value=value, headers=all_headers).get(timeout=30)
    finally:
        producer.close()
