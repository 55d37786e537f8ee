"""Create every registered topic, idempotently, with kafka-python's admin client."""

from __future__ import annotations

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from shared.topics import ALL_TOPICS, TopicSpec


def ensure_topics(bootstrap: str, topics: tuple[TopicSpec, ...] = ALL_TOPICS) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="schakel-bootstrap")
    try:
        existing = set(admin.list_topics())
        missing = [t for t in topics if t.name not in existing]
        if missing:
            try:
                admin.create_topics(
                    [NewTopic(t.name, t.partitions, 1, topic_configs=t.config()) for t in missing]
                )
            except TopicAlreadyExistsError:
                pass  # another process won the race; that is the idempotent outcome
        return [t.name for t in missing]
    finally:
        admin.close()
