"""SMTP delivery over reused connections (a pool; services.notify.smtp_wire), failures split transient/permanent."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import getaddresses, parseaddr
from functools import partial
from typing import Any

from services.notify.mime import OutgoingMail
from services.notify.smtp_wire import ReplyError, SmtpConnection


class SmtpError(Exception):
    """Base of the errors SmtpSender raises."""


class TransientSmtpError(SmtpError):
    """Delivery failed for now (no connection, timeout, disconnect, 4xx reply); retrying may help."""


class PermanentSmtpError(SmtpError):
    """The server refused the message for good (5xx reply); retrying will not help."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


class NotWanted(SmtpError):
    """The mail was no longer wanted when a connection came free (a rebalance moved its record elsewhere)."""


class MarkNotRecorded(RuntimeError):
    """The previous mail's 'sent' mark failed; sending on could cost more than one copy per kill: the worker stops."""


RetryCallback = Callable[[int, TransientSmtpError, float], Awaitable[None] | None]
# Called with the attempts once the server accepted a mail and awaited at once; the connection holds the content
# of its next mail until the future it returns (the mail's 'sent' mark) is done.
AcceptedCallback = Callable[[int], Awaitable["asyncio.Future[Any] | None"]]


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to deliver mail."""

    host: str = "127.0.0.1"
    port: int = 8025
    sender: str = "Schakel <noreply@schakel.example>"
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    ca_file: str | None = None
    timeout: float = 30.0

    @classmethod
    def from_settings(cls, settings: Any) -> SmtpSettings:
        """Take the smtp_* fields of shared.settings.Settings (or anything shaped like it)."""
        password = settings.smtp_password
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.mail_from,
            username=settings.smtp_username,
            password=password.get_secret_value() if password is not None else None,
            starttls=settings.smtp_starttls,
            ca_file=str(settings.smtp_ca_file) if getattr(settings, "smtp_ca_file", None) else None,
        )


def _classify_reply(code: int, reason: str) -> SmtpError:
    """5xx is permanent; 4xx and anything unexpected is transient."""
    if 500 <= code < 600:
        return PermanentSmtpError(code, reason)
    return TransientSmtpError(f"{code} {reason}")


def classify(error: BaseException) -> SmtpError | None:
    """Map a reply or a socket error to Transient/PermanentSmtpError (None when it is neither)."""
    if isinstance(error, SmtpError):
        return error
    if isinstance(error, ReplyError):
        if error.reply.code < 400:  # -1 and the like: no usable reply
            return TransientSmtpError(f"{error.reply.code} {error.reply.text}")
        return _classify_reply(error.reply.code, error.reply.text)
    if isinstance(error, (ConnectionError, TimeoutError, OSError, EOFError)):
        return TransientSmtpError(f"{type(error).__name__}: {error}")
    return None


class SmtpSender:
    """Sends messages over one lazily opened connection that is reopened after a disconnect.

    A mail's content goes out only once the previous mail's 'sent' mark (the future `on_accepted` returned)
    is done; its envelope goes before, so the wait overlaps a round trip (ADR 0022). So at any moment at
    most one mail of this connection is accepted by the server and not yet recorded.
    """

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self.envelope_sender = parseaddr(settings.sender)[1] or settings.sender
        self._client: SmtpConnection | None = None
        self._lock = asyncio.Lock()
        self._unrecorded: asyncio.Future[Any] | None = None  # the mark of the last mail accepted here
        self.connections_opened = 0
        self.content_held = 0  # mails whose content waited for the previous mail's mark

    async def _connected(self) -> SmtpConnection:
        """The open connection, connecting (again) when there is none or it was dropped."""
        if self._client is not None and self._client.is_connected:
            return self._client
        self._drop()
        s = self.settings
        self._client = await SmtpConnection.open(host=s.host, port=s.port, timeout=s.timeout, starttls=s.starttls,
                                                 ca_file=s.ca_file, username=s.username or None,
                                                 password=s.password if s.username else None)
        self.connections_opened += 1
        return self._client

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def _previous_mail_recorded(self) -> None:
        """Return once the last mail accepted on this connection is marked 'sent' on the broker.

        The mark is faust's future: waited for, never cancelled with this task. A mark that failed raises
        MarkNotRecorded, every time: no further mail may go out on this connection (the worker stops).
        """
        receipt = self._unrecorded
        if receipt is None:
            return
        if not receipt.done():
            self.content_held += 1
            await asyncio.wait([receipt])
        if receipt.cancelled() or receipt.exception() is not None:
            raise MarkNotRecorded("the 'sent' mark of the previous mail did not reach the broker") from (
                None if receipt.cancelled() else receipt.exception())
        self._unrecorded = None

    async def _keep_mark(self, on_accepted: Callable[[], Awaitable[Any]]) -> None:
        """Keep the mark `on_accepted` makes as the next mail's gate; one it could not make stops this connection."""
        try:
            self._unrecorded = await on_accepted()
        except BaseException:
            failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            failed.set_exception(MarkNotRecorded("the 'sent' mark could not be handed to the producer"))
            failed.exception()  # retrieved: asyncio need not report it when nothing else reads it
            self._unrecorded = failed
            raise

    async def _transaction(self, message: EmailMessage | OutgoingMail) -> None:
        client = await self._connected()
        if isinstance(message, OutgoingMail):
            recipients, data = [message.recipient], message.data
        else:
            recipients = [address for _, address in getaddresses(message.get_all("To") or []) if address]
            data = message.as_bytes()
        await client.send(self.envelope_sender, recipients, data, before_content=self._previous_mail_recorded)

    async def send(self, message: EmailMessage | OutgoingMail, *,
                   on_accepted: Callable[[], Awaitable[Any]] | None = None) -> None:
        """Hand one message to the server or raise TransientSmtpError / PermanentSmtpError.

        `on_accepted()` is awaited once the server accepted it, before another mail may use the connection; what
        it returns (a future, or None) is the mark the next mail's content waits for. If it fails, or is
        cancelled, the mark may be missing: every later mail on this connection raises MarkNotRecorded.
        """
        async with self._lock:
            reused = self._client is not None and self._client.is_connected
            try:
                try:
                    await self._transaction(message)
                except (EOFError, ConnectionError):
                    if not reused:
                        raise
                    # An idle connection the server had closed: open a fresh one once.
                    self._drop()
                    await self._transaction(message)
            except asyncio.CancelledError:
                self._drop()  # cancelled mid-transaction: the connection state is unknown
                raise
            except Exception as error:
                if not isinstance(error, ReplyError) or error.reply.code < 400:
                    self._drop()  # the connection state is unknown after a transport failure
                mapped = classify(error)
                if mapped is None:
                    raise
                raise mapped from error
            if on_accepted is not None:
                await self._keep_mark(on_accepted)

    async def send_with_retry(
        self,
        message: EmailMessage | OutgoingMail,
        *,
        max_attempts: int = 12,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        on_retry: RetryCallback | None = None,
        min_jitter: float = 0.85,
        still_wanted: Callable[[], bool] | None = None,
        on_accepted: AcceptedCallback | None = None,
    ) -> int:
        """Send, retrying transient failures with capped exponential backoff and jitter; return attempts.

        `still_wanted` is asked before every attempt: NotWanted once the mail is no longer wanted (its partition
        moved to another worker during a retry, which then sends it). `on_accepted(attempts)`: see send().
        """
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        for attempt in range(1, max_attempts + 1):
            if still_wanted is not None and not still_wanted():
                raise NotWanted(message.message_id if isinstance(message, OutgoingMail) else "")
            try:
                await self.send(message, on_accepted=None if on_accepted is None else partial(on_accepted, attempt))
                return attempt
            except TransientSmtpError as error:
                if attempt == max_attempts:
                    raise
                delay = backoff_delay(attempt, base_delay=base_delay, max_delay=max_delay, min_jitter=min_jitter)
                if on_retry is not None:
                    result = on_retry(attempt, error, delay)
                    if result is not None:
                        await result
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def close(self) -> None:
        """Say QUIT and close the connection, if one is open."""
        async with self._lock:
            client, self._client = self._client, None
            if client is not None and client.is_connected:
                with contextlib.suppress(ReplyError, OSError, EOFError, TimeoutError):
                    await client.quit()
            if client is not None:
                client.close()


class SmtpPool:
    """A fixed number of SmtpSenders, each with its own connection; a mail takes whichever is free."""

    def __init__(self, settings: SmtpSettings, *, size: int = 4) -> None:
        if size < 1:
            raise ValueError("an SMTP pool needs at least one connection")
        self.senders = [SmtpSender(settings) for _ in range(size)]
        self._free: asyncio.Queue[SmtpSender] | None = None

    def _queue(self) -> asyncio.Queue[SmtpSender]:
        if self._free is None:  # created on the running loop, not at import or wiring time
            self._free = asyncio.Queue()
            for sender in self.senders:
                self._free.put_nowait(sender)
        return self._free

    @property
    def connections_opened(self) -> int:
        """Connections opened so far, over every sender."""
        return sum(sender.connections_opened for sender in self.senders)

    async def send_with_retry(self, message: EmailMessage | OutgoingMail, *,
                              still_wanted: Callable[[], bool] | None = None, **retry: Any) -> int:
        """Send on a free connection (see SmtpSender.send_with_retry); return the attempts it took.

        `still_wanted` is asked once a connection is free, right before the mail goes out, and before every
        retry: NotWanted if not.
        """
        free = self._queue()
        sender = await free.get()
        try:
            return await sender.send_with_retry(message, still_wanted=still_wanted, **retry)
        finally:
            free.put_nowait(sender)

    async def close(self) -> None:
        """Close every connection."""
        for sender in self.senders:
            await sender.close()


def backoff_delay(attempt: int, *, base_delay: float, max_delay: float, min_jitter: float = 0.85) -> float:
    """Delay after failed attempt n: base·2^(n-1) capped at max_delay, jittered to [min_jitter, 1]× of that.

    The jitter is narrow on purpose (ADR 0008): wide jitter shortens the worst-case waits, so more attempts
    are needed to outlast an outage; one worker sends one mail at a time, so there is no herd to spread.
    """
    if not 0 < min_jitter <= 1:
        raise ValueError("min_jitter must be in (0, 1]")
    ceiling = min(max_delay, base_delay * (2 ** min(attempt - 1, 62)))
    return random.uniform(ceiling * min_jitter, ceiling)


def worst_case_schedule(outage_s: float, *, base_delay: float, max_delay: float,
                        min_jitter: float = 0.85) -> tuple[int, float]:
    """For a mail first tried at the start of an outage: (attempts it needs at most, longest wait after recovery).

    Attempts: every delay at its shortest (most attempts fit into the outage). Wait after recovery: the longest
    single delay, since recovery can come right after a failed attempt.
    """
    elapsed, attempt = 0.0, 1
    while elapsed < outage_s:
        ceiling = min(max_delay, base_delay * (2 ** min(attempt - 1, 62)))
        elapsed += ceiling * min_jitter
        attempt += 1
    return attempt, max_delay
