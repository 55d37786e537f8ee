"""SMTP on the wire for one connection, with ESMTP PIPELINING when the server offers it (RFC 2920).

aiosmtplib waits for each reply before it writes the next command, so one mail costs four round trips
(MAIL, RCPT, DATA, the content) and, on a busy machine, four waits for the scheduler. With PIPELINING the
envelope and DATA go in one write and their three replies are read together: two round trips per mail.
Without it the commands go one by one, as before. Nothing else is different: EHLO, STARTTLS with a verified
certificate, AUTH PLAIN or LOGIN, RSET after a refused envelope so the connection can be used again.

Errors: a reply the transaction cannot go on with raises ReplyError (services.notify.smtp classifies it as
transient or permanent); a broken or timed-out connection raises OSError/TimeoutError/EOFError, after which
the connection must be dropped.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
from base64 import b64encode
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

_LINE_ENDINGS = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True)
class Reply:
    """One (possibly multi-line) server reply."""

    code: int
    text: str


class ReplyError(Exception):
    """The server answered with a code the transaction cannot go on with."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(f"{reply.code} {reply.text}")
        self.reply = reply


def content_for_data(data: bytes) -> bytes:
    """Message bytes as DATA carries them: CRLF line ends, leading dots doubled, the final '.' line.

    Notify's own messages already end their lines in CRLF (services.notify.mime), so the regular expression
    runs only for bytes with a bare CR or LF; after it, every line but the first begins after a CRLF.
    """
    crlf = data.count(b"\r\n")
    if data.count(b"\r") != crlf or data.count(b"\n") != crlf:
        data = _LINE_ENDINGS.sub(b"\r\n", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    data = data.replace(b"\r\n.", b"\r\n..")
    if data.startswith(b"."):
        data = b"." + data
    return data + b".\r\n"


def _address(value: str) -> str:
    if "\r" in value or "\n" in value or "<" in value or ">" in value:
        raise ValueError("an SMTP address may not contain line breaks or angle brackets")
    return value


def _parse_extensions(reply: Reply) -> dict[str, str]:
    extensions: dict[str, str] = {}
    for line in reply.text.split("\n")[1:]:  # the first line is the server's name
        keyword, _, argument = line.strip().partition(" ")
        if keyword:
            extensions[keyword.lower()] = argument
    return extensions


class SmtpConnection:
    """One open SMTP session, greeted (and secured and authenticated when configured)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, timeout: float) -> None:
        self._reader = reader
        self._writer = writer
        self._timeout = timeout
        self.extensions: dict[str, str] = {}

    @property
    def pipelining(self) -> bool:
        """Whether the server offered PIPELINING."""
        return "pipelining" in self.extensions

    @property
    def is_connected(self) -> bool:
        """Whether the connection is still open (as far as this side knows)."""
        return not self._writer.is_closing() and not self._reader.at_eof()

    @classmethod
    async def open(cls, *, host: str, port: int, timeout: float, starttls: bool = False, ca_file: str | None = None,
                   username: str | None = None, password: str | None = None) -> SmtpConnection:
        """Connect, read the greeting, EHLO, and STARTTLS and AUTH when configured."""
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
        connection = cls(reader, writer, timeout=timeout)
        try:
            await connection._expect(await connection._read_reply(), 220)
            await connection._ehlo()
            if starttls:
                await connection._starttls(host, ca_file)
            if username:
                await connection._authenticate(username, password or "")
        except BaseException:
            connection.close()
            raise
        return connection

    async def _read_reply(self) -> Reply:
        lines: list[str] = []
        code = -1
        async with asyncio.timeout(self._timeout):
            while True:
                line = await self._reader.readline()
                if not line.endswith(b"\n"):
                    raise EOFError("the SMTP server closed the connection")
                try:
                    code = int(line[:3])
                except ValueError:
                    raise ReplyError(Reply(-1, "malformed reply: " + line[:80].decode(errors="replace"))) from None
                lines.append(line[4:].strip().decode("utf-8", errors="replace"))
                if line[3:4] != b"-":
                    return Reply(code, "\n".join(lines))

    async def _command(self, line: str) -> Reply:
        self._writer.write(line.encode() + b"\r\n")
        return await self._read_reply()

    @staticmethod
    async def _expect(reply: Reply, *codes: int) -> Reply:
        if reply.code not in codes:
            raise ReplyError(reply)
        return reply

    async def _ehlo(self) -> None:
        reply = await self._expect(await self._command(f"EHLO {socket.gethostname() or 'schakel'}"), 250)
        self.extensions = _parse_extensions(reply)

    async def _starttls(self, host: str, ca_file: str | None) -> None:
        if "starttls" not in self.extensions:
            raise ReplyError(Reply(554, "the server does not offer STARTTLS"))
        await self._expect(await self._command("STARTTLS"), 220)
        context = ssl.create_default_context(cafile=ca_file)
        async with asyncio.timeout(self._timeout):
            await self._writer.start_tls(context, server_hostname=host)
        await self._ehlo()

    async def _authenticate(self, username: str, password: str) -> None:
        methods = self.extensions.get("auth", "").upper().split()
        if "PLAIN" in methods or "LOGIN" not in methods:
            token = b64encode(f"\0{username}\0{password}".encode()).decode()
            await self._expect(await self._command(f"AUTH PLAIN {token}"), 235)
            return
        await self._expect(await self._command("AUTH LOGIN"), 334)
        await self._expect(await self._command(b64encode(username.encode()).decode()), 334)
        await self._expect(await self._command(b64encode(password.encode()).decode()), 235)

    async def send(self, sender: str, recipients: list[str], data: bytes, *,
                   before_content: Callable[[], Awaitable[None]] | None = None) -> None:
        """One transaction: the envelope and DATA (pipelined when offered), then the content; ReplyError if refused.

        Every recipient must be accepted (Schakel's mails have one each); the first refusal is raised.
        `before_content` is awaited once the server is ready for the content (354), right before it goes: the
        server cannot accept the mail before it returns. If it raises, the transaction is left open (the
        caller drops the connection).
        """
        if not recipients:
            raise ValueError("a mail needs at least one recipient")
        options = ""
        if not all(address.isascii() for address in (sender, *recipients)):
            if "smtputf8" not in self.extensions:
                raise ReplyError(Reply(553, "the server does not accept non-ASCII addresses (no SMTPUTF8)"))
            options += " SMTPUTF8"
        if not data.isascii() and "8bitmime" in self.extensions:
            options += " BODY=8BITMIME"
        envelope: list[tuple[str, tuple[int, ...]]] = [(f"MAIL FROM:<{_address(sender)}>{options}", (250,))]
        envelope += [(f"RCPT TO:<{_address(recipient)}>", (250, 251)) for recipient in recipients]
        envelope.append(("DATA", (354,)))
        replies: list[Reply] = []
        if self.pipelining:
            self._writer.write("".join(command + "\r\n" for command, _ in envelope).encode())
            replies = [await self._read_reply() for _ in envelope]
        else:
            for command, wanted in envelope:
                replies.append(await self._command(command))
                if replies[-1].code not in wanted:
                    break
        refused = next((reply for reply, (_, wanted) in zip(replies, envelope, strict=False)
                        if reply.code not in wanted), None)
        if refused is not None:
            if len(replies) == len(envelope) and replies[-1].code == 354:  # DATA began all the same: end it empty
                self._writer.write(b".\r\n")
                await self._read_reply()
            await self._command("RSET")
            raise ReplyError(refused)
        content = content_for_data(data)
        if before_content is not None:
            await before_content()
        self._writer.write(content)
        await self._writer.drain()
        await self._expect(await self._read_reply(), 250)

    async def quit(self) -> None:
        """Say QUIT and close."""
        try:
            await self._command("QUIT")
        finally:
            self.close()

    def close(self) -> None:
        """Close the connection without a word."""
        self._writer.close()
