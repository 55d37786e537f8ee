"""The HTTP side of a faust stream service: faust in FastAPI's lifespan, health, readiness, metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import faust
import structlog
from fastapi import FastAPI
from faust.contrib.asgi import faust_app_running
from prometheus_client import CollectorRegistry

from shared.http import add_operational_routes
from shared.kafka import RecordLoop, check_stalled, ensure_faust_topics, faust_ready, update_lag
from shared.retry import retry_with_backoff

log = structlog.get_logger(__name__)
LAG_INTERVAL_S = 5.0
STOP_TIMEOUT_S = 30.0


async def _wait_and_create_topics(faust_app: faust.App) -> None:
    """Create faust's topics up front, waiting (without crashing) while the broker is away."""
    bootstrap = ",".join(f"{url.host}:{url.port}" for url in faust_app.conf.broker)
    created = await retry_with_backoff(lambda: asyncio.to_thread(ensure_faust_topics, faust_app, bootstrap),
                                       event="kafka_not_reachable")
    if created:
        log.info("faust_topics_created", topics=created)


def faust_lifespan_with_topics(faust_app: faust.App):  # type: ignore[no-untyped-def]
    """FastAPI lifespan: create faust's topics, then run the faust app on the server's loop."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await _wait_and_create_topics(faust_app)
        async with faust_app_running(faust_app, stop_timeout=STOP_TIMEOUT_S):
            yield

    return lifespan


def stream_service_api(
    *, title: str, faust_app: faust.App, registry: CollectorRegistry, loops: list[RecordLoop],
    stall_after_s: float = 120.0,
) -> FastAPI:
    """A FastAPI app that runs the faust app on its own loop and reports on it."""

    @faust_app.timer(LAG_INTERVAL_S)
    async def report_lag() -> None:
        hops = {id(loop.metrics): loop.metrics for loop in loops}
        for hop in hops.values():
            lag = update_lag(faust_app, hop)
            check_stalled(faust_app, hop, lag=lag, after_s=stall_after_s)

    api = FastAPI(title=title, version="1", lifespan=faust_lifespan_with_topics(faust_app))

    def ready() -> bool:
        is_ready = faust_ready(faust_app)
        for loop in loops:
            loop.metrics.ready.set(1 if is_ready else 0)
        return is_ready

    add_operational_routes(api, registry=registry, ready=ready)
    return api
