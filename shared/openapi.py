"""The parts every Schakel OpenAPI document shares, so each meets the NL API Design Rules (ADR).

The major version is in the server URL (`/v1`, /core/uri-version) and the paths are relative to it; every
2xx/3xx answer declares the API-Version header (/core/version-header); every 4xx/5xx answer is
application/problem+json (/core/error-handling/problem-details); info carries a contact and a semver version.
The documents are linted with Spectral and Logius' ruleset (tools/lint, tests/unit/test_api_lint.py).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from shared.http import API_VERSION, PROBLEM_JSON

MAJOR_PREFIX = "/v1"
CONTACT = {"name": "Schakel", "email": "beheer@schakel.example", "url": "https://schakel.example"}
_VERSION_HEADER = {
    "description": "De volledige versie van de API.",
    "required": True,
    "schema": {"type": "string", "example": API_VERSION},
}


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


def component_schemas(*models: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schemas of models (and the models they use) for components/schemas."""
    schemas: dict[str, Any] = {}
    every: tuple[type[BaseModel], ...] = (*models, Problem)
    for model in every:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return schemas


def problem_answer(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    """A documented error answer: problem+json."""
    return {
        "description": description,
        **({"headers": headers} if headers else {}),
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def success_answer(description: str, *, schema: dict[str, Any] | None = None,
                   headers: dict[str, Any] | None = None) -> dict[str, Any]:
    """A documented 2xx answer (JSON), with the API-Version header."""
    answer: dict[str, Any] = {"description": description, "headers": {"API-Version": _VERSION_HEADER,
                                                                       **(headers or {})}}
    if schema is not None:
        answer["content"] = {"application/json": {"schema": schema}}
    return answer


def document(*, title: str, description: str, paths: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI 3.1 document; `paths` are the routes as served (with /v1), written relative to the server."""
    relative: dict[str, Any] = {}
    for path, operations in paths.items():
        if not path.startswith(MAJOR_PREFIX + "/"):
            raise ValueError(f"{path} is not under {MAJOR_PREFIX}")
        relative[path.removeprefix(MAJOR_PREFIX)] = operations
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": API_VERSION, "description": description, "contact": CONTACT},
        "servers": [{"url": MAJOR_PREFIX, "description": "Deze dienst; de hoofdversie staat in het pad."}],
        "paths": relative,
        "components": {"schemas": schemas, "securitySchemes": {"bearer": {
            "type": "http", "scheme": "bearer",
            "description": "Het token van een partnersysteem, of het access token (JWT) dat de identity provider "
                           "van de gemeente aan een persoon gaf (ADR 0016, 0017)."}}},
    }
