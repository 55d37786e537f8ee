"""Wiring of the notify service."""

from __future__ import annotations

from email.utils import parseaddr

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.notify.agents import NotifyCore
from services.notify.digest import DigestSchedule
from services.notify.mailer import Sender
from services.notify.metrics import NotifyMetrics
from services.notify.settings import NotifySettings
from services.notify.smtp import SmtpPool, SmtpSettings
from shared.kafka import create_faust_app
from shared.logging import configure_logging
from shared.municipality import Municipality, load_municipality
from shared.stream_service import stream_service_api
from shared.tracing import configure_tracing

GAUGE_INTERVAL_S = 5.0


def create_app(settings: NotifySettings | None = None, *, municipality: Municipality | None = None,
               store: str | None = None, sender: Sender | None = None) -> FastAPI:
    """Build notify's faust app, sent-log and agent; nothing connects until start."""
    settings = settings or NotifySettings()
    configure_logging(service="notify", log_format=settings.log_format, level=settings.log_level)
    configure_tracing("notify", endpoint=settings.otlp_endpoint)
    registry = CollectorRegistry()
    # No linger: a connection's next mail waits for the previous mail's mark, so a linger would add its whole
    # length to every mail (ADR 0022); what the batch publishes still shares requests (one in flight per broker).
    faust_app = create_faust_app("notify", settings, store=store, producer_linger_s=0.0)
    address = parseaddr(settings.mail_from)[1]
    pool = SmtpPool(SmtpSettings.from_settings(settings), size=settings.notify_smtp_connections)
    core = NotifyCore(
        app=faust_app, municipality=municipality or load_municipality(settings.config),
        metrics=NotifyMetrics(registry), sender=sender or pool,
        sender_address=settings.mail_from, mail_domain=address.rsplit("@", 1)[1], partitions=settings.topic_partitions,
        base_url=settings.public_base_url, retry_base_s=settings.notify_retry_base_s,
        retry_max_s=settings.notify_retry_max_s,
        schedule=DigestSchedule.parse(settings.notify_digest_time, settings.notify_digest_interval_s),
        linger_s=settings.batch_linger_s,
    )

    @faust_app.timer(GAUGE_INTERVAL_S)
    async def refresh_gauges() -> None:
        core.update_queue_age()

    @faust_app.timer(settings.notify_digest_check_s)
    async def announce_digests() -> None:
        await core.announce_due_digests()

    api = stream_service_api(title="Schakel notify", faust_app=faust_app, registry=registry,
                             loops=[core.loop, core.digest_loop])
    api.state.core = core
    return api
