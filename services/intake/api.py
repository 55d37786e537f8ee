"""POST /v1/signals: authenticate, rate-limit, read JSON, hand to Intake, answer 202 only after Kafka's ack."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.intake.metrics import IntakeMetrics
from services.intake.ratelimit import RateLimiter
from services.intake.submission import Accepted, Intake, Rejected
from services.intake.validation import MAX_BODY_BYTES
from shared import fastjson
from shared.http import problem
from shared.municipality import Partner
from shared.persons import Actor, IdpUnavailable, PersonTokens, authenticate

SIGNALS_ROUTE = "/v1/signals"


@dataclass
class IntakeState:
    """Everything the routes need, built by app.create_app."""

    intake: Intake
    limiter: RateLimiter
    metrics: IntakeMetrics
    persons: PersonTokens | None = None  # people's access tokens are accepted when an identity provider is set


def to_response(outcome: Accepted | Rejected) -> Response:
    """202 with Location for an accepted signal, problem+json for a refusal."""
    if isinstance(outcome, Accepted):
        body = outcome.body
        # The same compact JSON bytes as JSONResponse, for the first answer and every replay alike.
        return Response(fastjson.dumps(body), status_code=202, media_type="application/json",
                        headers={"Location": f"/v1/signals/{body['signal_id']}"})
    headers: dict[str, str] = {}
    if outcome.retry_after is not None:
        headers["Retry-After"] = str(outcome.retry_after)
    if outcome.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return problem(outcome.status, code=outcome.code, title=outcome.title, detail=outcome.detail,
                   errors=outcome.errors, headers=headers or None)


async def _authenticate(state: IntakeState, request: Request) -> Actor | Rejected:
    try:
        actor = await authenticate(request.headers.get("authorization"), municipality=state.intake.municipality,
                                   persons=state.persons)
    except IdpUnavailable:
        return Rejected(503, "idp_unavailable", "Tijdelijk niet beschikbaar",
                        "Uw aanmelding kan nu niet worden gecontroleerd; probeer het zo opnieuw.", retry_after=5)
    if actor is None:
        return state.intake.reject("unknown", Rejected(
            401, "unauthenticated", "Niet aangemeld", "Geef een geldig token mee in de Authorization-header (Bearer)."))
    if "signals:submit" not in actor.partner.scopes:
        return state.intake.reject(actor.partner.kind, Rejected(
            403, "forbidden", "Geen toestemming",
            "Dit token mag geen signalen indienen (scope signals:submit ontbreekt)."))
    return actor


def as_reported_by(payload: Any, actor: Actor) -> Any:
    """A person submits as themselves: the reporter is the person the token names, whatever the body says."""
    if actor.person is None or not isinstance(payload, dict):
        return payload
    return {**payload, "reporter": {"name": actor.person.name, "email": actor.person.email}}


async def _read_json(state: IntakeState, request: Request, partner: Partner) -> Any | Rejected:
    reject = state.intake.reject
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        return reject(partner.kind, Rejected(415, "unsupported_media_type", "Verkeerd formaat",
                                             "Stuur het signaal als application/json."))
    too_large = Rejected(413, "payload_too_large", "Bericht te groot",
                         f"Een signaal is hoogstens {MAX_BODY_BYTES // 1024} KiB.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return reject(partner.kind, too_large)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return reject(partner.kind, too_large)
    try:
        return fastjson.loads(bytes(body))
    except (ValueError, RecursionError):
        return reject(partner.kind, Rejected(400, "bad_json", "Ongeldige JSON", "De body is geen geldige JSON."))


async def _submit(state: IntakeState, request: Request) -> Accepted | Rejected:
    actor = await _authenticate(state, request)
    if isinstance(actor, Rejected):
        return actor
    partner = actor.partner
    wait = state.limiter.acquire(partner.id)
    if wait is not None:
        return state.intake.reject(partner.kind, Rejected(
            429, "rate_limited", "Te veel verzoeken",
            "Er komen te veel signalen tegelijk binnen; probeer het zo opnieuw.",
            retry_after=wait))
    payload = await _read_json(state, request, partner)
    if isinstance(payload, Rejected):
        return payload
    settings = state.intake.settings
    return await state.intake.submit(
        as_reported_by(payload, actor), partner=partner, idempotency_key=request.headers.get("idempotency-key"),
        channel="http", wait_s=3 * settings.intake_send_timeout_s,
    )


def build_router(state: IntakeState) -> APIRouter:
    """The partner-facing routes of intake (their OpenAPI is written out in services.intake.openapi)."""
    router = APIRouter()

    @router.post(SIGNALS_ROUTE, status_code=202, summary="Een signaal indienen", operation_id="submit_signal")
    async def submit_signal(request: Request) -> Response:
        started = time.perf_counter()
        try:
            return to_response(await _submit(state, request))
        finally:
            state.metrics.request_duration.labels(route=SIGNALS_ROUTE, method="POST").observe(
                time.perf_counter() - started
            )

    return router
