"""Run a service's ASGI app with uvicorn on its configured host and port."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
import uvloop

from shared.settings import Settings


def serve(app: Any, settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT on uvloop and httptools; uvicorn's own log config is replaced by ours.

    uvloop is also the policy, so the loops faust starts in threads of their own (its consumer thread) are
    uvloop's too, not only the server's.
    """
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    uvicorn.run(app, host=settings.http_host, port=settings.http_port, log_config=None, access_log=False,
                lifespan="on", loop="uvloop", http="httptools")
