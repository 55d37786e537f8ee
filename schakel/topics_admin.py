"""Create every registered topic, idempotently, with kafka-python's admin client."""

from __future__ import annotations

from shared.topic_admin import create_missing_topics
from shared.topics import ALL_TOPICS, TopicSpec


def ensure_topics(bootstrap: str, topics: tuple[TopicSpec, ...] = ALL_TOPICS) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    return create_missing_topics(
        bootstrap, [(t.name, t.partitions, t.config()) for t in topics], client_id="schakel-bootstrap"
    )
