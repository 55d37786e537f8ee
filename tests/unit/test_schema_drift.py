"""The published event schemas and AsyncAPI document match the models."""

from __future__ import annotations

from pathlib import Path

import yaml

from schakel.schema import TOPIC_EVENTS, render_all
from shared.events import EVENT_MODELS
from shared.settings import REPO_ROOT
from shared.topics import BY_NAME

SCHEMA_DIR = REPO_ROOT / "docs" / "schema"


def test_committed_schemas_match_the_models() -> None:
    expected = render_all()
    committed = {str(p.relative_to(SCHEMA_DIR)): p.read_text(encoding="utf-8")
                 for p in SCHEMA_DIR.rglob("*") if p.is_file()}
    stale = sorted(set(committed) - set(expected))
    missing = sorted(set(expected) - set(committed))
    changed = sorted(name for name in expected if name in committed and committed[name] != expected[name])
    assert not (stale or missing or changed), (
        f"docs/schema drifted from the models (run `schakel schema`): stale={stale} missing={missing} "
        f"changed={changed}"
    )


def test_every_event_type_travels_on_a_registered_topic() -> None:
    carried = {event for events in TOPIC_EVENTS.values() for event in events}
    assert set(TOPIC_EVENTS) <= set(BY_NAME)
    assert set(EVENT_MODELS) <= carried


def test_asyncapi_document_names_every_topic(tmp_path: Path) -> None:
    document = yaml.safe_load(render_all()["asyncapi.yaml"])
    assert document["asyncapi"] == "3.0.0"
    assert {c["address"] for c in document["channels"].values()} == set(BY_NAME)
