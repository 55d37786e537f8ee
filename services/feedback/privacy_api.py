"""POST /v1/privacy/erasures: the privacy officer erases a child (AVG art. 17) over the API (ADR 0020).

The same erasure as `schakel privacy erase` (shared.erasure): the child's keys get tombstones, a content-free
SubjectErased goes out, every service forgets; audited per signal with the officer as actor. Only a partner
with the scope `privacy:erase` may; the BSN is turned into the child's pseudonym and dropped.
"""

from __future__ import annotations

from typing import Self

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.feedback.agents import FeedbackCore
from services.feedback.settings import FeedbackSettings
from shared.erasure import Actor, erase
from shared.events import source_urn
from shared.http import parsed_body, problem
from shared.persons import IdpUnavailable, authenticate, person_tokens
from shared.pseudonym import subject_key

log = structlog.get_logger(__name__)


class ErasureIn(BaseModel):
    """Which child: a BSN, or school and pupil number, or its pseudonym."""

    model_config = ConfigDict(extra="forbid")

    bsn: str | None = Field(default=None, pattern=r"^[0-9]{8,9}$")
    school_brin: str | None = Field(default=None, pattern=r"^[0-9]{2}[A-Za-z]{2}$")
    pupil_ref: str | None = Field(default=None, min_length=1, max_length=64)
    subject_key: str | None = Field(default=None, pattern=r"^sk_[0-9a-f]{40}$")

    @model_validator(mode="after")
    def _one_child(self) -> Self:
        named = [self.bsn is not None, self.school_brin is not None or self.pupil_ref is not None,
                 self.subject_key is not None]
        if sum(named) != 1 or (named[1] and not (self.school_brin and self.pupil_ref)):
            raise ValueError("name the child by a BSN, by school and pupil number, or by its pseudonym")
        return self

    def subject(self, secret: str) -> str:
        """The child's pseudonym."""
        if self.subject_key:
            return self.subject_key
        if self.bsn:
            return subject_key(secret=secret, bsn=self.bsn.zfill(9))
        return subject_key(secret=secret, school_brin=self.school_brin, pupil_ref=self.pupil_ref)


def build_privacy_router(core: FeedbackCore, settings: FeedbackSettings) -> APIRouter:
    """The privacy officer's routes."""
    router = APIRouter()
    secret = settings.pseudonym_secret.get_secret_value()
    persons = person_tokens(settings.oidc_issuer, settings.oidc_audience)

    @router.post("/v1/privacy/erasures", status_code=202, summary="Alle gegevens over een kind wissen")
    async def post_erasure(request: Request) -> Response:
        try:
            caller = await authenticate(request.headers.get("authorization"), municipality=core.municipality,
                                        persons=persons)
        except IdpUnavailable:
            return problem(503, code="idp_unavailable", title="Tijdelijk niet beschikbaar",
                           detail="Uw aanmelding kan nu niet worden gecontroleerd; probeer het zo opnieuw.",
                           headers={"Retry-After": "5"})
        if caller is None:
            return problem(401, code="unauthenticated", title="Niet aangemeld",
                           detail="Geef een geldig token mee in de Authorization-header (Bearer).",
                           headers={"WWW-Authenticate": "Bearer"})
        partner = caller.partner
        if "privacy:erase" not in partner.scopes:
            return problem(403, code="forbidden", title="Geen toestemming",
                           detail="Dit token mag geen gegevens wissen (scope privacy:erase ontbreekt).")
        body = _erasure_in(await request.body())
        if isinstance(body, Response):
            return body
        actor = Actor(partner_id=partner.id, on_behalf_of="privacy_officer", service="feedback",
                      person=caller.person_email)
        try:
            erased = await erase(keys=core.keys, send=core.send, subject_key=body.subject(secret), signal_ids=None,
                                 reason="request", actor=actor, source=source_urn("feedback"))
        except TimeoutError:
            return problem(503, code="erasure_unavailable", title="Tijdelijk niet beschikbaar",
                           detail="Het wissen kon nu niet worden vastgelegd; probeer het zo opnieuw.",
                           headers={"Retry-After": "5"})
        log.info("subject_erasure_requested", erasure_id=erased.erasure_id, partner=partner.id,
                 keys=len(erased.signal_ids))
        return JSONResponse({"erasure_id": erased.erasure_id, "status": "erased",
                             "keys_destroyed": len(erased.signal_ids)}, status_code=202)

    return router


def _erasure_in(raw: bytes) -> ErasureIn | Response:
    """The request body, or the 400 (not JSON) or 422 (not exactly one way to name the child)."""
    return parsed_body(ErasureIn, raw, invalid=lambda _: problem(
        422, code="validation_failed", title="Ongeldig verzoek",
        detail="Noem het kind met een BSN, met school (BRIN) en leerlingnummer, of met zijn pseudoniem; "
               "precies één daarvan."))
