"""Who wins a claim without reading it back, answers replayed before the log holds them, a failed `done` retried."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiokafka.structs import RecordMetadata

from services.intake.answers import PendingAnswers, claim_wins
from services.intake.idempotency import IdempotencyStore
from services.intake.ledger import Claim, Done, Ledger, claim_record, done_record, release_record
from services.intake.publisher import BrokerUnavailable, Publisher
from services.intake.settings import IntakeSettings
from shared import fastjson

SLOT = "obs-de-linde:abc"


def claim(claim_id: str, at: float, lease_s: float = 30.0) -> Claim:
    return Claim(claim_id, "f", at, lease_s)


def append(ledger: Ledger, c: Claim) -> None:
    ledger.apply(*claim_record(SLOT, claim_id=c.claim_id, fingerprint=c.fingerprint, at=c.at, lease_s=c.lease_s))


def test_the_verdict_before_reading_the_claim_back_is_the_verdict_after() -> None:
    histories: list[list[tuple[str, bytes]]] = [
        [],
        [claim_record(SLOT, claim_id="a", fingerprint="f", at=100.0, lease_s=30)],
        [claim_record(SLOT, claim_id="a", fingerprint="f", at=60.0, lease_s=30)],
        [claim_record(SLOT, claim_id="a", fingerprint="f", at=95.0, lease_s=30), release_record(SLOT, claim_id="a")],
        [claim_record(SLOT, claim_id="a", fingerprint="f", at=60.0, lease_s=30),
         done_record(SLOT, claim_id="a", fingerprint="f", response={"signal_id": "s"})],
    ]
    for history in histories:
        before, after = Ledger(), Ledger()
        for record in history:
            before.apply(*record)
            after.apply(*record)
        mine = claim("mine", 101.0)
        append(after, mine)
        assert claim_wins(before, slot=SLOT, claim=mine, read_past=False) == claim_wins(
            after, slot=SLOT, claim=mine, read_past=True), history


def test_an_earlier_live_claim_wins_over_mine() -> None:
    ledger = Ledger()
    append(ledger, claim("theirs", 100.0))
    assert not claim_wins(ledger, slot=SLOT, claim=claim("mine", 101.0), read_past=False)
    assert claim_wins(Ledger(), slot=SLOT, claim=claim("mine", 101.0), read_past=False)


def test_a_pending_answer_is_kept_until_the_log_holds_an_answer_for_its_slot() -> None:
    answers = PendingAnswers()
    answer = Done("c", "f", {"signal_id": "s"})
    answers.put(SLOT, answer)
    assert answers.unwritten(SLOT) == answer
    answers.written(SLOT)
    assert answers.unwritten(SLOT) is None and answers.get(SLOT) == answer
    answers.forget({})
    assert answers.get(SLOT) == answer
    answers.forget({SLOT: answer})
    assert answers.get(SLOT) is None and len(answers) == 0


class FlakyPublisher(Publisher):
    """Fails the first `failures` writes, then acknowledges; remembers what it wrote."""

    def __init__(self, failures: int) -> None:
        super().__init__(IntakeSettings(), send_timeout_s=1.0)
        self.failures = failures
        self.written: list[tuple[str, bytes]] = []

    async def publish(self, *, topic: str, key: str | bytes | None, value: bytes,
                      headers: list[tuple[str, bytes]] | None = None) -> RecordMetadata:
        if self.failures > 0:
            self.failures -= 1
            raise BrokerUnavailable("down")
        assert isinstance(key, str)
        self.written.append((key, value))
        return RecordMetadata(topic, 0, None, len(self.written) - 1, -1, -1, -1)  # type: ignore[arg-type]


async def test_a_failed_done_write_is_retried_and_the_answer_replayed_meanwhile() -> None:
    publisher = FlakyPublisher(failures=2)
    store = IdempotencyStore(IntakeSettings(), publisher)
    store.complete_soon(SLOT, claim_id="c", fingerprint="f", response={"signal_id": "s"})
    assert store.done(SLOT) == Done("c", "f", {"signal_id": "s"})
    for _ in range(100):
        if publisher.written:
            break
        await asyncio.sleep(0.05)
    [(key, value)] = publisher.written
    assert key == f"done:{SLOT}" and json.loads(value)["response"] == {"signal_id": "s"}
    assert store.done(SLOT) is not None  # until the tailer has read it back
    await store.stop()


def test_fast_json_parses_exactly_as_the_standard_library() -> None:
    documents: list[Any] = [b'{"a": [1, 2.5, "\\u00e9"], "b": null, "a2": true}', b'{"a":1,"a":2}',
                            b"[123456789012345678901234567890]", b"NaN", b'"\\ud800"', b"[1e400]"]
    for raw in documents:
        assert repr(fastjson.loads(raw)) == repr(json.loads(raw)), raw
    for bad in (b"[1,", b"", b"{'a': 1}"):
        try:
            fastjson.loads(bad)
        except ValueError:
            continue
        raise AssertionError(bad)
    assert json.loads(fastjson.dumps({"x": "é", "n": [1, None]})) == {"x": "é", "n": [1, None]}


async def test_an_answer_waits_for_the_next_claim_and_goes_out_with_it(monkeypatch: Any) -> None:
    monkeypatch.setattr("services.intake.idempotency.ANSWER_RIDES_WITH_NEXT_CLAIM_S", 30.0)
    publisher = FlakyPublisher(failures=0)
    store = IdempotencyStore(IntakeSettings(), publisher)
    store.recovered = True
    store.complete_soon(SLOT, claim_id="c", fingerprint="f", response={"signal_id": "s"})
    for _ in range(5):
        await asyncio.sleep(0)
    assert publisher.written == []  # no claim yet: the answer waits (here up to 30 s)
    won = await store.claim("obs-de-linde:other", fingerprint="g")
    assert won is not None
    for _ in range(5):
        await asyncio.sleep(0)
    assert [key for key, _ in publisher.written] == ["claim:obs-de-linde:other", f"done:{SLOT}"]
    await store.stop()


async def test_a_stop_writes_the_answers_that_wait_for_a_claim(monkeypatch: Any) -> None:
    monkeypatch.setattr("services.intake.idempotency.ANSWER_RIDES_WITH_NEXT_CLAIM_S", 30.0)
    publisher = FlakyPublisher(failures=0)
    store = IdempotencyStore(IntakeSettings(), publisher)
    store.complete_soon(SLOT, claim_id="c", fingerprint="f", response={"signal_id": "s"})
    await asyncio.wait_for(store.stop(), timeout=5)
    assert [key for key, _ in publisher.written] == [f"done:{SLOT}"]
