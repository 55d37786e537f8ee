"""The raw peer of intake: a FastAPI endpoint that only produces the request body and answers 202.

`python -m bench.bare_intake` with SCHAKEL_KAFKA_BOOTSTRAP, SCHAKEL_HTTP_PORT and BENCH_TOPIC set. Served by
shared.runner.serve, i.e. under the same uvicorn settings as intake; the producer is configured like intake's
(idempotent, acks=all) and each request waits for the broker's ack, as intake does.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaProducer
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from shared.runner import serve
from shared.settings import Settings


def create_app(settings: Settings, topic: str) -> FastAPI:
    """POST /v1/signals → one produce, awaited → 202 {"signal_id": …}; GET /readyz."""
    state: dict[str, AIOKafkaProducer] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, enable_idempotence=True,
                                    acks="all", client_id="bench-bare-intake")
        await producer.start()
        state["producer"] = producer
        try:
            yield
        finally:
            await producer.stop()

    app = FastAPI(lifespan=lifespan)

    @app.post("/v1/signals", status_code=202)
    async def submit(request: Request) -> JSONResponse:
        signal_id = str(uuid.uuid4())
        await state["producer"].send_and_wait(topic, await request.body(), key=signal_id.encode())
        return JSONResponse({"signal_id": signal_id}, status_code=202)

    @app.get("/readyz")
    async def ready() -> dict[str, bool]:
        return {"ready": "producer" in state}

    return app


def main() -> int:
    settings = Settings()
    serve(create_app(settings, os.environ.get("BENCH_TOPIC", "bench.bare")), settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
