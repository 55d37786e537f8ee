"""Wiring of the intake service: settings, logging, publisher, idempotency log, inbound consumer, FastAPI app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.intake.api import IntakeState, build_router
from services.intake.idempotency import IdempotencyStore
from services.intake.inbound import InboundConsumer
from services.intake.metrics import IntakeMetrics
from services.intake.openapi import install_openapi
from services.intake.publisher import Publisher
from services.intake.ratelimit import RateLimiter
from services.intake.settings import IntakeSettings
from services.intake.submission import Intake
from shared.http import NO_FRAMEWORK_TELEMETRY, add_operational_routes
from shared.keystore import Headers, key_store_for
from shared.logging import configure_logging
from shared.municipality import Municipality, load_municipality
from shared.persons import person_tokens
from shared.tracing import configure_tracing


def create_app(
    settings: IntakeSettings | None = None, *, municipality: Municipality | None = None,
    publisher: Publisher | None = None, consume_inbound: bool = True,
) -> FastAPI:
    """Build the intake app; nothing connects until the app starts."""
    settings = settings or IntakeSettings()
    configure_logging(service="intake", log_format=settings.log_format, level=settings.log_level)
    configure_tracing("intake", endpoint=settings.otlp_endpoint)
    registry = CollectorRegistry()
    metrics = IntakeMetrics(registry)
    publisher = publisher or Publisher(settings)
    store = IdempotencyStore(settings, publisher, hop=metrics.hop)
    the_publisher = publisher

    async def send_key(topic: str, key: bytes, value: bytes | None, headers: Headers = ()) -> None:
        await the_publisher.publish(topic=topic, key=key, value=value,  # type: ignore[arg-type] # None: tombstone
                                    headers=list(headers))
        metrics.hop.produced.labels(topic=topic).inc()

    keys = key_store_for(settings, client_id="schakel-intake-keys", send=send_key)
    intake = Intake(settings=settings, municipality=municipality or load_municipality(settings.config),
                    publisher=publisher, store=store, metrics=metrics, keys=keys)
    inbound = InboundConsumer(intake) if consume_inbound else None
    state = IntakeState(
        intake=intake, metrics=metrics,
        limiter=RateLimiter(per_minute=settings.intake_rate_per_minute, burst=settings.intake_rate_burst),
        persons=person_tokens(settings.oidc_issuer, settings.oidc_audience),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await publisher.start()
        await keys.start()
        await store.start()
        if inbound is not None:
            await inbound.start()
        yield
        if inbound is not None:
            await inbound.stop()
        await store.stop()
        await keys.stop()
        await publisher.stop()

    api = FastAPI(title="Schakel intake", version="1", lifespan=lifespan, telemetry=NO_FRAMEWORK_TELEMETRY)
    api.include_router(build_router(state))
    install_openapi(api)

    def ready() -> bool:
        is_ready = publisher.ready and keys.connected and store.recovered and (inbound is None or inbound.running)
        metrics.hop.ready.set(1 if is_ready else 0)
        return is_ready

    add_operational_routes(api, registry=registry, ready=ready)
    api.state.intake = state
    return api
