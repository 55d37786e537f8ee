"""`schakel demo` tells the same story every run: its children get identifiers new to the run."""

from __future__ import annotations

import random

import yaml

from schakel.stack import DEMO_FILE, demo_bsn, fresh_children
from services.intake.validation import elfproef


def test_demo_bsns_pass_the_elfproef() -> None:
    rng = random.Random(7)
    assert all(elfproef(demo_bsn(rng)) for _ in range(200))


def subjects(spec: dict) -> list[dict]:  # type: ignore[type-arg]
    return [item["body"].get("subject", {}) for item in spec["signals"]]


def test_each_run_has_new_children_and_one_child_keeps_one_identity() -> None:
    rng = random.Random(11)
    first = subjects(fresh_children(yaml.safe_load(DEMO_FILE.read_text()), run="r1", rng=rng))
    second = subjects(fresh_children(yaml.safe_load(DEMO_FILE.read_text()), run="r2", rng=rng))
    original = subjects(yaml.safe_load(DEMO_FILE.read_text()))

    seed_child = [i for i, s in enumerate(original) if s.get("bsn") == "111222333"]
    assert len(seed_child) >= 2  # the school and the police report the same boy
    assert len({first[i]["bsn"] for i in seed_child}) == 1  # ... and still do within a run
    assert first[seed_child[0]]["bsn"] != second[seed_child[0]]["bsn"]  # a new boy each run
    assert {s.get("family_ref") for s in first} & {s.get("family_ref") for s in second} <= {None}
    assert all(elfproef(s["bsn"]) for s in first if "bsn" in s)
