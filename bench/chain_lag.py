"""Consumer-group lag (end offset minus committed offset), to tell whether a backlog is left."""

from __future__ import annotations

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition


def lag_of(committed: dict[TopicPartition, int], ends: dict[TopicPartition, int]) -> int:
    """Records between each partition's committed offset (0 if none) and its end, summed."""
    return sum(max(0, end - committed.get(tp, 0)) for tp, end in ends.items())


def group_lag(bootstrap: str, group: str, topic: str) -> int:
    """How many records of `topic` the group has not committed yet."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    try:
        offsets = admin.list_group_offsets({group: None}).get(group, {})
        committed = {tp: meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset >= 0}
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or set()]
        return lag_of(committed, dict(consumer.end_offsets(tps)))
    finally:
        consumer.close()
        admin.close()
