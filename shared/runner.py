"""Run a service's ASGI app with uvicorn on its configured host and port."""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import Any

import uvicorn
import uvloop
from uvicorn.config import STARTUP_FAILURE

from shared import gc_tuning
from shared.settings import Settings


class FreezingServer(uvicorn.Server):
    """uvicorn's server that freezes the objects its start made (shared.gc_tuning) once it has started."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            gc_tuning.freeze_startup_objects()


def serve(app: Any, settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT on uvloop and httptools; uvicorn's own log config is replaced by ours.

    uvloop is also the policy, so the loops faust starts in threads of their own (its consumer thread) are
    uvloop's too, not only the server's. The garbage collector is tuned for a long-running process
    (shared.gc_tuning). What uvicorn.run does for one worker without reload, with FreezingServer.
    """
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    gc_tuning.collect_young_less_often()
    server = FreezingServer(uvicorn.Config(app, host=settings.http_host, port=settings.http_port, log_config=None,
                                           access_log=False, lifespan="on", loop="uvloop", http="httptools"))
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    if not server.started:
        sys.exit(STARTUP_FAILURE)
