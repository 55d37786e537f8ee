"""Wiring of the routing service."""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from shared.kafka import create_faust_app
from shared.logging import configure_logging
from shared.municipality import Municipality, load_municipality
from shared.settings import Settings
from shared.stream_service import stream_service_api
from services.routing.agents import register_agents
from services.routing.metrics import RoutingMetrics


def create_app(settings: Settings | None = None, *, municipality: Municipality | None = None,
               store: str | None = None) -> FastAPI:
    """Build routing's faust app and its HTTP side; nothing connects until the app starts."""
    settings = settings or Settings()
    configure_logging(service="routing", log_format=settings.log_format, level=settings.log_level)
    registry = CollectorRegistry()
    metrics = RoutingMetrics(registry)
    faust_app = create_faust_app("routing", settings, store=store)
    loops = register_agents(faust_app, municipality=municipality or load_municipality(settings.config),
                            metrics=metrics)
    api = stream_service_api(title="Schakel routing", faust_app=faust_app, registry=registry, loops=loops)
    api.state.faust_app = faust_app
    return api
