"""Wiring of the intake service: settings, logging, publisher, FastAPI app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from shared.http import add_operational_routes
from shared.logging import configure_logging
from shared.municipality import Municipality, load_municipality
from shared.settings import Settings
from services.intake.api import IntakeState, build_router
from services.intake.metrics import IntakeMetrics
from services.intake.publisher import Publisher


def create_app(
    settings: Settings | None = None, *, municipality: Municipality | None = None, publisher: Publisher | None = None
) -> FastAPI:
    """Build the intake app; nothing connects until the app starts."""
    settings = settings or Settings()
    configure_logging(service="intake", log_format=settings.log_format, level=settings.log_level)
    registry = CollectorRegistry()
    state = IntakeState(
        settings=settings,
        municipality=municipality or load_municipality(settings.config),
        publisher=publisher or Publisher(settings),
        metrics=IntakeMetrics(registry),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await state.publisher.start()
        yield
        await state.publisher.stop()

    api = FastAPI(title="Schakel intake", version="1", lifespan=lifespan)
    api.include_router(build_router(state))

    def ready() -> bool:
        state.metrics.hop.ready.set(1 if state.publisher.ready else 0)
        return state.publisher.ready

    add_operational_routes(api, registry=registry, ready=ready)
    api.state.intake = state
    return api
