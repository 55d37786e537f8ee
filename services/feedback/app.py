"""Wiring of the feedback service: FastAPI and faust in one process and one event loop."""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.feedback.agents import FeedbackCore
from services.feedback.api import build_router
from services.feedback.metrics import FeedbackMetrics
from services.feedback.openapi import install_openapi
from services.feedback.privacy_api import build_privacy_router
from services.feedback.replies import Replies
from services.feedback.retention import RetentionPolicy
from services.feedback.settings import FeedbackSettings
from shared.kafka import create_faust_app, send_and_wait
from shared.keystore import Headers, key_store_for
from shared.logging import configure_logging
from shared.municipality import Municipality, load_municipality
from shared.stream_service import stream_service_api
from shared.tracing import configure_tracing

GAUGE_INTERVAL_S = 10.0


def create_app(settings: FeedbackSettings | None = None, *, municipality: Municipality | None = None,
               store: str | None = None) -> FastAPI:
    """Build feedback's faust app, table, agent and HTTP API; nothing connects until start."""
    settings = settings or FeedbackSettings()
    configure_logging(service="feedback", log_format=settings.log_format, level=settings.log_level)
    configure_tracing("feedback", endpoint=settings.otlp_endpoint)
    registry = CollectorRegistry()
    faust_app = create_faust_app("feedback", settings, store=store)
    metrics = FeedbackMetrics(registry)

    async def send_key(topic: str, key: bytes, value: bytes | None, headers: Headers = ()) -> None:
        await send_and_wait(faust_app, topic=topic, key=key, value=value,  # type: ignore[arg-type] # None: tombstone
                            headers=list(headers))
        metrics.hop.produced.labels(topic=topic).inc()

    keys = key_store_for(settings, client_id=f"schakel-feedback-keys-{settings.worker_id or 'single'}",
                         send=send_key)
    core = FeedbackCore(faust_app, municipality or load_municipality(settings.config), metrics,
                        settings.topic_partitions, Replies(settings.kafka_bootstrap), keys,
                        sweep_interval_s=settings.sla_sweep_interval_s, linger_s=settings.batch_linger_s,
                        retention=RetentionPolicy(term=settings.retention_term,
                                                  unfounded_term=settings.retention_unfounded_term),
                        retention_interval_s=settings.retention_sweep_interval_s)

    @faust_app.timer(GAUGE_INTERVAL_S)
    async def refresh_gauges() -> None:
        core.update_open_gauge()

    api = stream_service_api(title="Schakel feedback", faust_app=faust_app, registry=registry, loops=[core.loop],
                             openapi_url="/openapi.json")
    api.include_router(build_router(core, settings))
    api.include_router(build_privacy_router(core, settings))
    install_openapi(api)
    api.state.core = core
    return api
