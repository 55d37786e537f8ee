"""The mail bytes notify sends (services.notify.mime) are the message build_message describes."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage

import pytest

from schakel.mail_preview import sample_context
from services.notify.mime import encoded_header, message_bytes
from services.notify.rendering import KINDS, build_message, render

DATE = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HEADERS = ("Subject", "From", "To", "Date", "Message-ID", "In-Reply-To", "References", "Auto-Submitted",
           "X-Auto-Response-Suppress", "X-Schakel-Kind")


@pytest.mark.parametrize("kind", KINDS)
def test_the_bytes_parse_to_the_same_headers_and_parts_as_the_standard_message(kind: str) -> None:
    rendered = render(kind, sample_context(kind))
    args = dict(rendered=rendered, sender="Schakel <noreply@schakel.example>", recipient="ib@delinde.example",
                message_id="<m1@schakel.example>", in_reply_to="<t@schakel.example>",
                references=("<t@schakel.example>",), date=DATE)
    model = build_message(**args)  # type: ignore[arg-type]
    sent = message_bytes(**args)  # type: ignore[arg-type]
    assert b"\r\n" in sent.data and b"\n" not in sent.data.replace(b"\r\n", b"")
    parsed = email.message_from_bytes(sent.data, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    for name in HEADERS:
        assert str(parsed[name]) == str(model[name]), name
    for subtype in ("plain", "html"):
        ours, theirs = parsed.get_body((subtype,)), model.get_body((subtype,))
        assert ours is not None and theirs is not None
        assert ours.get_content().replace("\r\n", "\n") == theirs.get_content()  # type: ignore[attr-defined]
        assert ours.get_content_type() == f"text/{subtype}"
    assert (sent.recipient, sent.message_id, sent.kind) == ("ib@delinde.example", "<m1@schakel.example>", kind)


def test_a_non_ascii_subject_is_encoded_in_words_that_keep_characters_whole() -> None:
    subject = "[Schakel] SK-2026-000123 · ZAT · U2 · Nieuw signaal — één, twee, drie " * 2
    encoded = encoded_header(subject)
    assert encoded.isascii() and all(len(line) <= 76 for line in encoded.split("\r\n"))
    parsed = email.message_from_bytes(f"Subject: {encoded}\r\n\r\n".encode(), policy=policy.default)
    assert str(parsed["Subject"]) == subject


def test_line_breaks_in_a_header_value_are_refused() -> None:
    rendered = render("assigned", sample_context("assigned"))
    with pytest.raises(ValueError):
        message_bytes(rendered=rendered, sender="a@b.example", recipient="x@y.example\r\nBcc: z@z.example",
                      message_id="<m@x>")
