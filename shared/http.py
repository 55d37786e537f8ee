"""What every service's HTTP side has: /healthz, /readyz, /metrics, problem+json for every error, API-Version."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.telemetry import TelemetryConfig
from opentelemetry.trace import SpanKind
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.tracing import context_of
from shared.tracing import span as tracing_span

PROBLEM_JSON = "application/problem+json"
# The full version of Schakel's HTTP APIs (NL API Design Rules /core/version-header); the major is in the URI.
API_VERSION = "1.0.0"

log = structlog.get_logger(__name__)
# FastAPI's own OpenTelemetry (server spans with the client's address, user agent and query string; exception
# messages as logs) stays off: Schakel's spans are its own, with attributes that hold no personal data
# (TraceRequests, shared.tracing, ADR 0019). Every FastAPI() of Schakel passes this.
NO_FRAMEWORK_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}

# Errors that FastAPI or Starlette answer themselves (no route, wrong method, ...): stable code, Dutch text.
_FRAMEWORK_ERRORS: dict[int, tuple[str, str, str]] = {
    400: ("bad_request", "Ongeldig verzoek", "Het verzoek is niet goed gevormd."),
    401: ("unauthenticated", "Niet aangemeld", "Geef een geldig token mee in de Authorization-header (Bearer)."),
    403: ("forbidden", "Geen toestemming", "U mag dit niet."),
    404: ("not_found", "Niet gevonden", "Op dit adres is niets te vinden."),
    405: ("method_not_allowed", "Methode niet toegestaan", "Dit adres kent de methode {method} niet."),
    406: ("not_acceptable", "Formaat niet beschikbaar", "Dit antwoord is er alleen als JSON."),
    413: ("payload_too_large", "Bericht te groot", "De body van het verzoek is te groot."),
    415: ("unsupported_media_type", "Verkeerd formaat", "Stuur de body als application/json."),
    500: ("internal_error", "Interne fout", "Er ging iets mis bij Schakel; het is gelogd. Probeer het later opnieuw."),
}


def problem(
    status: int, *, code: str, title: str, detail: str, errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None, extra: dict[str, Any] | None = None,
) -> JSONResponse:
    """An RFC 9457 problem response with a stable English code and Dutch text (and extension members)."""
    body: dict[str, Any] = {
        "type": f"https://schakel.example/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if errors:
        body["errors"] = errors
    body.update(extra or {})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


Body = TypeVar("Body", bound=BaseModel)


def parsed_body(model: type[Body], raw: bytes, *,
                invalid: Callable[[ValidationError], JSONResponse]) -> Body | JSONResponse:
    """A request body as `model`, or the 400 problem when it is no JSON, or `invalid`'s answer (a 422)."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            return problem(400, code="bad_json", title="Ongeldige JSON", detail="De body is geen geldige JSON.")
        return invalid(exc)


def framework_problem(status: int, *, method: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The problem+json answer for an error the framework raised (unknown path, wrong method, ...)."""
    code, title, detail = _FRAMEWORK_ERRORS.get(
        status, (f"http_{status}", "Verzoek niet verwerkt", "Het verzoek kon niet worden verwerkt."))
    detail = detail.format(method=method)
    if status == 405 and headers and headers.get("Allow"):
        detail += f" Wel: {headers['Allow']}."
    return problem(status, code=code, title=title, detail=detail, headers=headers)


def install_problem_answers(api: FastAPI) -> None:
    """Every error answer problem+json, the framework's own included; every answer carries API-Version."""

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return framework_problem(exc.status_code, method=request.method,
                                 headers=dict(exc.headers) if exc.headers else None)

    @api.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        # Locations and error types only: never the input values (they may hold personal data).
        errors = [{"field": ".".join(str(p) for p in e.get("loc", ())) or "body", "code": "invalid_value",
                   "message": "Dit veld ontbreekt of is ongeldig."} for e in exc.errors()]
        return problem(422, code="validation_failed", title="Ongeldig verzoek",
                       detail="Het verzoek is niet goed ingevuld.", errors=errors)

    @api.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled_http_error", path=request.url.path, error=type(exc).__name__)
        return framework_problem(500, method=request.method)

    api.add_middleware(ApiVersionHeader)
    api.add_middleware(TraceRequests, name=api.title)


class ApiVersionHeader:
    """ASGI middleware: every HTTP answer says the API's full version (API-Version header)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_version(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"api-version", API_VERSION.encode())]
            await send(message)

        await self.app(scope, receive, send_with_version)


class TraceRequests:
    """ASGI middleware: a server span per HTTP request, the child of the caller's `traceparent` if it sent one.

    Attributes: method, path (ids in paths are random UUIDs; no query string) and status; never a body.
    """

    def __init__(self, app: ASGIApp, *, name: str) -> None:
        self.app = app
        self.name = name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in ("/metrics", "/healthz", "/readyz"):
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        parent = context_of((name.decode("latin-1"), value) for name, value in scope.get("headers", ()))
        with tracing_span(f"{self.name} {method}", context=parent, kind=SpanKind.SERVER,
                          attributes={"http.request.method": method, "url.path": path}) as span:

            async def send_traced(message: Message) -> None:
                if message["type"] == "http.response.start":
                    span.set_attribute("http.response.status_code", message["status"])
                await send(message)

            await self.app(scope, receive, send_traced)


def add_operational_routes(api: FastAPI, *, registry: CollectorRegistry, ready: Callable[[], bool]) -> None:
    """Mount /healthz, /readyz and /metrics, and answer every error as problem+json."""
    install_problem_answers(api)

    @api.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        if ready():
            return JSONResponse({"status": "ready"})
        return problem(503, code="not_ready", title="Nog niet gereed", headers={"Retry-After": "5"},
                       detail="De dienst start nog of mist Kafka; probeer het zo opnieuw.")

    @api.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
