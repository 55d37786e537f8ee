"""The HTTP side of a faust stream service: faust in FastAPI's lifespan, health, readiness, metrics."""

from __future__ import annotations

import faust
from fastapi import FastAPI
from faust.contrib.asgi import faust_lifespan
from prometheus_client import CollectorRegistry

from shared.http import add_operational_routes
from shared.kafka import RecordLoop, faust_ready

LAG_INTERVAL_S = 5.0


def stream_service_api(
    *, title: str, faust_app: faust.App, registry: CollectorRegistry, loops: list[RecordLoop]
) -> FastAPI:
    """A FastAPI app that runs the faust app on its own loop and reports on it."""

    @faust_app.timer(LAG_INTERVAL_S)
    async def report_lag() -> None:
        for loop in loops:
            loop.update_lag()

    api = FastAPI(title=title, version="1", lifespan=faust_lifespan(faust_app, stop_timeout=30.0))

    def ready() -> bool:
        is_ready = faust_ready(faust_app)
        for loop in loops:
            loop.metrics.ready.set(1 if is_ready else 0)
        return is_ready

    add_operational_routes(api, registry=registry, ready=ready)
    return api
