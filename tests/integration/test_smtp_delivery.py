"""SMTP delivery against a real aiosmtpd server started by the test (no SMTP mocks)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest

from schakel.mail_sink import SmtpSink
from services.notify.rendering import (
    Deadline,
    MailContext,
    build_message,
    message_id_for,
    render,
    thread_id_for,
)
from services.notify.smtp import (
    MarkNotRecorded,
    PermanentSmtpError,
    SmtpSender,
    SmtpSettings,
    TransientSmtpError,
    backoff_delay,
)

DOMAIN = "schakel.example"
SENDER = "Schakel <noreply@schakel.example>"


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SmtpSink]:
    """A running sink that also writes .eml files."""
    with SmtpSink(directory=tmp_path / "mail") as running:
        yield running


def sender_for(sink: SmtpSink, **overrides: object) -> SmtpSender:
    """A sender pointed at the sink, with short timeouts."""
    return SmtpSender(SmtpSettings(host=sink.host, port=sink.port, sender=SENDER, timeout=5.0,
                                   **overrides))  # type: ignore[arg-type]


def message(n: int = 1, recipient: str = "ib@school.example") -> EmailMessage:
    """A rendered 'assigned' mail for signal n."""
    context = MailContext(
        recipient_role="ib", reference=f"SK-2026-{n:06d}", route="zat", body_name="ZAT De Regenboog",
        urgency="U2", signal_url=f"https://schakel.example/signalen/{n}",
        deadlines=(Deadline(clock="acknowledge", due_at=datetime(2026, 3, 3, 16, tzinfo=UTC)),),
    )
    thread = thread_id_for(signal_id=f"sig-{n}", domain=DOMAIN)
    return build_message(
        rendered=render("assigned", context), sender=SENDER, recipient=recipient,
        message_id=message_id_for(event_id=f"evt-{n}", recipient=recipient, domain=DOMAIN),
        in_reply_to=thread, references=(thread,),
    )


async def test_a_message_is_delivered_with_its_headers(sink: SmtpSink) -> None:
    sender = sender_for(sink)
    sent = message(7)
    await sender.send(sent)
    await sender.close()
    [received] = sink.messages
    assert received.mail_from == "noreply@schakel.example"
    assert received.rcpt_tos == ("ib@school.example",)
    parsed = received.message
    for header in ("Subject", "From", "To", "Message-ID", "In-Reply-To", "References", "Date"):
        assert parsed[header] == sent[header], header
    assert parsed["Subject"] == "[Schakel] SK-2026-000007 · ZAT · U2 · Nieuw signaal toegewezen"
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert received.path is not None and received.path.suffix == ".eml"
    assert received.path.read_bytes() == received.data


async def test_several_messages_share_one_connection(sink: SmtpSink) -> None:
    sender = sender_for(sink)
    for n in range(1, 6):
        await sender.send(message(n))
    await sender.close()
    assert len(sink.messages) == 5
    assert sink.connections == 1
    assert sender.connections_opened == 1


def marked(mark: asyncio.Future[None] | None) -> Callable[[], Awaitable[asyncio.Future[None] | None]]:
    """An `on_accepted` that hands back `mark` (as the sent-log hands back the future of its record)."""
    async def on_accepted() -> asyncio.Future[None] | None:
        return mark
    return on_accepted


async def test_the_next_mails_content_waits_until_the_previous_mail_is_recorded(sink: SmtpSink) -> None:
    sender = sender_for(sink)
    mark: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    await sender.send(message(1), on_accepted=marked(mark))
    second = asyncio.ensure_future(sender.send(message(2), on_accepted=marked(None)))
    await asyncio.sleep(0.3)
    assert [m.message["Message-ID"] for m in sink.messages] == [message(1)["Message-ID"]]
    assert not second.done() and sender.content_held == 1  # a kill now costs at most mail 1 again
    mark.set_result(None)
    await asyncio.wait_for(second, 5)
    assert len(sink.messages) == 2
    await sender.send(message(3))  # no mark pending: nothing waits
    assert sender.content_held == 1
    await sender.close()


async def test_a_mark_that_failed_lets_no_further_mail_out(sink: SmtpSink) -> None:
    sender = sender_for(sink)
    mark: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    await sender.send(message(1), on_accepted=marked(mark))
    mark.set_exception(OSError("broker gone"))
    for n in (2, 3):
        with pytest.raises(MarkNotRecorded):
            await sender.send(message(n))
    await asyncio.sleep(0.1)
    assert len(sink.messages) == 1
    await sender.close()


async def test_a_mark_that_could_not_be_made_lets_no_further_mail_out(sink: SmtpSink) -> None:
    sender = sender_for(sink)

    async def producer_gone() -> None:
        raise OSError("producer closed")

    with pytest.raises(OSError):
        await sender.send(message(1), on_accepted=producer_gone)
    with pytest.raises(MarkNotRecorded):
        await sender.send(message(2))
    await asyncio.sleep(0.1)
    assert len(sink.messages) == 1
    await sender.close()


async def test_a_dropped_connection_is_reopened_for_the_next_message(sink: SmtpSink) -> None:
    sender = sender_for(sink)
    await sender.send(message(1))
    sink.stop()
    sink.start()  # the server restarts; the sender's open connection is now dead
    await sender.send(message(2))
    await sender.close()
    assert len(sink.messages) == 2
    assert sender.connections_opened == 2


async def test_a_server_that_is_down_raises_a_transient_error() -> None:
    down = SmtpSink()  # not started: nothing listens on its port
    with pytest.raises(TransientSmtpError):
        await sender_for(down).send(message())


async def test_retry_delivers_once_the_server_comes_up() -> None:
    sink = SmtpSink()
    seen: list[tuple[int, float]] = []

    def on_retry(attempt: int, error: TransientSmtpError, delay: float) -> None:
        seen.append((attempt, delay))
        if attempt == 2:
            sink.start()

    try:
        sender = sender_for(sink)
        attempts = await sender.send_with_retry(message(), base_delay=0.01, max_delay=0.05, on_retry=on_retry)
        await sender.close()
    finally:
        sink.stop()
    assert attempts == 3
    assert [a for a, _ in seen] == [1, 2]
    assert len(sink.messages) == 1


async def test_a_550_reply_is_permanent_and_not_retried(sink: SmtpSink) -> None:
    sink.mode = "reject_550"
    sender = sender_for(sink)
    retries: list[int] = []
    with pytest.raises(PermanentSmtpError) as caught:
        await sender.send_with_retry(message(), base_delay=0.01, on_retry=lambda a, e, d: retries.append(a))
    await sender.close()
    assert caught.value.code == 550
    assert "Mailbox unavailable" in caught.value.reason
    assert sink.attempts == 1 and retries == [] and sink.messages == []


async def test_a_451_reply_is_retried_until_accepted(sink: SmtpSink) -> None:
    sink.mode = "defer_451"

    def on_retry(attempt: int, error: TransientSmtpError, delay: float) -> None:
        assert "451" in str(error)
        if attempt == 2:
            sink.mode = "accept"

    sender = sender_for(sink)
    attempts = await sender.send_with_retry(message(), base_delay=0.01, max_delay=0.05, on_retry=on_retry)
    await sender.close()
    assert attempts == 3 and sink.attempts == 3 and len(sink.messages) == 1
    assert sink.connections == 1  # a 4xx reply does not cost the connection


async def test_a_451_reply_that_never_clears_gives_up_after_max_attempts(sink: SmtpSink) -> None:
    sink.mode = "defer_451"
    sender = sender_for(sink)
    with pytest.raises(TransientSmtpError):
        await sender.send_with_retry(message(), max_attempts=4, base_delay=0.01, max_delay=0.02)
    await sender.close()
    assert sink.attempts == 4 and sink.messages == []


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_credentials_are_used_when_configured() -> None:
    with SmtpSink(credentials=("schakel", "geheim")) as sink:
        good = sender_for(sink, username="schakel", password="geheim")
        await good.send(message())
        await good.close()
        bad = sender_for(sink, username="schakel", password="fout")
        with pytest.raises(PermanentSmtpError) as caught:
            await bad.send(message())
        anonymous = sender_for(sink)
        with pytest.raises(PermanentSmtpError):
            await anonymous.send(message())
        await anonymous.close()
    assert caught.value.code == 535
    assert len(sink.messages) == 1


def test_backoff_grows_exponentially_is_capped_and_jittered() -> None:
    delays = [backoff_delay(n, base_delay=0.5, max_delay=30.0) for n in range(1, 12)]
    assert 0.25 <= delays[0] <= 0.5
    assert 2.0 <= delays[3] <= 4.0
    assert all(15.0 <= d <= 30.0 for d in delays[7:])


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl), as (cert, key)."""
    import subprocess

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


async def test_starttls_is_used_when_configured_and_the_certificate_is_verified(
        certificate: tuple[Path, Path]) -> None:
    import ssl

    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with SmtpSink(tls_context=context) as sink:
        secure = sender_for(sink, starttls=True, ca_file=str(cert))
        await secure.send(message(1))
        await secure.send(message(2))
        await secure.close()
        assert len(sink.messages) == 2 and secure.connections_opened == 1
        plain = sender_for(sink)
        with pytest.raises(PermanentSmtpError) as refused:  # the server insists on STARTTLS
            await plain.send(message(3))
        await plain.close()
        assert refused.value.code == 530
        unverified = sender_for(sink, starttls=True)  # the system store does not trust this certificate
        with pytest.raises(TransientSmtpError, match=r"SSL|certificate"):
            await unverified.send(message(4))
        await unverified.close()
    assert len(sink.messages) == 2


def test_five_minutes_of_outage_need_at_most_twelve_attempts_and_a_short_drain() -> None:
    from services.notify.settings import NotifySettings
    from services.notify.smtp import worst_case_schedule

    settings = NotifySettings()
    attempts, longest_wait = worst_case_schedule(300, base_delay=settings.notify_retry_base_s,
                                                 max_delay=settings.notify_retry_max_s)
    assert attempts <= 12
    assert longest_wait <= 50  # after recovery the waiting mail is tried again within this, then the rest flow
    for _ in range(200):  # the jitter never goes below 85 % of the capped delay
        assert 0.85 * 50 <= backoff_delay(20, base_delay=2.0, max_delay=50.0) <= 50


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-by-one"])
async def test_a_refused_recipient_costs_neither_the_connection_nor_the_next_mail(tmp_path: Path,
                                                                                   pipelining: bool) -> None:
    with SmtpSink(directory=tmp_path / "mail", pipelining=pipelining,
                  unknown_recipients=frozenset({"weg@school.example"})) as sink:
        sender = sender_for(sink)
        with pytest.raises(PermanentSmtpError) as refused:
            await sender.send(message(1, recipient="weg@school.example"))
        await sender.send(message(2))
        await sender.close()
        assert refused.value.code == 550
        assert [m.rcpt_tos for m in sink.messages] == [("ib@school.example",)]
        assert sender.connections_opened == 1 and sink.connections == 1


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-by-one"])
async def test_lines_that_start_with_a_dot_arrive_unchanged(tmp_path: Path, pipelining: bool) -> None:
    sent = EmailMessage()
    sent["From"], sent["To"], sent["Subject"] = SENDER, "ib@school.example", "punt"
    sent.set_content(".begint met een punt\n..twee punten\n.\nlaatste regel\n")
    with SmtpSink(directory=tmp_path / "mail", pipelining=pipelining) as sink:
        sender = sender_for(sink)
        await sender.send(sent)
        await sender.send(message(1))
        await sender.close()
        [dotted, _] = sink.messages
    text = dotted.message.get_content().replace("\r\n", "\n")
    assert text == ".begint met een punt\n..twee punten\n.\nlaatste regel\n"
