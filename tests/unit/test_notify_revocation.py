"""A rebalance in the middle of sending: the mail under way finishes and is marked before the partition moves,
and a mail in retry stops once it is no longer this worker's (reliability #10, notify joining).

Fakes stand in for SMTP and faust's consumer; the end-to-end proof is tests/integration/test_reliability.py.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from services.notify.mailer import Mailer
from services.notify.metrics import NotifyMetrics
from services.notify.mime import OutgoingMail
from services.notify.smtp import NotWanted, SmtpSender, SmtpSettings, TransientSmtpError
from shared import faust_compat
from shared.record_loop import Effects

MAIL = OutgoingMail(recipient="ib@obs-delinde.example", message_id="<m1@schakel.example>", kind="assigned",
                    data=b"Subject: x\r\n\r\nbody\r\n")


class SlowSender:
    """Accepts a mail once `release` is set, like an SMTP server in the middle of a transaction."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self.sent: list[str] = []

    async def send_with_retry(self, message: OutgoingMail, *, on_accepted: Any = None, **_: Any) -> int:
        self.started.set()
        await self.release.wait()
        self.sent.append(message.message_id)
        if on_accepted is not None:
            await on_accepted(1)
        return 1


class SentLog:
    """The sent-log: each mark's future is done when the test says the broker has it."""

    def __init__(self) -> None:
        self.marks: dict[bytes, bytes] = {}
        self.receipts: list[asyncio.Future[None]] = []

    async def mark(self, event: Any, key: bytes, value: bytes) -> asyncio.Future[None]:
        self.marks[key] = value
        self.receipts.append(asyncio.get_running_loop().create_future())
        return self.receipts[-1]


class Job:
    """A MailJob's shape, with the follow-up effects recorded."""

    message_id = MAIL.message_id
    kind = "assigned"
    due_at = datetime(2026, 12, 1, tzinfo=UTC)
    sent_log_key = b"sent:m1"

    def build(self) -> OutgoingMail:
        return MAIL

    def on_sent(self, attempts: int, at: datetime) -> Effects:
        return Effects()

    def on_refused(self, exc: Exception) -> Effects:
        return Effects()


class Event:
    """Stands in for a faust event (the mailer makes it the current event for its sent-log write)."""


async def test_drain_waits_for_the_mail_under_way_and_its_sent_log_mark_on_the_broker() -> None:
    sender, sent_log = SlowSender(), SentLog()
    mailer = Mailer(sender, NotifyMetrics(CollectorRegistry()), sent_log)
    batch = asyncio.ensure_future(mailer([(Event(), Effects(work=[Job()]))]))
    await sender.started.wait()

    drained = asyncio.ensure_future(mailer.drain())
    await asyncio.sleep(0.05)
    assert not drained.done()  # the transaction is still under way: the partition may not move yet
    sender.release.set()
    await batch
    assert b"sent:m1" in sent_log.marks
    await asyncio.sleep(0.05)
    assert not drained.done()  # the mark is written but not on the broker: the new owner would not read it
    sent_log.receipts[0].set_result(None)
    await asyncio.wait_for(drained, 1)  # now the new owner recovers the mark and does not send the mail again
    await asyncio.wait_for(mailer.drain(), 1)  # nothing under way: returns at once


async def _one_mail_accepted() -> tuple[SentLog, CollectorRegistry]:
    """A mailer that sent one mail; its mark is written and waits for the test to say the broker has it."""
    sender, sent_log, registry = SlowSender(), SentLog(), CollectorRegistry()
    sender.release.set()
    await Mailer(sender, NotifyMetrics(registry), sent_log)([(Event(), Effects(work=[Job()]))])
    return sent_log, registry


def _mark_durations(registry: CollectorRegistry) -> float | None:
    return registry.get_sample_value("notify_sent_mark_duration_seconds_count")


async def test_the_time_a_mark_takes_to_reach_the_broker_is_observed_once_it_is_there() -> None:
    sent_log, registry = await _one_mail_accepted()
    assert _mark_durations(registry) == 0  # accepted and marked, but the mark is not on the broker yet
    await asyncio.sleep(0.02)
    sent_log.receipts[0].set_result(None)
    await asyncio.sleep(0)
    assert _mark_durations(registry) == 1
    assert (registry.get_sample_value("notify_sent_mark_duration_seconds_sum") or 0.0) >= 0.02


async def test_a_mark_that_failed_is_not_observed_as_a_duration() -> None:
    sent_log, registry = await _one_mail_accepted()
    sent_log.receipts[0].set_exception(RuntimeError("broker gone"))
    await asyncio.sleep(0)
    assert _mark_durations(registry) == 0


async def test_a_cancelled_mark_is_not_observed_as_a_duration() -> None:
    sent_log, registry = await _one_mail_accepted()
    sent_log.receipts[0].cancel()
    await asyncio.sleep(0)
    assert _mark_durations(registry) == 0


async def test_a_mail_in_retry_stops_once_its_partition_is_no_longer_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    sender = SmtpSender(SmtpSettings(port=1))
    attempts: list[int] = []
    ours = [True]

    async def refused_for_now(message: Any, **_: Any) -> None:
        attempts.append(1)
        ours[0] = False  # the rebalance comes while the worker waits to retry
        raise TransientSmtpError("451 try again later")

    monkeypatch.setattr(sender, "send", refused_for_now)
    with pytest.raises(NotWanted):
        await sender.send_with_retry(MAIL, max_attempts=5, base_delay=0.001, max_delay=0.001,
                                     still_wanted=lambda: ours[0])
    assert attempts == [1]  # no second attempt: the partition's new owner sends it


class RevokingConsumer:
    """Just enough of faust's consumer for on_partitions_revoked."""

    def __init__(self, app: Any) -> None:
        self.app = app


async def test_revocation_awaits_the_registered_drain_before_faust_hands_the_partitions_on(
        monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []

    class App:
        consumer_generation_id = 7

        class conf:
            id = "revocation-test"

    async def original(self: Any, revoked: set[Any]) -> None:
        order.append("faust flushes and hands on")

    async def drain() -> None:
        await asyncio.sleep(0.01)
        order.append("drained")

    async def stuck() -> None:
        await asyncio.sleep(60)

    monkeypatch.setattr(faust_compat, "_original_on_partitions_revoked", original)
    monkeypatch.setattr(faust_compat, "continuity_of", lambda consumer: type("C", (), {"forget": lambda s, t: None})())
    monkeypatch.setattr(faust_compat, "_revocation_drains", {})
    app = App()
    faust_compat.before_revocation(app, drain, timeout_s=1)  # type: ignore[arg-type]
    faust_compat.before_revocation(app, stuck, timeout_s=0.05)  # type: ignore[arg-type]
    await faust_compat.on_partitions_revoked(RevokingConsumer(app), set())
    assert order == ["drained", "faust flushes and hands on"]  # a stuck drain delays the rebalance, bounded
    assert app._schakel_revoked_generation == 7  # type: ignore[attr-defined]
