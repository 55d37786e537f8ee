"""GET /v1/signals/{id} and POST /v1/signals/{id}/events for partners, answered by any feedback worker.

A worker that owns the signal's partition reads its own table; any other asks the owner over Kafka and
waits for the answer (services.feedback.replies, ADR 0015). Changes always go through the owner's agent.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from typing import Any, Literal

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.feedback.agents import FeedbackCore
from services.feedback.audit import audit_record, capacity, write_audit
from services.feedback.lifecycle import (
    ChangeRequest,
    PersonScope,
    Refusal,
    SignalRecord,
    can_see,
    check,
    is_body,
    is_reporter,
    may_read_free_text,
)
from services.feedback.port import SignalPort
from services.feedback.settings import FeedbackSettings
from services.feedback.sla import deadline_state
from shared.events import LifecycleChange, LifecycleRequested, utcnow
from shared.http import problem
from shared.municipality import Municipality
from shared.persons import Actor, IdpUnavailable, PersonTokens, authenticate, person_tokens
from shared.pseudonym import seal, unseal
from shared.topics import AUDIT_LOG

log = structlog.get_logger(__name__)
AUDIT_TIMEOUT_S = 10.0
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class EventIn(BaseModel):
    """The body of POST /v1/signals/{id}/events."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["acknowledged", "feedback", "closed", "rejected", "reopened", "withdrawn", "regie"]
    message: str | None = Field(default=None, min_length=1, max_length=2000)
    outcome: str | None = None
    reason: str | None = Field(default=None, min_length=1, max_length=200)
    regie_body_id: str | None = Field(default=None, min_length=1, max_length=100)  # for "regie": who leads


def person_scope(actor: Actor, municipality: Municipality) -> PersonScope | None:
    """The bodies the municipality file lists a person for; None for a partner system."""
    if actor.person is None:
        return None
    return PersonScope(email=actor.person.email, roles=municipality.roles_of_person(actor.person.email,
                                                                                    actor.partner_id))


def signal_view(record: SignalRecord, *, partner_id: str, sealing_key: str, person: PersonScope | None = None,
                reporter_kind: str = "") -> dict[str, Any]:
    """What a partner (or a person) may see of a signal: the summary only for the assigned body."""
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
        "received_at": record.received_at.isoformat(),
        "routing": {"rule_id": record.rule_id, "description": record.rule_description, "facts": record.facts},
        "deadlines": [
            {"clock": d.clock, "due_at": d.due_at.isoformat(), "rule": d.rule, "policy": d.policy_id,
             "state": deadline_state(d, now=now, met_at=record.met.get(d.clock))}
            for d in record.deadlines
        ],
        "feedback": [unseal(m, key=sealing_key, context=record.signal_id) for m in record.feedback_sealed],
        "history": [
            {"type": h.change.value, "status": h.status.value, "actor": h.actor_partner_id, "at": h.at.isoformat(),
             **({"person": h.actor_person} if h.actor_person else {}),
             **({"outcome": h.outcome} if h.outcome else {}), **({"reason": h.reason} if h.reason else {})}
            for h in record.history
        ],
        **({"regie": {"id": record.regie_body_id}} if record.regie_body_id else {}),
        "viewer": {"reporter": is_reporter(record, partner_id, person), "body": is_body(record, partner_id, person),
                   "role": person.roles.get(record.body_id) if person else None},
    }
    if record.summary_sealed and may_read_free_text(record, partner_id, person, reporter_kind=reporter_kind):
        view["summary"] = unseal(record.summary_sealed, key=sealing_key, context=record.signal_id)
    return view


def build_router(core: FeedbackCore, settings: FeedbackSettings) -> APIRouter:
    """The partner-facing routes of feedback."""
    router = APIRouter()
    port = SignalPort(core)
    sealing_key = settings.sealing_key.get_secret_value()
    persons = person_tokens(settings.oidc_issuer, settings.oidc_audience)
    municipality = core.municipality

    async def caller(request: Request, signal_id: str) -> Actor | Response:
        return await _caller(request, signal_id, municipality=municipality, persons=persons)

    def view_of(record: SignalRecord, actor: Actor) -> dict[str, Any]:
        reporter = municipality.partners.get(record.reporter_partner_id)
        return signal_view(record, partner_id=actor.partner_id, sealing_key=sealing_key,
                           person=person_scope(actor, municipality), reporter_kind=reporter.kind if reporter else "")

    async def audited(response: Response, *, signal_id: str, actor: Actor, record: SignalRecord | None,
                      action: str, request_id: str | None = None) -> Response:
        """Write the audit record of this access before answering; no audit, no answer (503)."""
        partner = actor.partner
        entry = audit_record(signal_id=signal_id, partner_id=partner.id,
                             on_behalf_of=capacity(record, partner.id, person_scope(actor, municipality)),
                             action=action, http_status=response.status_code, at=utcnow(), request_id=request_id,
                             person=actor.person)
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
        actor = await caller(request, signal_id)
        if isinstance(actor, Response):
            return actor
        try:
            record = await port.read(signal_id)
        except TimeoutError:
            return _unavailable()
        if record is None or not can_see(record, actor.partner_id, person_scope(actor, municipality)):
            return await audited(_not_found(), signal_id=signal_id, actor=actor, record=record, action="read")
        log.info("signal_read", signal_id=signal_id, partner=actor.partner_id, person=actor.person is not None)
        view = JSONResponse(view_of(record, actor))
        return await audited(view, signal_id=signal_id, actor=actor, record=record, action="read")

    @router.post("/v1/signals/{signal_id}/events", summary="Een signaal oppakken, terugkoppelen, afsluiten, ...")
    async def post_event(signal_id: str, request: Request) -> Response:
        actor = await caller(request, signal_id)
        if isinstance(actor, Response):
            return actor
        if "signals:update" not in actor.partner.scopes:
            return problem(403, code="forbidden", title="Geen toestemming",
                           detail="Dit token mag signalen niet bijwerken (scope signals:update ontbreekt).")
        body = _event_in(await request.body())
        if isinstance(body, Response):
            return body
        if body.regie_body_id is not None and body.regie_body_id not in municipality.bodies:
            return problem(422, code="unknown_body", title="Ongeldig verzoek", detail="Dit overleg bestaat niet.",
                           errors=[{"field": "regie_body_id", "code": "unknown_body",
                                    "message": "Kies een overleg uit de lijst."}])
        request_id = str(uuid.uuid4())
        response, record = await change_signal(signal_id, actor, body, request_id)
        return await audited(response, signal_id=signal_id, actor=actor, record=record, action=body.type,
                             request_id=request_id)

    async def change_signal(signal_id: str, actor: Actor, body: EventIn,
                            request_id: str) -> tuple[Response, SignalRecord | None]:
        """Ask the owner's agent for the change through Kafka and wait for its answer."""
        message_sealed = seal(body.message, key=sealing_key, context=signal_id) if body.message else None
        change = ChangeRequest(change=LifecycleChange(body.type), actor_partner_id=actor.partner_id, at=utcnow(),
                               outcome=body.outcome, reason=body.reason, message_sealed=message_sealed,
                               person=person_scope(actor, municipality), regie_body_id=body.regie_body_id)
        before: SignalRecord | None = None
        if port.is_local(signal_id):  # a quick answer from the local table; the agent checks again
            before = core.get(signal_id)
            refusal = check(before, change)
            if refusal is not None:
                return _refused(refusal, before, view=view_of, actor=actor), before
        asked = LifecycleRequested(
            request_id=request_id, signal_id=signal_id, change=change.change, partner_id=actor.partner_id,
            person_email=actor.person_email, message_sealed=message_sealed, outcome=body.outcome, reason=body.reason,
            regie_body_id=body.regie_body_id, requested_at=change.at, reply_to=core.replies.worker_id,
        )
        try:
            answer = await port.request(asked)
        except TimeoutError:
            return problem(503, code="not_confirmed", title="Nog niet bevestigd",
                           detail="De wijziging is nog niet bevestigd. "
                                  "Vraag de stand op en probeer het zo nodig opnieuw.",
                           headers={"Retry-After": "5"}), before
        if isinstance(answer.outcome, Refusal):
            return _refused(answer.outcome, answer.current, view=view_of, actor=actor), answer.current
        return JSONResponse(view_of(answer.outcome, actor)), answer.outcome

    return router


async def _caller(request: Request, signal_id: str, *, municipality: Municipality,
                  persons: PersonTokens | None) -> Actor | Response:
    """The partner system or person behind the request, or the problem to answer (401, 503; 400 for an id that
    cannot be a signal's)."""
    try:
        actor = await authenticate(request.headers.get("authorization"), municipality=municipality, persons=persons)
    except IdpUnavailable:
        return problem(503, code="idp_unavailable", title="Tijdelijk niet beschikbaar",
                       detail="Uw aanmelding kan nu niet worden gecontroleerd; probeer het zo opnieuw.",
                       headers={"Retry-After": "5"})
    if actor is None:
        return _unauthenticated()
    return actor if _UUID.match(signal_id) else _bad_signal_id()


def _event_in(raw: bytes) -> EventIn | JSONResponse:
    """The body of an event request, or the 400 (not JSON) or 422 (names what is wrong)."""
    try:
        return EventIn.model_validate_json(raw)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            return problem(400, code="bad_json", title="Ongeldige JSON", detail="De body is geen geldige JSON.")
        errors = [{"field": ".".join(str(p) for p in e["loc"]) or "body", "code": "invalid_value",
                   "message": "Dit veld ontbreekt of is ongeldig."} for e in exc.errors()]
        return problem(422, code="validation_failed", title="Ongeldig verzoek",
                       detail="Het verzoek is niet goed ingevuld.", errors=errors)


def _unauthenticated() -> JSONResponse:
    return problem(401, code="unauthenticated", title="Niet aangemeld",
                   detail="Geef een geldig token mee in de Authorization-header (Bearer).",
                   headers={"WWW-Authenticate": "Bearer"})


def _bad_signal_id() -> JSONResponse:
    return problem(400, code="bad_signal_id", title="Ongeldige signaal-id",
                   detail="Een signaal-id is een UUID (zoals in het antwoord op het indienen).")


def _unavailable() -> JSONResponse:
    return problem(503, code="signal_unavailable", title="Tijdelijk niet beschikbaar",
                   detail="De stand van dit signaal kan nu niet worden opgehaald; probeer het zo opnieuw.",
                   headers={"Retry-After": "5"})


def _not_found() -> JSONResponse:
    return problem(404, code="signal_not_found", title="Niet gevonden",
                   detail="Dit signaal bestaat niet of is niet voor u zichtbaar.")


def _refused(refusal: Refusal, record: SignalRecord | None, *,
             view: Callable[[SignalRecord, Actor], dict[str, Any]], actor: Actor) -> JSONResponse:
    """A refusal as problem+json; a 409 carries the current state (status and the whole view)."""
    extra = None
    if refusal.status == 409 and record is not None:
        extra = {"current_status": record.status.value, "signal": view(record, actor)}
    return problem(refusal.status, code=refusal.code,
                   title="Niet gevonden" if refusal.status == 404 else "Niet toegestaan", detail=refusal.message,
                   extra=extra)
