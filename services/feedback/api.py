"""GET /v1/signals/{id} and POST /v1/signals/{id}/events for partners, answered by any feedback worker.

A worker that owns the signal's partition reads its own table; any other asks the owner over Kafka and
waits for the answer (services.feedback.replies, ADR 0015). Changes always go through the owner's agent.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable
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
from shared.http import parsed_body, problem
from shared.keystore import KeyStore
from shared.municipality import Municipality
from shared.persons import Actor, IdpUnavailable, PersonTokens, authenticate, person_tokens
from shared.pseudonym import seal
from shared.topics import AUDIT_LOG

log = structlog.get_logger(__name__)
AUDIT_TIMEOUT_S = 10.0
View = Callable[[SignalRecord, Actor], Awaitable[dict[str, Any]]]
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


SUMMARY_FIELD = "summary"
MESSAGE_FIELD = "feedback_message"


class SignalGone(LookupError):
    """The signal's data key was destroyed (erased): it answers as a signal that does not exist."""


async def open_field(keys: KeyStore, token: str, *, field: str, signal_id: str) -> str:
    """The text of a personal field (tokens from before per-child keys open with the sealing key)."""
    text = await keys.decrypt(token, field=field, legacy_context=signal_id)
    if text is None:
        raise SignalGone(signal_id)
    return text


async def still_there(keys: KeyStore, record: SignalRecord) -> bool:
    """Whether the signal's data key exists (a signal from before per-child keys has none: it counts as there)."""
    if record.subject_key is None:
        return True
    return await keys.data_key(record.subject_key, record.signal_id) is not None


async def seal_message(keys: KeyStore, message: str, *, record: SignalRecord | None, signal_id: str,
                       request_id: str, legacy_key: str) -> str | None:
    """A feedback message encrypted under the signal's data key; None when that key is gone (erased)."""
    if record is None or record.subject_key is None:  # unknown here (the agent answers 404) or from before
        return seal(message, key=legacy_key, context=signal_id)
    if await keys.data_key(record.subject_key, signal_id) is None:
        return None
    return await keys.encrypt(message, subject=record.subject_key, kid=signal_id, event_id=request_id,
                              field=MESSAGE_FIELD)


async def signal_view(record: SignalRecord, *, partner_id: str, keys: KeyStore, person: PersonScope | None = None,
                      reporter_kind: str = "") -> dict[str, Any]:
    """What a partner (or a person) may see of a signal: the summary only for the assigned body.

    SignalGone when the signal's data key was destroyed: an erased signal answers as one that does not exist.
    """
    if not await still_there(keys, record):
        raise SignalGone(record.signal_id)
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
        "feedback": [await open_field(keys, m, field=MESSAGE_FIELD, signal_id=record.signal_id)
                     for m in record.feedback_sealed],
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
        view["summary"] = await open_field(keys, record.summary_sealed, field=SUMMARY_FIELD,
                                           signal_id=record.signal_id)
    return view


def build_router(core: FeedbackCore, settings: FeedbackSettings) -> APIRouter:
    """The partner-facing routes of feedback."""
    router = APIRouter()
    port = SignalPort(core)
    sealing_key = settings.sealing_key.get_secret_value()
    persons = person_tokens(settings.oidc_issuer, settings.oidc_audience)
    municipality = core.municipality
    keys = core.keys

    async def caller(request: Request, signal_id: str) -> Actor | Response:
        return await _caller(request, signal_id, municipality=municipality, persons=persons)

    async def view_of(record: SignalRecord, actor: Actor) -> dict[str, Any]:
        reporter = municipality.partners.get(record.reporter_partner_id)
        return await signal_view(record, partner_id=actor.partner_id, keys=keys,
                                 person=person_scope(actor, municipality),
                                 reporter_kind=reporter.kind if reporter else "")

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
        try:
            view = JSONResponse(await view_of(record, actor))
        except SignalGone:
            return await audited(_not_found(), signal_id=signal_id, actor=actor, record=None, action="read")
        except TimeoutError:
            return _unavailable()
        log.info("signal_read", signal_id=signal_id, partner=actor.partner_id, person=actor.person is not None)
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
        try:
            response, record = await change_signal(signal_id, actor, body, request_id, core=core, port=port,
                                                   view_of=view_of, sealing_key=sealing_key)
        except SignalGone:
            response, record = _not_found(), None
        except TimeoutError:
            return _unavailable()
        return await audited(response, signal_id=signal_id, actor=actor, record=record, action=body.type,
                             request_id=request_id)

    return router


async def change_signal(signal_id: str, actor: Actor, body: EventIn, request_id: str, *, core: FeedbackCore,
                        port: SignalPort, view_of: View, sealing_key: str) -> tuple[Response, SignalRecord | None]:
    """Ask the owner's agent for the change through Kafka and wait for its answer (SignalGone: erased)."""
    keys, municipality = core.keys, core.municipality
    local = port.is_local(signal_id)
    before: SignalRecord | None = core.get(signal_id) if local else None
    message_sealed = await _message_sealed(port, keys, body.message, known=before, local=local,
                                           signal_id=signal_id, request_id=request_id, legacy_key=sealing_key)
    change = ChangeRequest(change=LifecycleChange(body.type), actor_partner_id=actor.partner_id, at=utcnow(),
                           outcome=body.outcome, reason=body.reason, message_sealed=message_sealed,
                           person=person_scope(actor, municipality), regie_body_id=body.regie_body_id)
    if local:  # a quick answer from the local table; the agent checks again
        refusal = check(before, change)
        if refusal is not None:
            return await _refused(refusal, before, view=view_of, actor=actor), before
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
        return await _refused(answer.outcome, answer.current, view=view_of, actor=actor), answer.current
    return JSONResponse(await view_of(answer.outcome, actor)), answer.outcome



async def _message_sealed(port: SignalPort, keys: KeyStore, message: str | None, *, known: SignalRecord | None,
                          local: bool, signal_id: str, request_id: str, legacy_key: str) -> str | None:
    """The feedback message encrypted under its signal's key (None without one); SignalGone once erased."""
    if not message:
        return None
    record = known if local else await port.read(signal_id)
    sealed = await seal_message(keys, message, record=record, signal_id=signal_id, request_id=request_id,
                                legacy_key=legacy_key)
    if sealed is None:
        raise SignalGone(signal_id)
    return sealed


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
    return parsed_body(EventIn, raw, invalid=_invalid_event)


def _invalid_event(exc: ValidationError) -> JSONResponse:
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


async def _refused(refusal: Refusal, record: SignalRecord | None, *,
                   view: View, actor: Actor) -> JSONResponse:
    """A refusal as problem+json; a 409 carries the current state (status and the whole view)."""
    extra = None
    if refusal.status == 409 and record is not None:
        extra = {"current_status": record.status.value, "signal": await view(record, actor)}
    return problem(refusal.status, code=refusal.code,
                   title="Niet gevonden" if refusal.status == 404 else "Niet toegestaan", detail=refusal.message,
                   extra=extra)
