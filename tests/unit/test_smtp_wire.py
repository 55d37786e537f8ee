"""The SMTP client's wire rules: DATA's dot-stuffing, and that the envelope really is pipelined when offered.

The server here is a script on a real socket that answers nothing until it holds the whole envelope: a client
that waited for the reply to MAIL FROM before sending RCPT TO would never get a mail through it.
"""

from __future__ import annotations

import asyncio
import random
import re

import pytest

from services.notify.smtp_wire import ReplyError, SmtpConnection, content_for_data


def test_data_content_gets_crlf_line_ends_doubled_leading_dots_and_the_final_dot() -> None:
    assert content_for_data(b"a\n.b\r\n..c\rd") == b"a\r\n..b\r\n...c\r\nd\r\n.\r\n"
    assert content_for_data(b".\r\n") == b"..\r\n.\r\n"


def test_data_content_is_what_the_line_by_line_rules_give_for_any_mix_of_line_ends_and_dots() -> None:
    def by_the_rules(data: bytes) -> bytes:  # the definition: every line ending CRLF, a line's leading dot doubled
        lines = re.split(rb"\r\n|\r|\n", data)
        if len(lines) > 1 and lines[-1] == b"":  # a final line end ends the last line; empty data is one line
            lines.pop()
        return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines) + b".\r\n"

    chooser = random.Random(20261202)
    for _ in range(20_000):
        data = bytes(chooser.choice(b"a.\r\n") for _ in range(chooser.randrange(0, 12)))
        assert content_for_data(data) == by_the_rules(data), data


async def _scripted_server(*, offer_pipelining: bool, refuse_rcpt: bool = False) -> tuple[asyncio.Server, list[bytes]]:
    """Answers the envelope only once MAIL, RCPT and DATA are all in (pipelined) or line by line (not offered)."""
    seen: list[bytes] = []

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 script ESMTP\r\n")
        await reader.readline()  # EHLO
        writer.write(b"250-script\r\n" + (b"250-PIPELINING\r\n" if offer_pipelining else b"") + b"250 8BITMIME\r\n")
        while True:
            line = await reader.readline()
            if not line or line.startswith(b"QUIT"):
                writer.write(b"221 bye\r\n")
                break
            if line.startswith(b"RSET"):
                writer.write(b"250 reset\r\n")
                continue
            envelope = [line]
            if offer_pipelining:  # nothing is answered before the whole envelope is here
                envelope += [await reader.readline(), await reader.readline()]
                writer.write(b"250 ok\r\n" + (b"550 no such user\r\n" if refuse_rcpt else b"250 ok\r\n")
                             + (b"554 no valid recipients\r\n" if refuse_rcpt else b"354 go ahead\r\n"))
            else:
                writer.write(b"250 ok\r\n")
                envelope.append(await reader.readline())
                writer.write(b"250 ok\r\n")
                envelope.append(await reader.readline())
                writer.write(b"354 go ahead\r\n")
            seen.extend(envelope)
            if refuse_rcpt:
                continue
            while (body := await reader.readline()) != b".\r\n":
                seen.append(body)
            writer.write(b"250 queued\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(session, "127.0.0.1", 0)
    return server, seen


@pytest.mark.parametrize("offer_pipelining", [True, False])
async def test_the_envelope_goes_in_one_write_only_when_the_server_offers_pipelining(offer_pipelining: bool) -> None:
    server, seen = await _scripted_server(offer_pipelining=offer_pipelining)
    port = server.sockets[0].getsockname()[1]
    async with server:
        connection = await SmtpConnection.open(host="127.0.0.1", port=port, timeout=2.0)
        assert connection.pipelining is offer_pipelining
        await connection.send("a@b.example", ["c@d.example"], b"Subject: x\r\n\r\nhallo\r\n")
        await connection.send("a@b.example", ["c@d.example"], b"Subject: y\r\n\r\nnog een\r\n")
        await connection.quit()
    assert seen[:3] == [b"MAIL FROM:<a@b.example>\r\n", b"RCPT TO:<c@d.example>\r\n", b"DATA\r\n"]
    assert seen.count(b"DATA\r\n") == 2


async def test_a_refused_pipelined_envelope_raises_the_first_refusal_and_resets() -> None:
    server, seen = await _scripted_server(offer_pipelining=True, refuse_rcpt=True)
    port = server.sockets[0].getsockname()[1]
    async with server:
        connection = await SmtpConnection.open(host="127.0.0.1", port=port, timeout=2.0)
        with pytest.raises(ReplyError) as refused:
            await connection.send("a@b.example", ["weg@d.example"], b"x\r\n")
        assert connection.is_connected
        await connection.quit()
    assert refused.value.reply.code == 550
    assert seen == [b"MAIL FROM:<a@b.example>\r\n", b"RCPT TO:<weg@d.example>\r\n", b"DATA\r\n"]


def test_addresses_with_line_breaks_are_refused_before_anything_is_written() -> None:
    async def attempt() -> None:
        server, _ = await _scripted_server(offer_pipelining=True)
        port = server.sockets[0].getsockname()[1]
        async with server:
            connection = await SmtpConnection.open(host="127.0.0.1", port=port, timeout=2.0)
            try:
                await connection.send("a@b.example", ["c@d.example>\r\nRCPT TO:<x@y.example"], b"x\r\n")
            finally:
                connection.close()

    with pytest.raises(ValueError, match="line breaks"):
        asyncio.run(attempt())
