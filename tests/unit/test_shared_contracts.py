"""The shared plumbing: event codec, pseudonyms, sealing, log redaction, the municipality file."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import structlog

from shared.events import (
    OIN,
    STRUCTURED_CONTENT_TYPE,
    Contact,
    SignalReceived,
    UndecodableRecord,
    Urgency,
    content_type_of,
    decode_as,
    decode_event,
    deterministic_id,
    encode_event,
    make_event,
    source_urn,
    utcnow,
)
from shared.logging import configure_logging, redact_personal_data
from shared.municipality import ConfigError, hash_token, load_municipality
from shared.pseudonym import family_key, seal, subject_key, unseal
from shared.settings import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "gemeente-voorbeeld.yaml"


def _received() -> SignalReceived:
    return SignalReceived(
        signal_id="s-1", reference="SK-2026-00000001", partner_id="obs-de-linde", partner_kind="school",
        category="KLAS", urgency=Urgency.U2, subject_key="sk_x", received_at=utcnow(),
        reporter=Contact(name="Juf", email="juf@school.example"), legal_basis="meldrecht",
    )


def test_an_event_survives_encoding_and_decoding() -> None:
    event = make_event(_received(), source=source_urn("test"), subject="s-1", event_id=deterministic_id("a"))
    envelope, data = decode_event(encode_event(event))
    assert envelope.type == "nl.schakel.signal.received.v1"
    assert data == _received().model_copy(update={"received_at": data.received_at})


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (None, "empty_record"),
        (b"{not json", "bad_json"),
        (b'{"specversion": "1.0"}', "bad_envelope"),
        (json.dumps({"specversion": "1.0", "id": "1", "source": "x", "type": "nl.other.v1",
                     "time": "2026-01-01T00:00:00Z", "data": {}}).encode(), "unknown_event_type"),
        (json.dumps({"specversion": "1.0", "id": "1", "source": "x", "type": "nl.schakel.signal.received.v1",
                     "time": "2026-01-01T00:00:00Z", "data": {"signal_id": "s"}}).encode(), "schema_violation"),
    ],
)
def test_undecodable_records_carry_a_stable_code(raw: bytes | None, code: str) -> None:
    with pytest.raises(UndecodableRecord) as caught:
        decode_event(raw)
    assert caught.value.code == code


def test_decode_errors_name_fields_but_never_echo_values() -> None:
    payload = _received().model_dump(mode="json")
    payload["urgency"] = "111222333"
    raw = json.dumps({"specversion": "1.0", "id": "1", "source": "x", "type": "nl.schakel.signal.received.v1",
                      "time": "2026-01-01T00:00:00Z", "data": {k: v for k, v in payload.items()
                                                                  if k != "event_type"}}).encode()
    with pytest.raises(UndecodableRecord) as caught:
        decode_event(raw)
    assert "urgency" in caught.value.detail
    assert "111222333" not in str(caught.value)


def test_decode_as_refuses_another_event_type() -> None:
    raw = encode_event(make_event(_received(), source=source_urn("test"), subject="s"))
    with pytest.raises(UndecodableRecord) as caught:
        decode_as(raw, Contact)  # type: ignore[type-var]
    assert caught.value.code == "unexpected_event_type"


def test_the_same_bsn_gives_the_same_subject_key_and_a_different_secret_another() -> None:
    assert subject_key(secret="a", bsn="111222333") == subject_key(secret="a", bsn="111222333")
    assert subject_key(secret="a", bsn="111222333") != subject_key(secret="b", bsn="111222333")
    assert "111222333" not in subject_key(secret="a", bsn="111222333")
    assert subject_key(secret="a", school_brin="12ab", pupil_ref="7") == subject_key(
        secret="a", school_brin="12AB", pupil_ref="7")
    assert family_key(secret="a", family_ref="F") != family_key(secret="b", family_ref="F")


def test_a_subject_without_identifiers_has_no_key() -> None:
    with pytest.raises(ValueError):
        subject_key(secret="a", school_brin="12AB")


def test_sealed_text_opens_only_with_the_same_key_and_signal() -> None:
    sealed = seal("kort lontje", key="k", context="s-1")
    assert "lontje" not in sealed
    assert unseal(sealed, key="k", context="s-1") == "kort lontje"
    with pytest.raises(ValueError):
        unseal(sealed, key="k", context="s-2")
    with pytest.raises(ValueError):
        unseal(sealed, key="other", context="s-1")


def test_log_lines_lose_personal_keys_and_bsn_like_values() -> None:
    event = redact_personal_data(None, "info", {
        "event": "x 111222333", "bsn": "111222333", "email": "a@b.nl", "note": "mail a@b.nl about 123456782",
        "signal_id": "s-1",
    })
    assert event["bsn"] == "[redacted]" and event["email"] == "[redacted]"
    assert "111222333" not in event["event"]
    assert "a@b.nl" not in event["note"] and "123456782" not in event["note"]
    assert event["signal_id"] == "s-1"


def test_the_configured_logger_redacts_stdlib_records_too(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(service="test", log_format="json", level="INFO")
    logging.getLogger("aiokafka").warning("lost contact with 111222333")
    structlog.get_logger("t").info("signal_seen", bsn="111222333", signal_id="s-9")
    err = capsys.readouterr().err
    assert "111222333" not in err
    assert "s-9" in err
    stdlib_line = next(json.loads(line) for line in err.splitlines() if "lost contact" in line)
    assert stdlib_line["logger"] == "aiokafka" and stdlib_line["event"] == "lost contact with [nummer]"


def test_the_example_municipality_loads_with_all_bodies() -> None:
    municipality = load_municipality(EXAMPLE)
    assert {"coordinator", "oov", "zat-12ab", "meldcode-12ab", "wijkteam-centrum"} <= set(municipality.bodies)
    assert municipality.wijkteam_body("3581").id == "wijkteam-oost"  # type: ignore[union-attr]
    assert municipality.partner_by_token("demo-politie-token").id == "politie-basisteam"  # type: ignore[union-attr]
    assert municipality.partner_by_token("wrong") is None
    assert hash_token("x").startswith("sha256:")


def test_a_broken_municipality_file_is_refused_with_the_line(tmp_path: Path) -> None:
    text = EXAMPLE.read_text().replace("partner: obs-de-linde\n    zat:", "partner: onbekend\n    zat:", 1)
    broken = tmp_path / "gemeente.yaml"
    broken.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_municipality(broken)
    line = next(i for i, text_line in enumerate(text.splitlines(), 1) if "partner: onbekend" in text_line)
    assert caught.value.problems[0][0] == line
    assert "onbekend" in caught.value.problems[0][1]


def test_invalid_yaml_is_refused_with_the_line(tmp_path: Path) -> None:
    broken = tmp_path / "gemeente.yaml"
    broken.write_text("municipality:\n  id: x\n  name: [unclosed\n")
    with pytest.raises(ConfigError) as caught:
        load_municipality(broken)
    assert caught.value.problems[0][0] in (3, 4)


@pytest.mark.parametrize(
    ("busy", "ready", "lag", "idle_s", "stalled"),
    [
        (False, True, 5, 200.0, True),
        (True, True, 5, 200.0, False),  # a handler waits (e.g. for SMTP): progress, not a stall
        (False, False, 5, 200.0, False),  # recovering or rebalancing
        (False, True, 0, 200.0, False),  # nothing waits
        (False, True, 5, 30.0, False),  # not idle long enough
    ],
)
def test_a_consumer_counts_as_stalled_only_when_records_wait_and_nothing_moves(
    busy: bool, ready: bool, lag: int, idle_s: float, stalled: bool
) -> None:
    from shared.stall_watch import is_stalled

    assert is_stalled(busy=busy, ready=ready, lag=lag, idle_s=idle_s, after_s=120.0) is stalled


def test_production_refuses_the_development_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from shared.settings import Settings

    monkeypatch.setenv("SCHAKEL_ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="SCHAKEL_PSEUDONYM_SECRET"):
        Settings()
    for name in ("PSEUDONYM_SECRET", "SEALING_KEY", "INBOUND_SIGNING_SECRET", "MASTER_KEY"):
        monkeypatch.setenv(f"SCHAKEL_{name}", f"{name.lower()}-0123456789abcdef0123456789abcdef")
    assert Settings().environment == "production"


def test_development_runs_with_the_development_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.settings import Settings

    monkeypatch.delenv("SCHAKEL_ENVIRONMENT", raising=False)
    assert Settings().environment == "development"


def test_an_envelope_follows_the_nl_gov_profile() -> None:
    event = make_event(_received(), source=source_urn("intake"), subject="5b2c9e1e-7d0f-4a43-9d5e-3f8f3c1a2b10")
    assert event.source == f"urn:nld:oin:{OIN}:systeem:schakel-intake"
    assert event.type == "nl.schakel.signal.received.v1"
    assert abs((event.time - utcnow()).total_seconds()) < 5  # the moment it was logged
    assert make_event(_received(), source=source_urn("cli"), subject=None).subject is None
    assert "subject" not in json.loads(encode_event(make_event(_received(), source=source_urn("cli"), subject="")))
    with pytest.raises(ValueError, match="NL GOV"):
        make_event(_received(), source="schakel/intake", subject=None)
    with pytest.raises(ValueError, match="component"):
        source_urn("Intake Service")


def test_records_from_before_the_binding_and_structured_ones_are_read_other_content_types_refused() -> None:
    # Written before Schakel set the content-type header (and with the old source form): still read.
    legacy = json.dumps({"specversion": "1.0", "id": "1", "source": "schakel/intake",
                         "type": "nl.schakel.signal.received.v1", "time": "2026-01-01T00:00:00Z",
                         "data": _received().model_dump(mode="json", exclude={"event_type"})}).encode()
    assert decode_event(legacy)[0].source == "schakel/intake"
    assert decode_event(legacy, content_type=STRUCTURED_CONTENT_TYPE)[0].id == "1"
    assert decode_event(legacy, content_type="Application/CloudEvents+JSON")[0].id == "1"
    for other in ("application/json", "application/cloudevents-batch+json", "text/plain"):
        with pytest.raises(UndecodableRecord) as refused:
            decode_event(legacy, content_type=other)  # binary mode (or a batch) is not what Schakel reads
        assert refused.value.code == "unsupported_content_type"


def test_content_type_is_found_in_either_form_of_kafka_headers() -> None:
    assert content_type_of([("Content-Type", b"application/json"), ("x", b"y")]) == "application/json"
    assert content_type_of({"content-type": b"a/b"}) == "a/b"
    assert content_type_of(None) is None and content_type_of([("ce_type", b"x")]) is None


def test_the_services_own_lines_are_one_json_object_each_with_level_logger_and_service(
        capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(service="test", log_format="json", level="INFO")
    log = structlog.get_logger("services.example")
    log.debug("below_the_level", signal_id="s-0")
    log.info("signal_seen", signal_id="s-1", note="mail a@b.nl", bodies=["zat-12ab"])
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        log.critical("worker_stopping", error="RuntimeError", exc_info=exc)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["event"] for line in lines] == ["signal_seen", "worker_stopping"]
    seen, stopping = lines
    assert seen["level"] == "info" and seen["logger"] == "services.example" and seen["service"] == "test"
    assert seen["signal_id"] == "s-1" and seen["bodies"] == ["zat-12ab"] and "a@b.nl" not in seen["note"]
    assert stopping["level"] == "critical" and "RuntimeError: boom" in stopping["exception"]


def test_a_value_orjson_refuses_still_makes_a_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(service="test", log_format="json", level="INFO")
    structlog.get_logger("services.example").info("odd_values", counts={1: 2}, big=2**70)
    line = json.loads(capsys.readouterr().err)
    assert line["counts"] == {"1": 2} and line["big"] == 2**70


class _Circular(list[object]):
    def __init__(self) -> None:
        super().__init__()
        self.append(self)


def test_a_value_no_json_can_hold_still_makes_a_line_and_an_exception_keeps_its_type(
        capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(service="test", log_format="json", level="INFO")
    log = structlog.get_logger("services.example")
    log.info("circular", signal_id="s-1", loop=_Circular())
    log.info("with_error", error=KeyError())
    circular, with_error = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert circular["event"] == "circular" and circular["logger"] == "services.example"
    assert circular["log_render_error"] == "ValueError"
    assert with_error["error"] == "KeyError()"


class _BrokenStream:
    def write(self, _: str) -> int:
        raise BrokenPipeError

    def flush(self) -> None:
        raise BrokenPipeError


def test_a_failing_stderr_does_not_fail_the_code_that_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    configure_logging(service="test", log_format="json", level="INFO")
    monkeypatch.setattr("sys.stderr", _BrokenStream())
    structlog.get_logger("services.example").info("signal_seen", signal_id="s-1")
