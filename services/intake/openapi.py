"""The OpenAPI document of intake, with every answer and its schema written out (schemathesis checks them)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

from services.intake.api import SIGNALS_ROUTE
from services.intake.submission import MAX_IDEMPOTENCY_KEY
from services.intake.validation import SignalIn
from shared.openapi import component_schemas, document, problem_answer, success_answer


class SignalAccepted(BaseModel):
    """202: the signal is stored in Kafka."""

    signal_id: str = Field(description="UUID van het signaal")
    reference: str = Field(pattern=r"^SK-[0-9]{4}-[0-9]{8}$")
    status: str = Field(pattern="^received$")


_HEADER = {"schema": {"type": "string"}}
_ERRORS = {
    "400": ("De body is geen geldige JSON.", {}),
    "401": ("Geen of een onbekend token.", {"WWW-Authenticate": {**_HEADER, "required": True}}),
    "403": ("Het token mist de scope signals:submit.", {}),
    "409": ("Dezelfde Idempotency-Key met een andere body, of het eerste verzoek loopt nog.", {}),
    "413": ("De body is groter dan 64 KiB.", {}),
    "415": ("De body is geen application/json.", {}),
    "422": ("Een of meer velden zijn ongeldig; errors noemt elk veld.", {}),
    "429": ("Te veel verzoeken van deze partner.", {"Retry-After": {**_HEADER, "required": True}}),
    "503": ("Kafka heeft het signaal niet bevestigd; niets is opgeslagen.",
            {"Retry-After": {**_HEADER, "required": True}}),
}


def _operation() -> dict[str, Any]:
    responses: dict[str, Any] = {
        "202": success_answer(
            "Ontvangen en door Kafka bevestigd (of hetzelfde antwoord bij een herhaald verzoek).",
            schema={"$ref": "#/components/schemas/SignalAccepted"},
            headers={"Location": {**_HEADER, "required": True}}),
    }
    for status, (description, headers) in _ERRORS.items():
        responses[status] = problem_answer(description, headers or None)
    return {
        "summary": "Een signaal indienen",
        "operationId": "submit_signal",
        "security": [{"bearer": []}],
        "parameters": [{
            "name": "Idempotency-Key", "in": "header", "required": False,
            "description": "Zelfde sleutel en body: hetzelfde antwoord, niets opnieuw gepubliceerd.",
            "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY},
        }],
        "requestBody": {"required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SignalIn"}}}},
        "responses": responses,
    }


def intake_document() -> dict[str, Any]:
    """The written-out contract of POST /v1/signals."""
    return document(title="Schakel intake", description="Schakel intake: partners dienen signalen in (zie api.md).",
                    paths={SIGNALS_ROUTE: {"post": _operation()}},
                    schemas=component_schemas(SignalIn, SignalAccepted))


def install_openapi(api: FastAPI) -> None:
    """Replace FastAPI's generated document with the written-out one."""
    doc = intake_document()
    api.openapi = lambda: doc  # type: ignore[method-assign]
