"""A local SMTP sink (aiosmtpd) that keeps every message, for tests and the local stack."""

from __future__ import annotations

import argparse
import email
import email.policy
import functools
import itertools
import logging
import os
import signal
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

# aiosmtpd logs every connection at INFO from its own thread, which outlives test output capture; keep warnings.
logging.getLogger("mail.log").setLevel(logging.WARNING)

SinkMode = Literal["accept", "reject_550", "defer_451"]
REPLIES: dict[str, str] = {
    "accept": "250 2.0.0 Message accepted",
    "reject_550": "550 5.1.1 Mailbox unavailable",
    "defer_451": "451 4.3.0 Temporary failure, try again later",
}


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class ReceivedMail:
    """One message the sink accepted."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    path: Path | None = None

    @functools.cached_property
    def message(self) -> EmailMessage:
        """The message parsed with the modern email policy (once: a big run's checks ask thousands of times)."""
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class _Handler:
    """aiosmtpd handler: counts connections and transactions, answers by the sink's mode."""

    sink: SmtpSink
    lock: threading.Condition = field(default_factory=threading.Condition)

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        """Count each connection once, at its first greeting; offer PIPELINING unless the sink is told not to.

        aiosmtpd reads commands one line at a time from a buffered stream, so pipelined commands work; it only
        does not announce it.
        """
        session.host_name = hostname
        self._count_connection(session)
        if self.sink.pipelining:
            return [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

    async def handle_HELO(self, server: Any, session: Any, envelope: Any, hostname: str) -> str:
        """Count each connection once, at its first greeting."""
        session.host_name = hostname
        self._count_connection(session)
        return f"250 {server.hostname}"

    def _count_connection(self, session: Any) -> None:
        if not getattr(session, "schakel_counted", False):
            session.schakel_counted = True
            with self.lock:
                self.sink.connections += 1

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        """Accept a recipient, unless the sink was told it does not exist."""
        if address in self.sink.unknown_recipients:
            return "550 5.1.1 Onbekende ontvanger"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Store the message (in accept mode) and answer with the mode's reply."""
        mode = self.sink.mode
        received: ReceivedMail | None = None
        with self.lock:
            self.sink.attempts += 1
            if mode == "accept":
                data = bytes(envelope.original_content or envelope.content)
                path = self.sink._write(data)
                received = ReceivedMail(envelope.mail_from, tuple(envelope.rcpt_tos), data, path)
                self.sink._received.append(received)
            self.lock.notify_all()
        hook = self.sink.on_accept
        if received is not None and hook is not None:
            hook(received)  # tests: e.g. kill the sender after the message is stored, before it hears "250"
        return REPLIES[mode]


class SmtpSink:
    """An in-process SMTP server on a thread; start(), stop(), and read `messages`."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        mode: SinkMode = "accept",
        directory: Path | None = None,
        credentials: tuple[str, str] | None = None,
        tls_context: ssl.SSLContext | None = None,
        pipelining: bool = True,
        unknown_recipients: frozenset[str] = frozenset(),
    ) -> None:
        self.host = host
        self.pipelining = pipelining
        self.unknown_recipients = unknown_recipients  # RCPT TO for these gets 550
        self.port = port if port is not None else free_port(host)
        self.mode: SinkMode = mode
        self.directory = directory
        self.credentials = credentials
        self.tls_context = tls_context
        self.connections = 0
        self.attempts = 0
        # Called (on the server's thread) with each stored message before the reply is sent.
        self.on_accept: Callable[[ReceivedMail], None] | None = None
        self._received: list[ReceivedMail] = []
        self._handler = _Handler(self)
        self._controller: Controller | None = None
        self._sequence = itertools.count(1)

    @property
    def messages(self) -> list[ReceivedMail]:
        """A snapshot of the messages accepted so far."""
        with self._handler.lock:
            return list(self._received)

    @property
    def running(self) -> bool:
        """Whether the server is listening."""
        return self._controller is not None

    def start(self) -> Self:
        """Listen on host:port (blocks until the server answers)."""
        if self._controller is not None:
            return self
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        extra: dict[str, Any] = {}
        if self.credentials is not None:
            extra = {"authenticator": self._authenticate, "auth_required": True,
                     "auth_require_tls": False}
        if self.tls_context is not None:
            extra.update(tls_context=self.tls_context, require_starttls=True)
        controller = Controller(self._handler, hostname=self.host, port=self.port, **extra)
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        """Stop listening and drop open connections."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedMail]:
        """Block until at least `count` messages arrived (bounded), then return them."""
        with self._handler.lock:
            if not self._handler.lock.wait_for(lambda: len(self._received) >= count, timeout):
                raise TimeoutError(f"expected {count} messages, got {len(self._received)}")
            return list(self._received)

    def clear(self) -> None:
        """Forget received messages and counters (files stay)."""
        with self._handler.lock:
            self._received.clear()
            self.connections = 0
            self.attempts = 0

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                      auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword) or self.credentials is None:
            return AuthResult(success=False, handled=False)
        login, password = self.credentials
        ok = auth_data.login == login.encode() and auth_data.password == password.encode()
        return AuthResult(success=ok, handled=False)

    def _write(self, data: bytes) -> Path | None:
        """Store one message as an .eml file, atomically, so readers never see half a file."""
        if self.directory is None:
            return None
        name = f"{time.time_ns()}-{next(self._sequence):06d}.eml"
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".incoming-", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        target = self.directory / name
        os.replace(tmp, target)
        return target


def main(argv: list[str] | None = None) -> int:
    """Serve a sink that writes every message as an .eml file until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m schakel.mail_sink", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--dir", type=Path, default=Path(".state/mail"), dest="directory")
    parser.add_argument("--mode", choices=sorted(REPLIES), default="accept")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    sink = SmtpSink(host=args.host, port=args.port, mode=args.mode, directory=args.directory)
    sink.start()
    print(f"mail sink listening on {args.host}:{args.port}, writing to {args.directory}", flush=True)
    try:
        stop.wait()
    finally:
        sink.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
