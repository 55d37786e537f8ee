"""The event ids and envelopes the record loop builds on its hot path are the ones the slow, obvious way builds."""

from __future__ import annotations

import random
import string
import uuid
from datetime import UTC, datetime

import pytest

from shared.events import (
    SCHAKEL_NAMESPACE,
    CloudEvent,
    Contact,
    SignalReceived,
    Urgency,
    deterministic_id,
    encode_event,
    make_event,
    source_urn,
)


def _words(rng: random.Random) -> list[str]:
    alphabet = string.ascii_letters + string.digits + "-|:é€ "
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(rng.randint(1, 4))]


def test_deterministic_id_is_uuid5_of_the_joined_parts() -> None:
    rng = random.Random(10)
    for _ in range(5000):
        parts = _words(rng)
        assert deterministic_id(*parts) == str(uuid.uuid5(SCHAKEL_NAMESPACE, "|".join(parts))), parts


def test_deterministic_id_has_version_5_and_the_rfc_variant() -> None:
    for n in range(256):
        parsed = uuid.UUID(deterministic_id("assigned", str(n)))
        assert (parsed.version, parsed.variant) == (5, uuid.RFC_4122)


def _received() -> SignalReceived:
    return SignalReceived(
        signal_id="s-1", reference="SK-2026-00000001", partner_id="obs-de-linde", partner_kind="school",
        category="KLAS", urgency=Urgency.U2, subject_key="sk_x", received_at=datetime(2026, 12, 7, 12, tzinfo=UTC),
        reporter=Contact(name="Juf", email="juf@school.example"), legal_basis="meldrecht", family_key="fk_x",
    )


def test_an_envelope_built_without_revalidation_encodes_as_a_validated_one() -> None:
    event = make_event(_received(), source=source_urn("intake"), subject="3f1d", event_id="id-1")
    validated = CloudEvent.model_validate(event.model_dump())
    assert encode_event(event) == encode_event(validated)
    assert CloudEvent.model_validate_json(encode_event(event)) == validated


def test_an_envelope_off_the_profile_is_refused() -> None:
    with pytest.raises(ValueError, match="NL GOV"):
        make_event(_received(), source="urn:other:intake", subject=None)
