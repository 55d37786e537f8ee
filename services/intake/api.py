"""POST /v1/signals: authenticate, validate, pseudonymise, publish, answer 202 after the ack."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from shared.events import deterministic_id, encode_event, make_event, utcnow
from shared.http import problem
from shared.municipality import Municipality, Partner
from shared.settings import Settings
from shared.topics import SIGNALS_RECEIVED
from services.intake.handlers import body_fingerprint, signal_id_for, to_signal_received
from services.intake.metrics import IntakeMetrics
from services.intake.publisher import BrokerUnavailable, Publisher
from services.intake.validation import MAX_BODY_BYTES, SignalIn, describe_errors, parse_signal

log = structlog.get_logger(__name__)
RETRY_AFTER_S = "5"


@dataclass
class IdempotencyRecord:
    """What a first request under a key produced."""

    fingerprint: str
    response: dict[str, Any]


@dataclass
class IntakeState:
    """Everything the routes need, built by app.create_app."""

    settings: Settings
    municipality: Municipality
    publisher: Publisher
    metrics: IntakeMetrics
    idempotency: dict[tuple[str, str], IdempotencyRecord] = field(default_factory=dict)
    key_locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)


def _authenticate(state: IntakeState, request: Request) -> Partner | JSONResponse:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    partner = state.municipality.partner_by_token(token.strip()) if scheme.lower() == "bearer" else None
    if partner is None:
        state.metrics.rejected.labels(partner_kind="unknown", reason="unauthenticated").inc()
        return problem(
            401, code="unauthenticated", title="Niet aangemeld",
            detail="Geef een geldig token mee in de Authorization-header (Bearer).",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if "signals:submit" not in partner.scopes:
        state.metrics.rejected.labels(partner_kind=partner.kind, reason="forbidden").inc()
        return problem(403, code="forbidden", title="Geen toestemming",
                       detail="Dit token mag geen signalen indienen (scope signals:submit ontbreekt).")
    return partner


async def _read_json(state: IntakeState, request: Request, partner: Partner) -> Any | JSONResponse:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        state.metrics.rejected.labels(partner_kind=partner.kind, reason="unsupported_media_type").inc()
        return problem(415, code="unsupported_media_type", title="Verkeerd formaat",
                       detail="Stuur het signaal als application/json.")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            state.metrics.rejected.labels(partner_kind=partner.kind, reason="payload_too_large").inc()
            return problem(413, code="payload_too_large", title="Bericht te groot",
                           detail=f"Een signaal is hoogstens {MAX_BODY_BYTES // 1024} KiB.")
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        state.metrics.rejected.labels(partner_kind=partner.kind, reason="bad_json").inc()
        return problem(400, code="bad_json", title="Ongeldige JSON", detail="De body is geen geldige JSON.")


def build_router(state: IntakeState) -> APIRouter:
    """The partner-facing routes of intake."""
    router = APIRouter()

    @router.post(
        "/v1/signals",
        status_code=202,
        summary="Een signaal indienen",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": SignalIn.model_json_schema(ref_template="#/components/schemas/{model}")}},
            }
        },
    )
    async def submit_signal(request: Request) -> Response:
        started = time.perf_counter()
        try:
            return await _submit(state, request)
        finally:
            state.metrics.request_duration.labels(route="/v1/signals", method="POST").observe(
                time.perf_counter() - started
            )

    return router


async def _submit(state: IntakeState, request: Request) -> Response:
    partner = _authenticate(state, request)
    if isinstance(partner, JSONResponse):
        return partner
    payload = await _read_json(state, request, partner)
    if isinstance(payload, JSONResponse):
        return payload
    try:
        signal = parse_signal(payload)
    except ValidationError as exc:
        errors = describe_errors(exc)
        state.metrics.rejected.labels(partner_kind=partner.kind, reason="validation_failed").inc()
        return problem(422, code=errors[0]["code"] if len(errors) == 1 else "validation_failed",
                       title="Het signaal is niet geldig", detail="Eén of meer velden zijn niet goed ingevuld.",
                       errors=errors)
    key = request.headers.get("idempotency-key")
    if key is not None and not (0 < len(key) <= 255):
        state.metrics.rejected.labels(partner_kind=partner.kind, reason="validation_failed").inc()
        return problem(422, code="invalid_idempotency_key", title="Ongeldige Idempotency-Key",
                       detail="De Idempotency-Key is 1 tot 255 tekens lang.",
                       errors=[{"field": "Idempotency-Key", "code": "invalid_idempotency_key",
                                "message": "De Idempotency-Key is 1 tot 255 tekens lang."}])
    if key is None:
        return await _publish(state, signal, partner, idempotency_key=None)
    slot = (partner.id, key)
    lock = state.key_locks.setdefault(slot, asyncio.Lock())
    async with lock:
        fingerprint = body_fingerprint(payload)
        record = state.idempotency.get(slot)
        if record is not None:
            if record.fingerprint != fingerprint:
                state.metrics.rejected.labels(partner_kind=partner.kind, reason="idempotency_conflict").inc()
                return problem(409, code="idempotency_conflict", title="Andere inhoud onder dezelfde sleutel",
                               detail="Deze Idempotency-Key is al gebruikt voor een ander signaal.")
            state.metrics.replays.inc()
            return _accepted(record.response)
        response = await _publish(state, signal, partner, idempotency_key=key)
        if response.status_code == 202:
            state.idempotency[slot] = IdempotencyRecord(fingerprint, json.loads(bytes(response.body)))
        return response


async def _publish(state: IntakeState, signal: SignalIn, partner: Partner, *, idempotency_key: str | None) -> Response:
    signal_id = signal_id_for(partner_id=partner.id, idempotency_key=idempotency_key, fallback=str(uuid.uuid4()))
    received = to_signal_received(
        signal, partner=partner, signal_id=signal_id, received_at=utcnow(),
        pseudonym_secret=state.settings.pseudonym_secret.get_secret_value(),
        sealing_key=state.settings.sealing_key.get_secret_value(),
    )
    event = make_event(received, source="schakel/intake", subject=signal_id, event_id=deterministic_id("received", signal_id))
    try:
        await state.publisher.publish(topic=SIGNALS_RECEIVED.name, key=received.subject_key, value=encode_event(event))
    except BrokerUnavailable:
        return problem(503, code="kafka_unavailable", title="Tijdelijk niet beschikbaar",
                       detail="Het signaal kon niet veilig worden opgeslagen. Probeer het later opnieuw.",
                       headers={"Retry-After": RETRY_AFTER_S})
    state.metrics.hop.produced.labels(topic=SIGNALS_RECEIVED.name).inc()
    state.metrics.accepted.labels(partner_kind=partner.kind, channel="http").inc()
    state.metrics.last_accepted.set(time.time())
    log.info("signal_accepted", signal_id=signal_id, partner_kind=partner.kind, category=received.category)
    return _accepted({"signal_id": signal_id, "reference": received.reference, "status": "received"})


def _accepted(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, status_code=202, headers={"Location": f"/v1/signals/{body['signal_id']}"})
