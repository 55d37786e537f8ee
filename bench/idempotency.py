"""Scenario #8: one Idempotency-Key, retried 5× in a row, 10× concurrently, after an intake restart; 409 otherwise."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from bench.collector import settled
from bench.load import TOKEN, idempotency_key, signal_body
from bench.stack import bench_system


def run_idempotency(result: Any) -> Any:
    """Four keys, one per case; each must give exactly one signal, record, assignment and e-mail pair."""
    run = f"i{int(time.time()) % 100000}"
    with bench_system() as bench:
        intake = bench.system.services["intake"]

        def post(seq: int, body: dict[str, Any] | None = None) -> httpx.Response:
            headers = {"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": idempotency_key(run, seq)}
            return httpx.post(f"{intake.base_url}/v1/signals", json=body or signal_body(run, seq), timeout=60,
                              headers=headers)

        statuses: dict[str, list[int]] = {}
        sids: dict[str, set[str]] = {}
        sequential = [post(0) for _ in range(5)]
        with ThreadPoolExecutor(max_workers=10) as pool:
            concurrent = list(pool.map(lambda _: post(1), range(10)))
        before_restart = post(2)
        bench.take_down("intake")
        bench.bring_up("intake")
        after_restart = [post(2) for _ in range(3)]
        first = post(3)
        other_body = post(3, {**signal_body(run, 3), "category": "BASIS"})
        cases = {"5× in a row": sequential, "10× concurrently": concurrent,
                 "again after intake restart (kill -9)": [before_restart, *after_restart],
                 "same key, other body": [first, other_body]}
        for name, responses in cases.items():
            statuses[name] = [r.status_code for r in responses]
            sids[name] = {r.json()["signal_id"] for r in responses if r.status_code == 202}
        signal_ids = {seq: next(iter(sids[name])) for seq, name in enumerate(cases) if len(sids[name]) == 1}
        collected = settled(bench.broker.bootstrap, bench.system.sink, run=run, signal_ids=signal_ids,
                            timeout_s=120, arrival=bench.arrival)
        rows = []
        for seq, name in enumerate(cases):
            sid = signal_ids.get(seq)
            rows.append({"case": name, "answers": "/".join(map(str, statuses[name])), "signal ids": len(sids[name]),
                         "received": _records(collected, "received", sid),
                         "assigned": _records(collected, "assigned", sid),
                         "e-mails": _mails(collected, sid)})
        result.figures["cases"] = rows
        result.hops = collected.rows()
        for row in rows:
            result.checks[f"{row['case']}: one signal, record, assignment, 2 e-mails"] = (
                row["signal ids"] == 1 and row["received"] == 1 and row["assigned"] == 1 and row["e-mails"] == 2)
        result.checks["409 for the other body"] = statuses["same key, other body"] == [202, 409]
    return result


def _records(collected: Any, hop: str, sid: str | None) -> int:
    return collected.hops[hop].per_key.get(sid, 0) if sid else 0


def _mails(collected: Any, sid: str | None) -> int:
    if not sid:
        return 0
    email = collected.hops["email"]
    return sum(n for mid, n in email.per_key.items() if email.owner.get(mid) == sid)
