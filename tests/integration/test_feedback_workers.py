"""Reliability #10 for feedback: two workers, and every GET and POST answered by either of them (ADR 0015)."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.load import Submitter
from bench.stack import BENCH_ENV
from schakel.kafka_broker import Broker
from tests.harness import System, auth, wait_until

pytestmark = pytest.mark.kafka

SIGNALS = int(os.environ.get("SCHAKEL_TEST_FEEDBACK_WORKER_SIGNALS", "60"))  # reliability #10 asks 1,000 once
BODY_PARTNER = "wijkteam-centrum"  # the bench's signals (THUIS, 3511) go to wijkteam Centrum


@pytest.fixture
def two_feedback_workers(fresh_kafka: Broker, tmp_path: Path) -> Iterator[System]:
    running = System(broker=fresh_kafka, root=tmp_path, extra_env=dict(BENCH_ENV))
    try:
        running.start(["intake", "routing", "feedback"])
        running.add_worker("feedback")
        yield running
    finally:
        running.stop()


def test_any_feedback_worker_answers_every_get_and_post_for_every_signal(two_feedback_workers: System) -> None:
    system = two_feedback_workers
    workers = [system.services["feedback"].base_url, system.services["feedback-2"].base_url]
    client = httpx.Client(timeout=30, headers=auth(BODY_PARTNER))
    answers: Counter[str] = Counter()

    def get(worker: int, signal_id: str) -> httpx.Response:
        response = client.get(f"{workers[worker]}/v1/signals/{signal_id}")
        answers[f"GET {response.status_code}"] += 1
        return response

    def post(worker: int, signal_id: str, body: dict[str, str]) -> httpx.Response:
        response = client.post(f"{workers[worker]}/v1/signals/{signal_id}/events", json=body)
        answers[f"POST {response.status_code}"] += 1
        return response

    submitter = Submitter(system.services["intake"].base_url, run=f"fbw{int(time.time()) % 100000}", clients=4)
    submitted = submitter.run_all(SIGNALS)
    assert submitted.accepted == SIGNALS and not submitted.failed
    ids = [submitted.signal_ids[seq] for seq in range(SIGNALS)]
    # Known once feedback handled the assignment: polled on one worker; from then on nothing may be "not found".
    for n, signal_id in enumerate(ids):
        url = f"{workers[n % 2]}/v1/signals/{signal_id}"
        wait_until(lambda url=url: client.get(url).status_code == 200, timeout=90, what=f"signal {n} in feedback")
    for n, signal_id in enumerate(ids):
        mine, other = n % 2, (n + 1) % 2
        assert get(other, signal_id).json()["status"] == "assigned"
        acknowledged = post(other, signal_id, {"type": "acknowledged"})
        assert acknowledged.status_code == 200, acknowledged.text
        assert acknowledged.json()["status"] == "acknowledged"
        assert get(mine, signal_id).json()["status"] == "acknowledged"  # the other worker sees the change at once
        again = post(mine, signal_id, {"type": "acknowledged"})
        assert again.status_code == 409 and again.json()["current_status"] == "acknowledged"
        feedback = post(mine, signal_id, {"type": "feedback", "message": "Contact gelegd met de ouders."})
        assert feedback.status_code == 200 and feedback.json()["status"] == "feedback_given"
        assert [h["type"] for h in get(other, signal_id).json()["history"]][-2:] == ["acknowledged", "feedback"]
    print(f"\nanswers: {dict(answers)}")
    assert answers == Counter({"GET 200": 3 * SIGNALS, "POST 200": 2 * SIGNALS, "POST 409": SIGNALS})
    # Both workers answered for signals the other one owns (so both paths ran, not one worker doing everything).
    for name in ("feedback", "feedback-2"):
        assert '"signal_read_from_owner"' in system.services[name].log_path.read_text(errors="replace"), name
