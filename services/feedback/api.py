"""GET /v1/signals/{id} and POST /v1/signals/{id}/events for partners, answered by any feedback worker.

A worker that owns the signal's partition reads its own table; any other asks the owner over Kafka and
waits for the answer (services.feedback.replies, ADR 0015). Changes always go through the owner's agent.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Literal

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.feedback.agents import FeedbackCore
from services.feedback.audit import audit_record, capacity, write_audit
from services.feedback.lifecycle import ChangeRequest, Refusal, SignalRecord, can_see, check
from services.feedback.port import SignalPort
from services.feedback.settings import FeedbackSettings
from services.feedback.sla import deadline_state
from shared.events import LifecycleChange, LifecycleRequested, utcnow
from shared.http import problem
from shared.municipality import Partner
from shared.pseudonym import seal, unseal
from shared.topics import AUDIT_LOG

log = structlog.get_logger(__name__)
AUDIT_TIMEOUT_S = 10.0


class EventIn(BaseModel):
    """The body of POST /v1/signals/{id}/events."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["acknowledged", "feedback", "closed", "rejected", "reopened", "withdrawn"]
    message: str | None = Field(default=None, min_length=1, max_length=2000)
    outcome: str | None = None
    reason: str | None = Field(default=None, min_length=1, max_length=200)


def signal_view(record: SignalRecord, *, partner_id: str, sealing_key: str) -> dict[str, Any]:
    """What a partner may see of a signal: the summary only for the assigned body."""
    now = utcnow()
    view: dict[str, Any] = {
        "signal_id": record.signal_id,
        "reference": record.reference,
        "category": record.category,
        "urgency": record.urgency.value,
        "route": record.route.value,
        "body": {"id": record.body_id, "name": record.body_name},
        "status": record.status.value,
        "match": record.matched,
        "routing": {"rule_id": record.rule_id, "description": record.rule_description, "facts": record.facts},
        "deadlines": [
            {"clock": d.clock, "due_at": d.due_at.isoformat(), "rule": d.rule, "policy": d.policy_id,
             "state": deadline_state(d, now=now, met_at=record.met.get(d.clock))}
            for d in record.deadlines
        ],
        "feedback": [unseal(m, key=sealing_key, context=record.signal_id) for m in record.feedback_sealed],
        "history": [
            {"type": h.change.value, "status": h.status.value, "actor": h.actor_partner_id, "at": h.at.isoformat(),
             **({"outcome": h.outcome} if h.outcome else {}), **({"reason": h.reason} if h.reason else {})}
            for h in record.history
        ],
    }
    if partner_id in record.body_partner_ids and record.summary_sealed:
        view["summary"] = unseal(record.summary_sealed, key=sealing_key, context=record.signal_id)
    return view


def build_router(core: FeedbackCore, settings: FeedbackSettings) -> APIRouter:
    """The partner-facing routes of feedback."""
    router = APIRouter()
    port = SignalPort(core)
    sealing_key = settings.sealing_key.get_secret_value()

    def authenticate(request: Request) -> Partner | None:
        return core.municipality.partner_for_authorization(request.headers.get("authorization"))

    async def audited(response: Response, *, signal_id: str, partner: Partner, record: SignalRecord | None,
                      action: str, request_id: str | None = None) -> Response:
        """Write the audit record of this access before answering; no audit, no answer (503)."""
        entry = audit_record(signal_id=signal_id, partner_id=partner.id, on_behalf_of=capacity(record, partner.id),
                             action=action, http_status=response.status_code, at=utcnow(), request_id=request_id)
        try:
            await asyncio.wait_for(write_audit(core.app, entry), timeout=AUDIT_TIMEOUT_S)
            core.metrics.hop.produced.labels(topic=AUDIT_LOG.name).inc()
        except TimeoutError:
            log.error("audit_write_failed", signal_id=signal_id, partner=partner.id, action=action)
            return problem(503, code="audit_unavailable", title="Tijdelijk niet beschikbaar",
                           detail="De toegang kan nu niet worden vastgelegd; probeer het zo opnieuw.",
                           headers={"Retry-After": "5"})
        return response

    @router.get("/v1/signals/{signal_id}", summary="De stand van een signaal")
    async def get_signal(signal_id: str, request: Request) -> Response:
        partner = authenticate(request)
        if partner is None:
            return _unauthenticated()
        try:
            record = await port.read(signal_id)
        except TimeoutError:
            return _unavailable()
        if record is None or not can_see(record, partner.id):
            return await audited(_not_found(), signal_id=signal_id, partner=partner, record=record, action="read")
        log.info("signal_read", signal_id=signal_id, partner=partner.id)
        view = JSONResponse(signal_view(record, partner_id=partner.id, sealing_key=sealing_key))
        return await audited(view, signal_id=signal_id, partner=partner, record=record, action="read")

    @router.post("/v1/signals/{signal_id}/events", summary="Een signaal oppakken, terugkoppelen, afsluiten, ...")
    async def post_event(signal_id: str, request: Request) -> Response:
        partner = authenticate(request)
        if partner is None:
            return _unauthenticated()
        if "signals:update" not in partner.scopes:
            return problem(403, code="forbidden", title="Geen toestemming",
                           detail="Dit token mag signalen niet bijwerken (scope signals:update ontbreekt).")
        try:
            body = EventIn.model_validate_json(await request.body())
        except ValidationError as exc:
            errors = [{"field": ".".join(str(p) for p in e["loc"]) or "body", "code": "invalid_value",
                       "message": "Dit veld ontbreekt of is ongeldig."} for e in exc.errors()]
            return problem(422, code="validation_failed", title="Ongeldig verzoek",
                           detail="Het verzoek is niet goed ingevuld.", errors=errors)
        request_id = str(uuid.uuid4())
        response, record = await change_signal(signal_id, partner, body, request_id)
        return await audited(response, signal_id=signal_id, partner=partner, record=record, action=body.type,
                             request_id=request_id)

    async def change_signal(signal_id: str, partner: Partner, body: EventIn,
                            request_id: str) -> tuple[Response, SignalRecord | None]:
        """Ask the owner's agent for the change through Kafka and wait for its answer."""
        message_sealed = seal(body.message, key=sealing_key, context=signal_id) if body.message else None
        change = ChangeRequest(change=LifecycleChange(body.type), actor_partner_id=partner.id, at=utcnow(),
                               outcome=body.outcome, reason=body.reason, message_sealed=message_sealed)
        before: SignalRecord | None = None
        if port.is_local(signal_id):  # a quick answer from the local table; the agent checks again
            before = core.get(signal_id)
            refusal = check(before, change)
            if refusal is not None:
                return _refused(refusal, before, partner_id=partner.id, sealing_key=sealing_key), before
        asked = LifecycleRequested(
            request_id=request_id, signal_id=signal_id, change=change.change, partner_id=partner.id,
            message_sealed=message_sealed, outcome=body.outcome, reason=body.reason, requested_at=change.at,
            reply_to=core.replies.worker_id,
        )
        try:
            answer = await port.request(asked)
        except TimeoutError:
            return problem(503, code="not_confirmed", title="Nog niet bevestigd",
                           detail="De wijziging is nog niet bevestigd. "
                                  "Vraag de stand op en probeer het zo nodig opnieuw.",
                           headers={"Retry-After": "5"}), before
        if isinstance(answer.outcome, Refusal):
            return _refused(answer.outcome, answer.current, partner_id=partner.id,
                            sealing_key=sealing_key), answer.current
        return JSONResponse(signal_view(answer.outcome, partner_id=partner.id, sealing_key=sealing_key)), answer.outcome

    return router


def _unauthenticated() -> JSONResponse:
    return problem(401, code="unauthenticated", title="Niet aangemeld",
                   detail="Geef een geldig token mee in de Authorization-header (Bearer).",
                   headers={"WWW-Authenticate": "Bearer"})


def _unavailable() -> JSONResponse:
    return problem(503, code="signal_unavailable", title="Tijdelijk niet beschikbaar",
                   detail="De stand van dit signaal kan nu niet worden opgehaald; probeer het zo opnieuw.",
                   headers={"Retry-After": "5"})


def _not_found() -> JSONResponse:
    return problem(404, code="signal_not_found", title="Niet gevonden",
                   detail="Dit signaal bestaat niet of is niet voor u zichtbaar.")


def _refused(refusal: Refusal, record: SignalRecord | None, *, partner_id: str, sealing_key: str) -> JSONResponse:
    """A refusal as problem+json; a 409 carries the current state (status and the whole view)."""
    extra = None
    if refusal.status == 409 and record is not None:
        extra = {"current_status": record.status.value,
                 "signal": signal_view(record, partner_id=partner_id, sealing_key=sealing_key)}
    return problem(refusal.status, code=refusal.code,
                   title="Niet gevonden" if refusal.status == 404 else "Niet toegestaan", detail=refusal.message,
                   extra=extra)
