"""Services started before the broker wait for it: no crash loop, not ready until connected (reliability #3)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from schakel.kafka_broker import Broker, free_port
from schakel.processes import ServiceProcess, http_ok
from schakel.topics_admin import ensure_topics
from tests.harness import EXAMPLE_CONFIG

pytestmark = pytest.mark.kafka
WAIT_BEFORE_BROKER_S = 12.0


def test_stream_services_wait_for_a_late_broker_and_become_ready(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "kafka", port=free_port(), controller_port=free_port())
    env = {"SCHAKEL_KAFKA_BOOTSTRAP": broker.bootstrap, "SCHAKEL_STATE_DIR": str(tmp_path / "state"),
           "SCHAKEL_CONFIG": str(EXAMPLE_CONFIG), "SCHAKEL_SMTP_PORT": str(free_port())}
    services = [ServiceProcess(name=name, port=free_port(), env=env, log_path=tmp_path / f"{name}.log")
                for name in ("intake", "routing", "feedback", "notify")]
    for service in services:
        service.start()
    try:
        deadline = time.monotonic() + WAIT_BEFORE_BROKER_S
        while time.monotonic() < deadline:
            for service in services:
                assert service.alive(), f"{service.name} exited without a broker:\n{service.tail()}"
                assert not http_ok(f"{service.base_url}/readyz"), f"{service.name} ready without a broker"
            time.sleep(0.5)
        broker.start()
        ensure_topics(broker.bootstrap)
        started = time.monotonic()
        for service in services:
            service.wait_ready(timeout=120)
        print(f"\nall four ready {time.monotonic() - started:.1f}s after the broker answered")
    finally:
        for service in services:
            service.stop()
        broker.stop(kill=True)
