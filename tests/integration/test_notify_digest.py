"""Daily digests on a real broker and SMTP sink: a partner that asked for one gets its U2/U3 signals together.

A "day" is shortened with SCHAKEL_NOTIFY_DIGEST_INTERVAL_S; notify is SIGKILLed while items wait, to show the
pending digest survives in its table.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from schakel.kafka_broker import Broker
from shared.events import Urgency
from shared.topics import NOTIFICATIONS_DIGEST
from tests.harness import System, read_topic, wait_until
from tests.integration.test_notify_delivery import FAST_RETRY, Publisher, assigned

PERIOD_S = 12.0
IB = "ib@hetanker.example"
ANKER = {"school_brin": "34CD", "partner_id": "cbs-het-anker", "body_id": "zat-34cd", "body_name": "ZAT CBS Het Anker"}


@pytest.fixture
def system(fresh_kafka: Broker, tmp_path: Path) -> Iterator[System]:
    env = {**FAST_RETRY, "SCHAKEL_NOTIFY_DIGEST_INTERVAL_S": str(PERIOD_S), "SCHAKEL_NOTIFY_DIGEST_CHECK_S": "0.5"}
    running = System(fresh_kafka, tmp_path, extra_env=env)
    try:
        yield running.start(["notify"])
    finally:
        running.stop()


@pytest.fixture
def publish(fresh_kafka: Broker) -> Iterator[Publisher]:
    publisher = Publisher(fresh_kafka.bootstrap)
    yield publisher
    publisher.close()


def kinds_to(system: System, address: str) -> list[tuple[str, str]]:
    return [(str(m.message["X-Schakel-Kind"]), str(m.message["Subject"])) for m in system.mails_to(address)]


def test_a_digest_collects_a_periods_u2_u3_signals_for_a_partner_who_asked(system: System,
                                                                          publish: Publisher) -> None:
    # Start just after a period begins, so all items fall in one period.
    wait_until(lambda: 0.3 < time.time() % PERIOD_S < 1.5, timeout=PERIOD_S + 1, interval=0.05, what="period start")
    digested = {500: Urgency.U2, 501: Urgency.U3, 503: Urgency.U2}
    for n, urgency in digested.items():
        publish(assigned(n, urgency=urgency, **ANKER))
    publish(assigned(502, urgency=Urgency.U1, **ANKER))
    published_at = time.time()
    # U1 is always immediate, and so are the reporters' receipts.
    system.wait_for_mail(IB, subject_contains="SK-2026-000502 · ZAT · U1", timeout=30)
    for n in (*digested, 502):
        system.wait_for_mail(f"melder{n}@delinde.example", subject_contains="Signaal ontvangen", timeout=30)
    wait_until(lambda: len(read_topic(system.broker.bootstrap, NOTIFICATIONS_DIGEST.name)) >= 3, timeout=30,
               what="3 queued digest items")
    assert [k for k, _ in kinds_to(system, IB)] == ["assigned"]
    system.restart("notify")  # SIGKILL while the items wait: the digest must survive
    digest = system.wait_for_mail(IB, subject_contains="Overzicht", timeout=3 * PERIOD_S)
    waited = time.time() - published_at
    text = digest.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    for n in digested:
        assert f"SK-2026-{n:06d}" in text
    assert "SK-2026-000502" not in text
    assert str(digest.message["Subject"]) == "[Schakel] Overzicht · 3 openstaande signalen"
    # One more period: no second digest, no single mails for the digested signals.
    time.sleep(PERIOD_S + 2)
    assert sorted(k for k, _ in kinds_to(system, IB)) == ["assigned", "digest"]
    assert len(system.mails_to("directie@hetanker.example")) == 1  # the U1 signal only
    metrics = httpx.get(system.url("notify", "/metrics"), timeout=10).text
    assert "notify_digest_size_signals_sum 3.0" in metrics
    assert 'notify_emails_total{outcome="sent",template="digest"} 1.0' in metrics
    print(f"\ndigest: 3 signals in one mail {waited:.1f}s after publishing (period {PERIOD_S:.0f}s), "
          "survived a SIGKILL, U1 and receipts immediate")
