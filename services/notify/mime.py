"""A rendered mail as the bytes SMTP sends, built directly (the hot path; `rendering.build_message` is the model).

`email.message.EmailMessage` costs about 1.6 ms per mail to assemble and flatten, most of notify's CPU per
signal. The same message is written here in a few string operations: the same headers, a multipart/
alternative body with a text part and an HTML part, both UTF-8 and quoted-printable, CRLF line ends.
tests/unit/test_mime.py parses the bytes back with the standard library and compares them with
`build_message`'s message.
"""

from __future__ import annotations

import binascii
import hashlib
from base64 import b64encode
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime

from services.notify.rendering import AMSTERDAM, RenderedMail, build_message, refuse_line_breaks

_MAX_HEADER = 76


@dataclass(frozen=True)
class OutgoingMail:
    """A message ready for SMTP: its envelope recipient, its Message-ID and kind, and its bytes."""

    recipient: str
    message_id: str
    kind: str
    data: bytes


def encoded_header(value: str) -> str:
    """A header value as is when it is ASCII, else as RFC 2047 base64 encoded-words on folded lines."""
    if value.isascii():
        return value
    words, chunk = [], ""
    for char in value:  # never split a character's UTF-8 bytes over two words
        if len((chunk + char).encode()) > 45:
            words.append(chunk)
            chunk = ""
        chunk += char
    words.append(chunk)
    return "\r\n ".join(f"=?utf-8?b?{b64encode(word.encode()).decode()}?=" for word in words)


def _part(subtype: str, body: str) -> str:
    text = body.replace("\r\n", "\n")
    encoded = binascii.b2a_qp(text.encode(), istext=True).decode("ascii").replace("\n", "\r\n")
    return (f"Content-Type: text/{subtype}; charset=\"utf-8\"\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n" + encoded)


def message_bytes(
    *,
    rendered: RenderedMail,
    sender: str,
    recipient: str,
    message_id: str,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    date: datetime | None = None,
) -> OutgoingMail:
    """The message `rendering.build_message` builds, as bytes for SMTP."""
    refuse_line_breaks(sender, recipient, message_id, in_reply_to or "", *references)
    if not (sender.isascii() and recipient.isascii()):  # rare: let the standard library encode the addresses
        message = build_message(rendered=rendered, sender=sender, recipient=recipient, message_id=message_id,
                                in_reply_to=in_reply_to, references=references, date=date)
        return OutgoingMail(recipient=recipient, message_id=message_id, kind=rendered.kind, data=message.as_bytes())
    boundary = "=_schakel_" + hashlib.sha256(message_id.encode()).hexdigest()[:24]
    headers = [
        f"Subject: {encoded_header(rendered.subject)}",
        f"From: {sender}",
        f"To: {recipient}",
        f"Date: {format_datetime(date or datetime.now(AMSTERDAM))}",
        f"Message-ID: {message_id}",
    ]
    if in_reply_to:
        headers.append(f"In-Reply-To: {in_reply_to}")
    if references:
        headers.append(f"References: {' '.join(references)}")
    headers += [
        "Auto-Submitted: auto-generated",
        "X-Auto-Response-Suppress: All",
        f"X-Schakel-Kind: {rendered.kind}",
        "MIME-Version: 1.0",
        f"Content-Type: multipart/alternative; boundary=\"{boundary}\"",
    ]
    body = (f"--{boundary}\r\n{_part('plain', rendered.text)}\r\n"
            f"--{boundary}\r\n{_part('html', rendered.html)}\r\n"
            f"--{boundary}--\r\n")
    data = ("\r\n".join(headers) + "\r\n\r\n" + body).encode("ascii")
    return OutgoingMail(recipient=recipient, message_id=message_id, kind=rendered.kind, data=data)
