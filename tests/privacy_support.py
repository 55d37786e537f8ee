"""Opening per-child tokens in tests with the system's keys, read from privacy.keys like a service would."""

from __future__ import annotations

import re
import time
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from shared.keystore import KeyRing, open_token
from shared.subject_crypto import UndecryptableField, master_key_from
from shared.topics import PRIVACY_KEYS

DEVELOPMENT_MASTER_KEY = "development-only-master-key"  # the services' default (SCHAKEL_MASTER_KEY unset)
TOKEN = re.compile(rb"v2\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def system_ring(bootstrap: str) -> KeyRing:
    """The key ring as a freshly started service would build it: privacy.keys from its beginning."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                             consumer_timeout_ms=2000)
    ring = KeyRing()
    try:
        tp = TopicPartition(PRIVACY_KEYS.name, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        deadline = time.monotonic() + 30
        while consumer.position(tp) < end:
            assert time.monotonic() < deadline, "privacy.keys could not be read to its end"
            for records in consumer.poll(timeout_ms=1000).values():
                for record in records:
                    ring.apply(record.key, record.value)
        return ring
    finally:
        consumer.close()


def open_field(token: str, *, bootstrap: str, field: str, ring: KeyRing | None = None,
               master_secret: str = DEVELOPMENT_MASTER_KEY) -> str | None:
    """A token's text with the system's keys; None when its key is gone or it does not open."""
    try:
        return open_token(token, ring=ring or system_ring(bootstrap), master_key=master_key_from(master_secret),
                          field=field)
    except UndecryptableField:
        return None


def tokens_in(value: bytes | None) -> list[str]:
    """Every per-child token anywhere in a record value."""
    return [match.decode() for match in TOKEN.findall(value or b"")]


def header_of(token: str) -> dict[str, Any]:
    """A token's header (subject, key id, event id, field)."""
    from shared.subject_crypto import token_header

    header = token_header(token)
    return {"subject": header.subject, "kid": header.kid, "event_id": header.event_id, "field": header.field}
