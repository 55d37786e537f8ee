"""Topic administration: create what is missing, faust's own topics (changelogs, repartition topics) included."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from typing import Any

import faust


def faust_internal_topics(app: faust.App) -> list[tuple[str, int, dict[str, str]]]:
    """faust's own topics (table changelogs, internal repartition topics): name, partitions, config."""
    default = app.conf.topic_partitions
    topics = [
        (f"{app.conf.id}-{table.name}-changelog", table.partitions or default, {"cleanup.policy": "compact"})
        for table in app.tables.values()
    ]
    for agent in app.agents.values():
        channel = agent.channel
        if getattr(channel, "internal", False):
            for name in channel.topics:
                topics.append((name, channel.partitions or default, {}))
    return topics


def create_missing_topics(
    bootstrap: str, topics: Iterable[tuple[str, int, dict[str, str]]], *, client_id: str
) -> list[str]:
    """Create the topics (name, partitions, config) that do not exist yet; return the names created.

    Idempotent: a topic another process created meanwhile counts as done.
    """
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id=client_id)
    try:
        existing = set(admin.list_topics())
        missing = [t for t in topics if t[0] not in existing]
        for name, partitions, config in missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([NewTopic(name, partitions, 1, topic_configs=config)])
        if missing:
            _wait_for_partitions(admin, {name: partitions for name, partitions, _ in missing})
        return [name for name, _, _ in missing]
    finally:
        admin.close()


def _wait_for_partitions(admin: Any, expected: dict[str, int], timeout_s: float = 30.0) -> None:
    """Wait until the broker's metadata shows every new topic with all its partitions.

    A broker under load can answer CreateTopics before its metadata cache serves the topic; a client that asks
    for metadata in that moment (faust, starting right after this) caches "0 partitions" for minutes, and the
    first table write then stops the worker with PartitionsMismatch (seen on a loaded 2-core machine).
    """
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            described = {t["name"]: len(t.get("partitions") or []) for t in admin.describe_topics(list(expected))
                         if not t.get("error_code")}
        except KafkaError:
            described = {}  # not known yet (UnknownTopicOrPartition and the like): ask again
        short = {name: count for name, count in expected.items() if described.get(name, 0) < count}
        if not short:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics without all their partitions after {timeout_s}s: {sorted(short)}")
        time.sleep(0.2)


def ensure_faust_topics(app: faust.App, bootstrap: str) -> list[str]:
    """Create faust's topics before faust starts, so their metadata is complete from the first fetch.

    Without this faust creates a changelog topic while starting and its consumer may still see it with
    0 partitions at the first table write, which raises PartitionsMismatch and stops the worker.
    """
    return create_missing_topics(bootstrap, faust_internal_topics(app), client_id=f"{app.conf.id}-bootstrap")
