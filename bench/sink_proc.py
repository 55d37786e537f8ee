"""An SMTP sink in a process of its own that logs "<arrival epoch> <Message-ID>" per accepted mail and keeps nothing.

`python -m bench.sink_proc --port P --log FILE`; prints "ready" once it listens. The log is line-buffered so the
bench can tail it while the run goes on.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import time
from typing import IO, Any

from aiosmtpd.smtp import SMTP

MESSAGE_ID = re.compile(rb"(?im)^message-id:[ \t]*(\S+)")


def message_id_of(data: bytes) -> str:
    """The Message-ID header of a raw message ('' when it has none); only the header block is searched."""
    head = data.split(b"\r\n\r\n", 1)[0]
    match = MESSAGE_ID.search(head)
    return match.group(1).decode(errors="replace") if match else ""


class LogHandler:
    """aiosmtpd handler: one log line per message, answer 250."""

    def __init__(self, log: IO[str]) -> None:
        self.log = log
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Note the arrival time and Message-ID, accept."""
        data = envelope.original_content or envelope.content or b""
        self.log.write(f"{time.time():.6f} {message_id_of(bytes(data))}\n")
        self.count += 1
        return "250 2.0.0 Message accepted"


def read_arrivals(text: str) -> list[tuple[float, str]]:
    """(epoch, Message-ID) pairs from the sink's log text (a torn last line is skipped)."""
    out = []
    for line in text[:text.rfind("\n") + 1].splitlines():
        at, _, mid = line.partition(" ")
        try:
            out.append((float(at), mid))
        except ValueError:
            continue
    return out


async def serve(host: str, port: int, log_path: str) -> None:
    """Listen until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    with open(log_path, "a", buffering=1, encoding="utf-8") as log:
        handler = LogHandler(log)
        server = await loop.create_server(lambda: SMTP(handler, hostname="sink.bench", ident="bench-sink"),
                                          host=host, port=port)
        print("ready", flush=True)
        await stop.wait()
        server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sink_proc", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port, args.log))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
