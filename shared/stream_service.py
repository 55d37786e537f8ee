"""The HTTP side of a faust stream service: faust in FastAPI's lifespan, health, readiness, metrics."""

from __future__ import annotations

import asyncio
import faulthandler
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import faust
import structlog
from fastapi import FastAPI
from faust.contrib.asgi import faust_app_running
from prometheus_client import CollectorRegistry

from shared import faust_compat
from shared.faust_compat import faust_ready
from shared.http import NO_FRAMEWORK_TELEMETRY, add_operational_routes
from shared.offset_continuity import Gap
from shared.record_loop import RecordLoop
from shared.retry import retry_with_backoff
from shared.stall_watch import check_stalled, update_lag
from shared.topic_admin import ensure_faust_topics

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


def awaited_frames(coro: Any) -> list[str]:
    """Where a coroutine waits, down its chain of awaits (a task's own stack shows only the top)."""
    frames: list[str] = []
    while coro is not None and len(frames) < 50:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            frames.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return frames


def install_stack_dumps() -> None:
    """SIGUSR1 writes every thread's stack to stderr; SIGUSR2 logs every asyncio task's stack."""
    faulthandler.register(signal.SIGUSR1, all_threads=True)

    def dump_tasks() -> None:
        for task in asyncio.all_tasks():
            log.warning("task_stack", task=task.get_name(), stack=awaited_frames(task.get_coro()))

    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, dump_tasks)
    except (RuntimeError, ValueError):  # not the main thread (an in-process test client): no task dumps
        log.info("task_stack_dumps_unavailable")


def faust_lifespan_with_topics(faust_app: faust.App):  # type: ignore[no-untyped-def]
    """FastAPI lifespan: create faust's topics, then run the faust app on the server's loop."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        install_stack_dumps()
        await _wait_and_create_topics(faust_app)
        async with faust_app_running(faust_app, stop_timeout=STOP_TIMEOUT_S):
            yield

    return lifespan


def stream_service_api(
    *, title: str, faust_app: faust.App, registry: CollectorRegistry, loops: list[RecordLoop],
    stall_after_s: float = 120.0, openapi_url: str | None = None,
) -> FastAPI:
    """A FastAPI app that runs the faust app on its own loop and reports on it.

    Only a service with partner routes serves an OpenAPI document (`openapi_url`); the others have none.
    """

    @faust_app.timer(LAG_INTERVAL_S)
    async def report_lag() -> None:
        for hop in hops.values():
            lag = update_lag(faust_app, hop)
            check_stalled(faust_app, hop, lag=lag, after_s=stall_after_s)

    hops = {id(loop.metrics): loop.metrics for loop in loops}

    def count_gap(gap: Gap) -> None:
        for hop in hops.values():
            if gap.topic in hop.consumes:
                hop.offset_gaps.labels(topic=gap.topic, outcome=gap.outcome.value).inc()

    faust_compat.on_offset_gap(faust_app, count_gap)
    api = FastAPI(title=title, version="1", lifespan=faust_lifespan_with_topics(faust_app), openapi_url=openapi_url,
                  docs_url="/docs" if openapi_url else None, redoc_url=None, telemetry=NO_FRAMEWORK_TELEMETRY)

    def ready() -> bool:
        is_ready = faust_ready(faust_app)
        for loop in loops:
            loop.metrics.ready.set(1 if is_ready else 0)
        return is_ready

    add_operational_routes(api, registry=registry, ready=ready)
    return api
