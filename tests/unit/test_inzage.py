"""The inzage document (schakel.inzage.assemble): one child's signals and accesses, nothing of another child."""

from __future__ import annotations

from typing import Any

from schakel.inzage import Holdings, assemble

CHILD, OTHER = "sk_" + "1" * 40, "sk_" + "2" * 40


def received(signal_id: str, subject: str, summary: str | None) -> dict[str, Any]:
    return {"type": "nl.schakel.signal.received.v1", "data": {
        "signal_id": signal_id, "reference": f"SK-{signal_id}", "subject_key": subject, "partner_id": "obs-de-linde",
        "partner_kind": "school", "category": "KLAS", "urgency": "U2", "legal_basis": "meldrecht",
        "received_at": f"2026-01-0{signal_id[-1]}T09:00:00+00:00", "summary_sealed": summary}}


def event(kind: str, signal_id: str, **data: Any) -> dict[str, Any]:
    return {"type": kind, "data": {"signal_id": signal_id, **data}}


def test_the_document_holds_the_childs_signals_with_their_readers_and_marks_what_was_erased() -> None:
    holdings = Holdings(
        received=[received("s-1", CHILD, "v2.a.b"), received("s-2", CHILD, "v2.c.d"), received("s-3", OTHER, "v2.e.f"),
                  received("s-1", CHILD, "v2.a.b")],
        by_topic={
            "signals.assigned": [event("nl.schakel.signal.assigned.v1", "s-1", route="zat", body_id="zat-12ab",
                                       attempt=1)],
            "signals.lifecycle": [
                event("nl.schakel.signal.lifecycle.v1", "s-1", change="feedback", message_sealed="v2.m.n"),
                event("nl.schakel.signal.erased.v1", "s-2")],
            "audit.log": [event("nl.schakel.audit.recorded.v1", "s-1", action="read", actor_partner_id="zat"),
                          event("nl.schakel.audit.recorded.v1", "s-3", action="read", actor_partner_id="x")],
        },
        state={"s-1": {"status": "feedback_given", "deadlines": [{"clock": "close"}]}},
    )
    texts = {("v2.a.b", "summary"): "Wordt gepest", ("v2.m.n", "feedback_message"): "Ouders gesproken"}
    document = assemble(CHILD, holdings, exported_at="now",
                        opener=lambda token, field, _signal: texts.get((token, field)))
    first, second = document["signals"]
    assert [first["signal_id"], second["signal_id"]] == ["s-1", "s-2"]  # once each, oldest first; not s-3
    assert first["summary"] == "Wordt gepest" and not first["erased"] and first["status"] == "feedback_given"
    assert first["history"] == [{"change": "feedback", "status": None, "actor_partner_id": None, "at": None,
                                 "outcome": None, "reason": None, "message": "Ouders gesproken"}]
    assert first["accesses"][0]["actor_partner_id"] == "zat" and len(first["accesses"]) == 1
    assert first["routes"][0]["body_id"] == "zat-12ab" and first["deadlines"] == [{"clock": "close"}]
    assert second["erased"] and second["summary"] is None
    assert "s-3" not in str(document) and "v2.e.f" not in str(document)


def test_an_event_on_the_topics_twice_under_one_id_is_in_the_history_once() -> None:
    rejection = {"id": "ev-1", **event("nl.schakel.signal.lifecycle.v1", "s-1", change="rejected")}
    repaired = {"id": "ev-1", **event("nl.schakel.signal.lifecycle.v1", "s-1", change="rejected", handoff={})}
    closed = {"id": "ev-2", **event("nl.schakel.signal.lifecycle.v1", "s-1", change="closed")}
    holdings = Holdings(received=[received("s-1", CHILD, None)],
                        by_topic={"signals.lifecycle": [rejection, closed, repaired]})
    [signal] = assemble(CHILD, holdings, exported_at="now", opener=lambda *_: None)["signals"]
    assert [entry["change"] for entry in signal["history"]] == ["rejected", "closed"]
