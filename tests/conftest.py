"""Shared fixtures: a real Kafka broker and a real identity provider (started here, never skipped), SMTP sinks,
service processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from schakel.idp import IdentityProvider, OidcClient
from schakel.kafka_broker import Broker, free_port
from schakel.processes import kill_leftovers
from schakel.topics_admin import ensure_topics
from tests.idp_support import TEST_REDIRECT_URI


def start_broker(home: Path) -> Broker:
    """A fresh single-node broker on free ports with every registered topic."""
    broker = Broker(home, port=free_port(), controller_port=free_port())
    broker.start()
    ensure_topics(broker.bootstrap)
    return broker


@pytest.fixture(scope="session", autouse=True)
def no_leftover_processes() -> Iterator[None]:
    """Whatever a failing test left running is stopped when the session ends."""
    yield
    kill_leftovers()


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One broker for the whole session (tests that only produce, or filter by their own ids)."""
    broker = start_broker(tmp_path_factory.mktemp("kafka-session"))
    yield broker
    broker.stop()


@pytest.fixture
def fresh_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A broker of the test's own, for tests whose consumers must see only their records."""
    broker = start_broker(tmp_path_factory.mktemp("kafka"))
    yield broker
    broker.stop(kill=True)


@pytest.fixture
def broker_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], Broker]]:
    """Start extra brokers on demand; all are stopped afterwards."""
    started: list[Broker] = []

    def make() -> Broker:
        broker = start_broker(tmp_path_factory.mktemp("kafka"))
        started.append(broker)
        return broker

    yield make
    for broker in started:
        broker.stop(kill=True)


@dataclass(frozen=True)
class RunningIdp:
    """The session's identity provider, with the werkbak registered on a port chosen before it starts."""

    provider: IdentityProvider
    werkbak_port: int
    werkbak: OidcClient
    tests: OidcClient

    @property
    def issuer(self) -> str:
        return self.provider.issuer


@pytest.fixture(scope="session")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningIdp]:
    """One real OpenID Connect provider (infra/idp) for the whole session, with the demo people."""
    werkbak_port = free_port()
    werkbak = OidcClient(client_id="werkbak", client_secret="werkbak-test-secret-" + "x" * 16,
                         redirect_uris=[f"http://127.0.0.1:{werkbak_port}/auth/callback"],
                         post_logout_redirect_uris=[f"http://127.0.0.1:{werkbak_port}/afgemeld"])
    tests = OidcClient(client_id="schakel-tests", client_secret="tests-secret-" + "y" * 16,
                       redirect_uris=[TEST_REDIRECT_URI], post_logout_redirect_uris=[])
    provider = IdentityProvider(tmp_path_factory.mktemp("idp"), port=free_port(), clients=[werkbak, tests])
    provider.start()
    yield RunningIdp(provider, werkbak_port, werkbak, tests)
    provider.stop()
