"""The werkbak's calls to intake and feedback, always with the person's own access token (ADR 0017)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx

from services.werkbak.metrics import WerkbakMetrics

PARALLEL_READS = 8


@dataclass(frozen=True)
class ApiAnswer:
    """Status and JSON body of one API call (problem+json for a refusal)."""

    status: int
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def detail(self) -> str:
        """The API's Dutch explanation of a refusal."""
        return str(self.body.get("detail") or self.body.get("title") or "Er ging iets mis.")


UNAVAILABLE = ApiAnswer(503, {"code": "api_unavailable", "title": "Tijdelijk niet beschikbaar",
                              "detail": "Schakel is nu niet bereikbaar; probeer het zo opnieuw."})


@dataclass
class Apis:
    """One HTTP client for both APIs."""

    intake_url: str
    feedback_url: str
    metrics: WerkbakMetrics
    timeout_s: float = 20.0
    client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self.client = httpx.AsyncClient(timeout=self.timeout_s)

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.aclose()

    async def _call(self, api: str, method: str, url: str, token: str, body: Any = None) -> ApiAnswer:
        assert self.client is not None
        started = time.perf_counter()
        try:
            response = await self.client.request(method, url, json=body,
                                                 headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError:
            self.metrics.api_calls.labels(api=api, status="unreachable").inc()
            return UNAVAILABLE
        finally:
            self.metrics.api_duration.labels(api=api).observe(time.perf_counter() - started)
        self.metrics.api_calls.labels(api=api, status=str(response.status_code)).inc()
        try:
            parsed = response.json()
        except ValueError:
            parsed = {}
        return ApiAnswer(response.status_code, parsed if isinstance(parsed, dict) else {})

    async def signal(self, token: str, signal_id: str) -> ApiAnswer:
        """GET /v1/signals/{id} as the person."""
        return await self._call("feedback", "GET", f"{self.feedback_url}/v1/signals/{signal_id}", token)

    async def signals(self, token: str, signal_ids: list[str]) -> list[ApiAnswer]:
        """Several signals, a few at a time."""
        gate = asyncio.Semaphore(PARALLEL_READS)

        async def one(signal_id: str) -> ApiAnswer:
            async with gate:
                return await self.signal(token, signal_id)

        return list(await asyncio.gather(*(one(s) for s in signal_ids)))

    async def event(self, token: str, signal_id: str, body: dict[str, Any]) -> ApiAnswer:
        """POST /v1/signals/{id}/events as the person: the same lifecycle path as every partner."""
        return await self._call("feedback", "POST", f"{self.feedback_url}/v1/signals/{signal_id}/events", token,
                                body)

    async def submit(self, token: str, body: dict[str, Any]) -> ApiAnswer:
        """POST /v1/signals as the person."""
        return await self._call("intake", "POST", f"{self.intake_url}/v1/signals", token, body)
