"""The raw peers of the chain, on the same broker: Kafka passthrough, a bare produce-only endpoint, plain SMTP."""

from __future__ import annotations

import asyncio
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.collector import read_all
from bench.driver import Load
from bench.stats import rate_between
from schakel.kafka_broker import free_port
from schakel.processes import ServiceProcess
from shared.topic_admin import create_missing_topics

RECORD = b'{"specversion":"1.0","type":"bench"' + b"," + b'"pad":"' + b"x" * 950 + b'"}'  # ≈ 1 KB, as a signal


async def _fill(bootstrap: str, topic: str, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=1 << 20)
    await producer.start()
    try:
        futures = [await producer.send(topic, RECORD, key=str(i).encode()) for i in range(count)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _passthrough(bootstrap: str, source: str, target: str, count: int, *, per_record: bool) -> float:
    """Consume → produce → commit per batch until `count` records went through; wall seconds from first fetch."""
    consumer = AIOKafkaConsumer(source, bootstrap_servers=bootstrap, group_id=f"bench-{source}",
                                enable_auto_commit=False, auto_offset_reset="earliest")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await consumer.start()
    await producer.start()
    done, began = 0, 0.0
    try:
        while done < count:
            batches = await consumer.getmany(timeout_ms=500, max_records=500)
            if batches and not began:
                began = time.perf_counter()
            for records in batches.values():
                if per_record:
                    for r in records:
                        await producer.send_and_wait(target, r.value, key=r.key)
                else:
                    futures = [await producer.send(target, r.value, key=r.key) for r in records]
                    await asyncio.gather(*futures)
                done += len(records)
            if batches:
                await consumer.commit()
        return time.perf_counter() - began
    finally:
        await consumer.stop()
        await producer.stop()


def kafka_passthrough(bootstrap: str, *, count: int, per_record: bool) -> dict[str, Any]:
    """Pre-fill a topic with `count` records of 1 KB, pass them to another; records/s by the output's CreateTime."""
    tag = "sendwait" if per_record else "batched"
    source, target = f"bench.raw.{tag}.in", f"bench.raw.{tag}.out"
    create_missing_topics(bootstrap, [(source, 4, {}), (target, 4, {})], client_id="bench-peers")
    asyncio.run(_fill(bootstrap, source, count))
    wall = asyncio.run(_passthrough(bootstrap, source, target, count, per_record=per_record))
    stamps = [r.timestamp / 1000 for r in read_all(bootstrap, target)]
    rate = rate_between(stamps)
    return {"peer": f"aiokafka passthrough, {'send_and_wait per record' if per_record else 'batched'}",
            "records": len(stamps), "records_per_s": round(rate) if rate else None,
            "wall_records_per_s": round(count / wall) if wall else None}


def bare_endpoint(bootstrap: str, root: Path, *, clients: int, count: int) -> dict[str, Any]:
    """The produce-only FastAPI endpoint under intake's uvicorn settings, closed loop; requests/s and CPU."""
    from bench import procstat

    create_missing_topics(bootstrap, [("bench.bare", 4, {})], client_id="bench-peers")
    service = ServiceProcess(name="bare-intake", port=free_port(), module="bench.bare_intake",
                             env={"SCHAKEL_KAFKA_BOOTSTRAP": bootstrap, "BENCH_TOPIC": "bench.bare",
                                  "SCHAKEL_LOG_FORMAT": "json"},
                             log_path=root / "logs" / "bare-intake.log")
    service.start()
    try:
        service.wait_ready(timeout=60)
        load = Load(root, "bare", "--port", str(service.port), "--run", "bare", "--clients", str(clients),
                    "--count", str(count))
        pid = service.proc.pid if service.proc else None
        before = procstat.cpu_seconds(pid)
        load.go()
        result = load.wait()
        after = procstat.cpu_seconds(pid)
        ok = sum(1 for s in result["status"] if s == "202")
        took = result["ended"] - result["began"]
        server_cpu = None if before is None or after is None else after - before
        return {"peer": f"bare FastAPI produce-only endpoint, {clients} clients", "requests": count, "202": ok,
                "requests_per_s": round(ok / took, 1) if took else None,
                "server_cpu_ms_per_request": round(1000 * server_cpu / ok, 2) if server_cpu and ok else None,
                "loadgen_cpu_ms_per_request": round(1000 * load.cpu_s / ok, 2) if load.cpu_s and ok else None,
                "server_rss_mib": procstat.rss_mib(pid)}
    finally:
        service.stop(timeout=15)


def sample_mail(i: int) -> bytes:
    """A message of about the size of notify's (≈ 3 KB, plain text and HTML), as bytes."""
    message = EmailMessage()
    message["From"] = "Schakel <noreply@schakel.example>"
    message["To"] = "intake.centrum@wijkteam.example"
    message["Subject"] = f"Nieuw signaal SK-2026-{i:08d}"
    message["Message-ID"] = f"<peer-{i}@schakel.example>"
    message.set_content("Er is een nieuw signaal voor u.\n" * 40)
    message.add_alternative("<p>Er is een nieuw signaal voor u.</p>\n" * 30, subtype="html")
    return message.as_bytes()


async def _smtp(port: int, mails: list[bytes], connections: int) -> float:
    async def one_connection(part: list[bytes]) -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
        await client.connect()
        try:
            for data in part:
                await client.sendmail("noreply@schakel.example", ["intake.centrum@wijkteam.example"], data)
        finally:
            await client.quit()

    began = time.perf_counter()
    await asyncio.gather(*(one_connection(mails[k::connections]) for k in range(connections)))
    return time.perf_counter() - began


def smtp_peer_name(connections: int) -> str:
    """The name the SMTP peer of `connections` connections has in the figures."""
    return f"aiosmtplib → sink, {connections} connection(s)"


def smtp_straight(port: int, *, count: int, connections: int) -> dict[str, Any]:
    """aiosmtplib straight to the sink process over `connections` connections; mails/s (prebuilt bytes)."""
    mails = [sample_mail(i) for i in range(count)]
    took = asyncio.run(_smtp(port, mails, connections))
    return {"peer": smtp_peer_name(connections), "mails": count,
            "mails_per_s": round(count / took, 1), "bytes_per_mail": len(mails[0])}
