"""Run a service's ASGI app with uvicorn on its configured host and port."""

from __future__ import annotations

from typing import Any

import uvicorn

from shared.settings import Settings


def serve(app: Any, settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT on uvloop and httptools; uvicorn's own log config is replaced by ours."""
    uvicorn.run(app, host=settings.http_host, port=settings.http_port, log_config=None, access_log=False,
                lifespan="on", loop="uvloop", http="httptools")
