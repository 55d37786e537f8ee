"""Waiting for a dependency (Kafka) without crashing: retry with capped exponential backoff."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import structlog

log = structlog.get_logger(__name__)
T = TypeVar("T")


async def retry_with_backoff(
    attempt: Callable[[], Awaitable[T]], *, event: str, errors: tuple[type[BaseException], ...] = (Exception,),
    first_delay: float = 0.5, max_delay: float = 10.0,
) -> T:
    """Call `attempt` until it succeeds, logging `event` and doubling the pause (up to `max_delay`)."""
    delay = first_delay
    while True:
        try:
            return await attempt()
        except errors as exc:
            log.warning(event, error=type(exc).__name__, retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)


@contextlib.asynccontextmanager
async def stopped_on_error(client: Any) -> AsyncIterator[Any]:
    """Stop a Kafka client quietly when its start-up steps fail, then let the error through."""
    try:
        yield client
    except BaseException:
        with contextlib.suppress(Exception):
            await client.stop()
        raise
