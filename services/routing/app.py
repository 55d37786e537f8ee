"""Wiring of the routing service."""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.routing.agents import register_agents
from services.routing.config import RoutingConfig
from services.routing.metrics import RoutingMetrics
from shared.kafka import create_faust_app
from shared.logging import configure_logging
from shared.municipality import Municipality
from shared.settings import Settings
from shared.stream_service import stream_service_api
from shared.tracing import configure_tracing


class RoutingSettings(Settings):
    """Routing's own settings on top of the shared ones."""

    # How often the municipality file's mtime is checked for a reload (seconds; 0 turns polling off).
    routing_reload_interval_s: float = 5.0
    # The faust app's name: its consumer group, table changelogs and state folder (schakel-<name>).
    # Another name reads every topic again from the start with empty tables (a replay).
    routing_app_name: str = "routing"


def create_app(settings: Settings | None = None, *, municipality: Municipality | None = None,
               store: str | None = None) -> FastAPI:
    """Build routing's faust app and its HTTP side; nothing connects until the app starts."""
    settings = settings or RoutingSettings()
    configure_logging(service="routing", log_format=settings.log_format, level=settings.log_level)
    configure_tracing("routing", endpoint=settings.otlp_endpoint)
    registry = CollectorRegistry()
    metrics = RoutingMetrics(registry)
    faust_app = create_faust_app(getattr(settings, "routing_app_name", "routing"), settings, store=store)
    config = RoutingConfig(None if municipality else settings.config, metrics, municipality=municipality)
    loops = register_agents(faust_app, config=config, metrics=metrics, linger_s=settings.batch_linger_s)
    interval = getattr(settings, "routing_reload_interval_s", 5.0)
    if interval > 0:
        @faust_app.timer(interval)
        async def reload_config() -> None:
            config.maybe_reload()
    api = stream_service_api(title="Schakel routing", faust_app=faust_app, registry=registry, loops=loops)
    api.state.faust_app = faust_app
    api.state.routing_config = config
    api.state.metrics = metrics
    return api
