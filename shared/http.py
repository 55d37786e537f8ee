"""What every service's HTTP side has: /healthz, /readyz, /metrics, problem+json errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

PROBLEM_JSON = "application/problem+json"


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


def add_operational_routes(api: FastAPI, *, registry: CollectorRegistry, ready: Callable[[], bool]) -> None:
    """Mount /healthz, /readyz and /metrics."""

    @api.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        if ready():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not_ready"}, status_code=503)

    @api.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
