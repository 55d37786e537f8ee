"""A whole Schakel system for tests: services as separate processes on free ports, a real SMTP sink."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaConsumer

from schakel.kafka_broker import Broker, free_port
from schakel.mail_sink import ReceivedMail, SmtpSink
from schakel.processes import SERVICES, ServiceProcess
from shared.settings import REPO_ROOT

EXAMPLE_CONFIG = REPO_ROOT / "examples" / "gemeente-voorbeeld.yaml"
TOKENS = {
    "obs-de-linde": "demo-obs-de-linde-token",
    "cbs-het-anker": "demo-cbs-het-anker-token",
    "politie-basisteam": "demo-politie-token",
    "wijkteam-centrum": "demo-wijkteam-centrum-token",
    "wijkteam-oost": "demo-wijkteam-oost-token",
    "leerplicht": "demo-leerplicht-token",
    "gemeente": "demo-gemeente-token",
}


def auth(partner: str) -> dict[str, str]:
    """The Authorization header of a demo partner."""
    return {"Authorization": f"Bearer {TOKENS[partner]}"}


def wait_until(condition: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.2, what: str = "") -> Any:
    """Poll until condition() is truthy and return its value; fail after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")


def read_topic(bootstrap: str, topic: str, *, timeout_ms: int = 3000) -> list[Any]:
    """Every record on a topic from the beginning (a throw-away consumer, no group)."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=timeout_ms)
    try:
        return list(consumer)
    finally:
        consumer.close()


@dataclass
class System:
    """Broker + SMTP sink + the chosen services, each a process with its own state directory."""

    broker: Broker
    root: Path
    config: Path = EXAMPLE_CONFIG
    extra_env: dict[str, str] = field(default_factory=dict)
    sink: SmtpSink = field(init=False)
    services: dict[str, ServiceProcess] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sink = SmtpSink(port=free_port(), directory=self.root / "mail")

    def env(self) -> dict[str, str]:
        """Settings every service of this system shares."""
        public = self.services.get("werkbak") or self.services.get("feedback")
        apis = {f"SCHAKEL_{name.upper()}_URL": self.services[name].base_url
                for name in ("intake", "feedback") if name in self.services}
        return {
            "SCHAKEL_KAFKA_BOOTSTRAP": self.broker.bootstrap,
            "SCHAKEL_STATE_DIR": str(self.root / "state"),
            "SCHAKEL_CONFIG": str(self.config),
            "SCHAKEL_SMTP_PORT": str(self.sink.port),
            "SCHAKEL_PUBLIC_BASE_URL": public.base_url if public else "http://127.0.0.1:8005",
            "SCHAKEL_LOG_FORMAT": "json",
            **apis,
            **self.extra_env,
        }

    def start(self, names: Iterable[str] = SERVICES, *, ports: dict[str, int] | None = None) -> System:
        """Start the sink and the services (on free ports, or those given), and wait until every one is ready."""
        if not self.sink.running:
            self.sink.start()
        names = list(names)
        for name in names:
            self.services[name] = ServiceProcess(name=name, port=(ports or {}).get(name) or free_port(), env={},
                                                 log_path=self.root / "logs" / f"{name}.log")
        for name in names:
            # Each worker a static member of its consumer group, as `schakel up` runs them (shared.kafka).
            self.services[name].env = {**self.env(), "SCHAKEL_WORKER_ID": name}
            self.services[name].start()
        for name in names:
            self.services[name].wait_ready()
        return self

    def add_worker(self, service: str, *, wait: bool = True) -> ServiceProcess:
        """One more worker of a service: same consumer group, its own port and state directory."""
        name = f"{service}-{sum(1 for n in self.services if n.startswith(service)) + 1}"
        worker = ServiceProcess(name=name, port=free_port(), module=f"services.{service}",
                                env={**self.env(), "SCHAKEL_STATE_DIR": str(self.root / f"state-{name}"),
                                     "SCHAKEL_WORKER_ID": name},
                                log_path=self.root / "logs" / f"{name}.log")
        self.services[name] = worker
        worker.start()
        if wait:
            worker.wait_ready(timeout=120)
        return worker

    def restart(self, name: str, *, kill: bool = True) -> None:
        """Stop a service (SIGKILL by default, as a crash) and start it again on the same port."""
        service = self.services[name]
        service.kill() if kill else service.stop()
        service.start()
        service.wait_ready()

    def stop(self) -> None:
        """Stop every service and the sink."""
        for service in self.services.values():
            service.stop()
        self.sink.stop()

    def url(self, name: str, path: str) -> str:
        """An address on one service."""
        return f"{self.services[name].base_url}{path}"

    def submit(self, partner: str, body: dict[str, Any], **headers: str) -> httpx.Response:
        """POST a signal as a partner."""
        return httpx.post(self.url("intake", "/v1/signals"), json=body, headers={**auth(partner), **headers},
                          timeout=30)

    def get_signal(self, partner: str, signal_id: str) -> httpx.Response:
        """GET a signal as a partner."""
        return httpx.get(self.url("feedback", f"/v1/signals/{signal_id}"), headers=auth(partner), timeout=30)

    def post_event(self, partner: str, signal_id: str, body: dict[str, Any]) -> httpx.Response:
        """POST a lifecycle event as a partner."""
        return httpx.post(self.url("feedback", f"/v1/signals/{signal_id}/events"), json=body,
                          headers=auth(partner), timeout=30)

    def wait_for_signal(self, partner: str, signal_id: str, *, timeout: float = 60.0) -> dict[str, Any]:
        """Poll feedback until the signal is known there."""
        def known() -> dict[str, Any] | None:
            response = self.get_signal(partner, signal_id)
            return response.json() if response.status_code == 200 else None

        return wait_until(known, timeout=timeout, what=f"signal {signal_id} in feedback")

    def mails_to(self, address: str) -> list[ReceivedMail]:
        """Messages the sink received for one address."""
        return [m for m in self.sink.messages if address in m.rcpt_tos]

    def wait_for_mail(self, address: str, *, subject_contains: str, timeout: float = 60.0) -> ReceivedMail:
        """Poll the sink until a message to the address with that subject text arrived."""
        def found() -> ReceivedMail | None:
            return next((m for m in self.mails_to(address) if subject_contains in str(m.message["Subject"])), None)

        return wait_until(found, timeout=timeout, what=f"mail to {address} about {subject_contains}")
