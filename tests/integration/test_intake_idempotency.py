"""Idempotency-Key against the real broker, with two intake processes: sequential, concurrent, restart, conflict."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from schakel.kafka_broker import Broker
from schakel.processes import ServiceProcess
from tests.integration.intake_support import auth, received_events, signal_body, start_intake, write_municipality

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("intake-idem")


@pytest.fixture(scope="module")
def intakes(kafka: Broker, workdir: Path) -> Iterator[list[ServiceProcess]]:
    config = write_municipality(workdir)
    processes = [start_intake(workdir / f"p{i}", bootstrap=kafka.bootstrap, config=config) for i in range(2)]
    yield processes
    for process in processes:
        process.stop()


def submit(process: ServiceProcess, key: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.post(f"{process.base_url}/v1/signals", json=body or signal_body(), timeout=60,
                      headers={**auth(), "Idempotency-Key": key})


def records_for(kafka: Broker, signal_id: str) -> int:
    return len(received_events(kafka.bootstrap, signal_id=signal_id))


def test_five_sequential_retries_give_one_signal_and_the_same_answer(
    intakes: list[ServiceProcess], kafka: Broker
) -> None:
    key = str(uuid.uuid4())
    responses = [submit(intakes[i % 2], key) for i in range(5)]
    assert {r.status_code for r in responses} == {202}
    assert len({r.text for r in responses}) == 1
    assert records_for(kafka, responses[0].json()["signal_id"]) == 1


def test_ten_concurrent_requests_over_two_processes_publish_exactly_once(
    intakes: list[ServiceProcess], kafka: Broker
) -> None:
    key = str(uuid.uuid4())
    with ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(pool.map(lambda i: submit(intakes[i % 2], key), range(10)))
    assert [r.status_code for r in responses] == [202] * 10, [r.text for r in responses]
    assert len({r.json()["signal_id"] for r in responses}) == 1
    assert records_for(kafka, responses[0].json()["signal_id"]) == 1


def test_concurrent_requests_with_different_bodies_under_one_key_publish_one_and_refuse_the_rest(
    intakes: list[ServiceProcess], kafka: Broker
) -> None:
    key = str(uuid.uuid4())
    bodies = [signal_body(summary=f"variant {i}") for i in range(6)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(lambda i: submit(intakes[i % 2], key, bodies[i]), range(6)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [202] + [409] * 5, [r.text for r in responses]
    accepted = next(r for r in responses if r.status_code == 202)
    assert records_for(kafka, accepted.json()["signal_id"]) == 1


def test_the_same_key_with_another_body_is_refused_with_409(intakes: list[ServiceProcess]) -> None:
    key = str(uuid.uuid4())
    assert submit(intakes[0], key).status_code == 202
    response = submit(intakes[1], key, signal_body(category="KLAS"))
    assert response.status_code == 409
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "idempotency_conflict"


def test_a_retry_after_an_intake_restart_replays_the_answer_and_publishes_nothing(
    intakes: list[ServiceProcess], kafka: Broker, workdir: Path
) -> None:
    key = str(uuid.uuid4())
    first = submit(intakes[0], key)
    assert first.status_code == 202
    for process in intakes:
        process.stop()
    restarted = start_intake(workdir / "restarted", bootstrap=kafka.bootstrap, config=workdir / "gemeente.yaml")
    try:
        again = submit(restarted, key)
        assert again.status_code == 202 and again.json() == first.json()
        assert records_for(kafka, first.json()["signal_id"]) == 1
        assert submit(restarted, key, signal_body(category="KLAS")).status_code == 409
        metrics = httpx.get(f"{restarted.base_url}/metrics").text
        assert "intake_idempotent_replays_total 1.0" in metrics
    finally:
        restarted.stop()
        for process in intakes:
            process.start()
        for process in intakes:
            process.wait_ready(timeout=60)
