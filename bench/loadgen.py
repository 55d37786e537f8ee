"""HTTP load generator in a process of its own: open loop at a fixed rate, or closed loop with N clients.

`python -m bench.loadgen --port P --run R --out FILE (--rate 100 --duration 20 | --clients 32 --count 3000)`.
Requests are prebuilt bytes over plain asyncio streams with keep-alive (cheap on CPU). Protocol with the bench:
prints "ready" when the requests are built, starts on a line "go" on stdin, prints "done" when the results file
is written, and exits when stdin closes. Open loop: request i is due at t0 + i/rate whether or not earlier ones
were answered (a new connection is opened when none is idle, up to --max-connections); its latency counts from
that due time, so a queue anywhere (here included) shows up in the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field

from bench.load import TOKEN, idempotency_key, signal_body
from bench.stats import schedule


def build_request(port: int, run: str, seq: int, path: str = "/v1/signals") -> bytes:
    """The raw HTTP/1.1 POST of one test signal."""
    body = json.dumps(signal_body(run, seq), separators=(",", ":")).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Idempotency-Key: {idempotency_key(run, seq)}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def parse_head(head: bytes) -> tuple[int, int, bool]:
    """(status, Content-Length, server closes) from a response's status line and headers."""
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, close = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
    return status, length, close


@dataclass
class Results:
    """Per request: due time, answer time (epoch s), status, and the signal id of a 202."""

    due: list[float] = field(default_factory=list)
    done: list[float] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    signal_id: list[str] = field(default_factory=list)


class Pool:
    """Keep-alive connections to one port: reuse an idle one, open another up to a cap, else wait.

    uvicorn closes a connection idle for 5 s (timeout_keep_alive), so older idle ones are dropped, and a
    request on a reused connection that the server closed meanwhile is sent once more on a new one (the same
    Idempotency-Key, so intake counts it once).
    """

    IDLE_S = 4.0

    def __init__(self, port: int, cap: int) -> None:
        self.port = port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self.slots = asyncio.Semaphore(cap)
        self.opened = 0
        self.resent = 0

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
        now = time.monotonic()
        while self.idle:
            reader, writer, since = self.idle.pop()
            if now - since < self.IDLE_S:
                return reader, writer, True
            writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.opened += 1
        return reader, writer, False

    async def request(self, data: bytes) -> tuple[int, bytes]:
        """Send one request and read its answer."""
        async with self.slots:
            for _ in range(2):
                reader, writer, reused = await self._connection()
                try:
                    writer.write(data)
                    head = await reader.readuntil(b"\r\n\r\n")
                    status, length, close = parse_head(head)
                    body = await reader.readexactly(length) if length else b""
                except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError):
                    writer.close()
                    if not reused:
                        raise
                    self.resent += 1
                    continue
                except BaseException:
                    writer.close()
                    raise
                if close:
                    writer.close()
                else:
                    self.idle.append((reader, writer, time.monotonic()))
                return status, body
            raise ConnectionResetError("closed twice")


async def one(pool: Pool, data: bytes, due: float, results: Results, i: int) -> None:
    """One request; its outcome goes into slot i."""
    try:
        status, body = await pool.request(data)
        results.status[i] = str(status)
        if status == 202:
            results.signal_id[i] = json.loads(body)["signal_id"]
    except (OSError, asyncio.IncompleteReadError, ValueError, KeyError) as exc:
        results.status[i] = type(exc).__name__
    results.done[i] = time.time()
    results.due[i] = due


async def open_loop(pool: Pool, requests: list[bytes], rate: float, results: Results) -> None:
    """Fire request i at t0 + i/rate (epoch), never waiting for answers."""
    offsets = schedule(rate, len(requests) / rate)
    mono0, epoch0 = time.monotonic(), time.time()
    tasks = []
    for i, offset in enumerate(offsets):
        wait = mono0 + offset - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(one(pool, requests[i], epoch0 + offset, results, i)))
    await asyncio.gather(*tasks)


async def closed_loop(pool: Pool, requests: list[bytes], clients: int, results: Results) -> None:
    """`clients` workers, each sending its next request as soon as the previous one was answered."""
    order = iter(range(len(requests)))

    async def worker() -> None:
        for i in order:
            await one(pool, requests[i], time.time(), results, i)

    await asyncio.gather(*(worker() for _ in range(clients)))


async def main_async(args: argparse.Namespace) -> None:
    count = args.count if args.clients else round(args.rate * args.duration)
    requests = [build_request(args.port, args.run, seq, args.path) for seq in range(count)]
    results = Results([0.0] * count, [0.0] * count, [""] * count, [""] * count)
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    pool = Pool(args.port, args.max_connections if not args.clients else args.clients)
    began = time.time()
    if args.clients:
        await closed_loop(pool, requests, args.clients, results)
    else:
        await open_loop(pool, requests, args.rate, results)
    ended = time.time()
    with open(args.out, "w", encoding="utf-8") as out:
        json.dump({"began": began, "ended": ended, "connections": pool.opened, "resent": pool.resent,
                   "due": results.due, "done": results.done, "status": results.status,
                   "signal_id": results.signal_id}, out)
    print("done", flush=True)
    await loop.run_in_executor(None, sys.stdin.read)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/v1/signals")
    parser.add_argument("--run", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=0, help="closed loop with this many clients")
    parser.add_argument("--count", type=int, default=1000, help="closed loop: requests in all")
    parser.add_argument("--max-connections", type=int, default=256)
    asyncio.run(main_async(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
