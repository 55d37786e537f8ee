"""The garbage collector's tuning for services (shared.gc_tuning) and the server that applies it."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi import FastAPI

from shared import gc_tuning
from shared.runner import FreezingServer


@pytest.fixture
def collector() -> Iterator[None]:
    """The test process's collector as it was before the test, afterwards."""
    threshold = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_the_youngest_generation_is_collected_less_often_and_the_older_ones_as_before(collector: None) -> None:
    gc.set_threshold(700, 11, 12)
    gc_tuning.collect_young_less_often()
    assert gc.get_threshold() == (gc_tuning.YOUNGEST_THRESHOLD, 11, 12)


def test_freezing_moves_the_live_objects_out_of_the_collectors_walks_and_collects_garbage_first(
        collector: None) -> None:
    class Node:
        def __init__(self) -> None:
            self.other: Node | None = None

    kept, garbage = Node(), Node()
    garbage.other = Node()
    garbage.other.other = garbage  # a cycle only the collector can free
    collected = weakref.ref(garbage)
    del garbage
    frozen = gc_tuning.freeze_startup_objects()
    assert frozen == gc.get_freeze_count() > 0
    assert collected() is None
    assert all(o is not kept for o in gc.get_objects())  # frozen: not in any generation the collector walks


async def test_the_server_freezes_once_it_has_started(collector: None) -> None:
    server = FreezingServer(uvicorn.Config(FastAPI(), host="127.0.0.1", port=0, log_config=None, lifespan="on"))
    assert gc.get_freeze_count() == 0
    serving = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                await asyncio.sleep(0.01)
        assert gc.get_freeze_count() > 0
    finally:
        server.should_exit = True
        await serving
