"""`schakel up --workers`: how many workers of each stream service, their ports and state directories."""

from __future__ import annotations

from pathlib import Path

import pytest

from schakel.workers import format_workers, parse_workers, plan_workers
from shared.kafka import group_instance_id


def test_one_number_scales_every_stream_service_and_names_scale_one_by_one() -> None:
    assert parse_workers(None) == {"routing": 1, "feedback": 1, "notify": 1}
    assert parse_workers("2") == {"routing": 2, "feedback": 2, "notify": 2}
    assert parse_workers("routing=3,notify=2") == {"routing": 3, "feedback": 1, "notify": 2}
    assert parse_workers(format_workers({"routing": 3, "feedback": 1, "notify": 2})) == parse_workers(
        "routing=3,notify=2")


@pytest.mark.parametrize("text", ["0", "5", "intake=2", "routing=two", "routing"])
def test_counts_beyond_the_partitions_or_unknown_services_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="--workers"):
        parse_workers(text)


def test_extra_workers_get_ports_ten_apart_and_state_of_their_own() -> None:
    workers = plan_workers(parse_workers("routing=2"))
    assert [(w.name, w.port) for w in workers] == [
        ("intake", 8001), ("routing", 8002), ("routing-2", 8012), ("feedback", 8003), ("notify", 8004)]
    root = Path("/state")
    assert workers[1].state_dir(root) == root
    assert workers[2].state_dir(root) == root / "workers" / "routing-2"


def test_a_worker_id_makes_a_static_group_member_and_none_a_dynamic_one() -> None:
    assert group_instance_id("routing", None) is None
    assert group_instance_id("routing", "routing-2") == "schakel-routing-routing-2"
    assert group_instance_id("notify", "hostname").startswith("schakel-notify-")
