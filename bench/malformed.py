"""Scenario #4: malformed records among good ones, over HTTP and straight onto signals.inbound."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from kafka import KafkaProducer

from bench.collector import read_all, settled
from bench.load import PARTNER, TOKEN, Submitter, idempotency_key, signal_body
from bench.stack import bench_system
from services.intake.signing import IDEMPOTENCY_HEADER, PARTNER_HEADER, SIGNATURE_HEADER, partner_signing_key, sign
from services.intake.validation import MAX_BODY_BYTES

SIGNING_SECRET = "bench-inbound-signing-secret"
HTTP_BAD = ("bad_json", "schema_violation", "unknown_category", "oversize")
KAFKA_BAD = ("bad_json", "schema_violation", "unknown_category", "oversize", "bad_signature")
PROVENANCE = ("schakel-original-topic", "schakel-original-partition", "schakel-original-offset", "schakel-error-code")


def submitted(body: dict[str, Any]) -> bytes:
    """A partner's CloudEvent for signals.inbound."""
    return json.dumps({"specversion": "1.0", "id": str(uuid.uuid4()), "source": "urn:partner:bench",
                       "type": "nl.schakel.signal.submitted.v1", "time": "2026-03-02T08:00:00Z",
                       "datacontenttype": "application/json", "data": body}).encode()


def bad_http(base_url: str, kind: str, run: str, seq: int) -> int:
    """POST one malformed request; its status code."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json",
               "Idempotency-Key": f"bad-{run}-{seq}"}
    body = signal_body(run, seq)
    if kind == "bad_json":
        content = b'{"category": "THUIS", oops'
    elif kind == "schema_violation":
        content = json.dumps({**body, "urgency": "U9", "subject": "not an object"}).encode()
    elif kind == "unknown_category":
        content = json.dumps({**body, "category": "XYZ"}).encode()
    else:
        content = json.dumps({**body, "summary": "x" * (MAX_BODY_BYTES + 10)}).encode()
    return httpx.post(f"{base_url}/v1/signals", content=content, headers=headers, timeout=30).status_code


def inbound_record(kind: str, run: str, seq: int) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The value and headers of one inbound record, good ('good') or one kind of bad."""
    key = partner_signing_key(master_secret=SIGNING_SECRET, partner_id=PARTNER)
    body = signal_body(run, seq)
    if kind == "good":
        value = submitted(body)
    elif kind == "bad_json":
        value = b'{"specversion": "1.0", oops'
    elif kind == "schema_violation":
        value = json.dumps({"specversion": "1.0", "data": body}).encode()  # no id, type, source
    elif kind == "unknown_category":
        value = submitted({**body, "category": "XYZ"})
    elif kind == "oversize":
        value = submitted({**body, "summary": "x" * (MAX_BODY_BYTES + 10)})
    else:
        value = submitted(body)
    signature = "v1=" + "0" * 64 if kind == "bad_signature" else sign(value, signing_key=key)
    headers = [(PARTNER_HEADER, PARTNER.encode()), (SIGNATURE_HEADER, signature.encode()),
               (IDEMPOTENCY_HEADER, idempotency_key(run, seq).encode())]
    return value, headers


def resolve_signal_ids(bootstrap: str, run: str, seqs: list[int]) -> dict[int, str]:
    """Signal ids of inbound test signals, found on signals.received by their reporter's address."""
    by_reporter: dict[str, str] = {}
    for record in read_all(bootstrap, "signals.received"):
        data = json.loads(record.value)["data"]
        by_reporter.setdefault(data["reporter"]["email"], data["signal_id"])
    from bench.load import reporter_email

    return {seq: by_reporter[reporter_email(run, seq)] for seq in seqs if reporter_email(run, seq) in by_reporter}


def run_malformed(*, n: int, bad_share: float, result: Any, checks: Any) -> Any:
    """Send n good and n·bad_share bad records, half over HTTP and half over Kafka; count the outcome."""
    run = f"m{int(time.time()) % 100000}"
    bad_total = int(n * bad_share)
    plan: list[tuple[str, str, int]] = []  # (channel, kind, seq)
    step = max(1, n // max(bad_total, 1))
    bad_index = 0
    for seq in range(n):
        plan.append(("http" if seq % 2 == 0 else "kafka", "good", seq))
        if seq % step == step - 1 and bad_index < bad_total:
            channel = "http" if bad_index % 2 == 0 else "kafka"
            kinds = HTTP_BAD if channel == "http" else KAFKA_BAD
            plan.append((channel, kinds[(bad_index // 2) % len(kinds)], n + bad_index))
            bad_index += 1
    with bench_system(extra_env={"SCHAKEL_INBOUND_SIGNING_SECRET": SIGNING_SECRET}) as bench:
        intake = bench.system.services["intake"]
        pid = intake.proc.pid if intake.proc else None
        submitter = Submitter(intake.base_url, run=run, clients=8)
        bad_statuses: Counter[str] = Counter()
        producer = KafkaProducer(bootstrap_servers=bench.broker.bootstrap, acks="all", linger_ms=5)
        kafka_good: list[int] = []
        kafka_bad: Counter[str] = Counter()

        def http_item(item: tuple[str, str, int]) -> None:
            _, kind, seq = item
            if kind == "good":
                submitter.submit_one(seq)
            else:
                bad_statuses[f"{kind}:{bad_http(intake.base_url, kind, run, seq)}"] += 1

        with ThreadPoolExecutor(max_workers=8) as pool:
            futures = [pool.submit(http_item, item) for item in plan if item[0] == "http"]
            for _, kind, seq in (item for item in plan if item[0] == "kafka"):
                value, headers = inbound_record(kind, run, seq)
                producer.send("signals.inbound", key=PARTNER.encode(), value=value, headers=headers)
                if kind == "good":
                    kafka_good.append(seq)
                else:
                    kafka_bad[kind] += 1
            producer.flush(timeout=60)
            for future in futures:
                future.result()
        producer.close()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            ids = {**submitter.result.signal_ids, **resolve_signal_ids(bench.broker.bootstrap, run, kafka_good)}
            if len(ids) >= len(submitter.result.signal_ids) + len(kafka_good):
                break
            time.sleep(2)
        collected = settled(bench.broker.bootstrap, bench.system.sink, run=run, signal_ids=ids, timeout_s=300,
                            arrival=bench.arrival)
        letters = read_all(bench.broker.bootstrap, "signals.inbound.dlq")
        with_provenance = sum(1 for r in letters if set(PROVENANCE) <= {k for k, _ in r.headers or ()})
        codes = Counter(dict(r.headers).get("schakel-error-code", b"?").decode() for r in letters)
        http_bad = sum(bad_statuses.values())
        http_4xx = sum(v for k, v in bad_statuses.items() if k.split(":")[1].startswith("4"))
        good_sent = sum(1 for c, k, _ in plan if k == "good")
        result.figures.update({
            "good sent": good_sent, "bad sent": len(plan) - good_sent,
            "bad over HTTP (kind:status)": dict(bad_statuses), "bad onto signals.inbound": dict(kafka_bad),
            "HTTP 4xx": http_4xx, "dead letters": len(letters), "dead-letter codes": dict(codes),
            "dead letters with topic/partition/offset/error": with_provenance,
            "good accepted (202 or on signals.received)": len(ids),
            "intake restarts": 0 if intake.alive() and intake.proc and intake.proc.pid == pid else 1,
            "tracebacks (intake)": intake.log_path.read_text(errors="replace").count("Traceback"),
        })
        checks(result, collected)
        result.checks["4xx + dead letters = bad exactly"] = http_4xx + len(letters) == len(plan) - good_sent
        result.checks["0 good lost"] = len(ids) == good_sent and collected.lost == 0
        result.checks["every dead letter carries provenance"] = with_provenance == len(letters)
        result.checks["0 intake restarts"] = result.figures["intake restarts"] == 0
        del http_bad
    return result
