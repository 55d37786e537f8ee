"""The OpenAPI document of intake, with every answer and its schema written out (schemathesis checks them)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

from services.intake.api import SIGNALS_ROUTE
from services.intake.submission import MAX_IDEMPOTENCY_KEY
from services.intake.validation import SignalIn


class SignalAccepted(BaseModel):
    """202: the signal is stored in Kafka."""

    signal_id: str = Field(description="UUID van het signaal")
    reference: str = Field(pattern=r"^SK-[0-9]{4}-[0-9]{8}$")
    status: str = Field(pattern="^received$")


class FieldError(BaseModel):
    """One field that is wrong."""

    field: str
    code: str
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details with a stable English code and Dutch text."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[FieldError] | None = None


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


def _schemas(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    return {**defs, model.__name__: schema}


def _operation() -> dict[str, Any]:
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    responses: dict[str, Any] = {
        "202": {
            "description": "Ontvangen en door Kafka bevestigd (of hetzelfde antwoord bij een herhaald verzoek).",
            "headers": {"Location": {**_HEADER, "required": True}},
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SignalAccepted"}}},
        }
    }
    for status, (description, headers) in _ERRORS.items():
        responses[status] = {
            "description": description,
            **({"headers": headers} if headers else {}),
            "content": {"application/problem+json": {"schema": problem_ref}},
        }
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


def install_openapi(api: FastAPI) -> None:
    """Replace FastAPI's generated document with the written-out contract of POST /v1/signals."""

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is not None:
            return api.openapi_schema
        doc = get_openapi(title=api.title, version=api.version, routes=api.routes,
                          description="Schakel intake: partners dienen signalen in (zie api.md).")
        doc["paths"][SIGNALS_ROUTE] = {"post": _operation()}
        components = doc.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        for model in (SignalIn, SignalAccepted, Problem):
            schemas.update(_schemas(model))
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        api.openapi_schema = doc
        return doc

    api.openapi = openapi  # type: ignore[method-assign]
