"""Test signals with a sequence number each, and a submitter that sends them with N concurrent clients."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

PARTNER = "obs-de-linde"
TOKEN = "demo-obs-de-linde-token"
HANDLER = "intake.centrum@wijkteam.example"


def reporter_email(run: str, seq: int) -> str:
    """The reporter's address of one test signal: it traces the signal into its receipt e-mail."""
    return f"melder-{run}-{seq}@delinde.example"


def signal_body(run: str, seq: int) -> dict[str, Any]:
    """A school signal about home (THUIS, postcode 3511) that routing sends to wijkteam Centrum: two e-mails."""
    return {
        "category": "THUIS", "urgency": "U2",
        "subject": {"school_brin": "12AB", "pupil_ref": f"B-{run}-{seq}"}, "postcode_area": "3511",
        "summary": "Komt vaak zonder ontbijt.", "reporter": {"name": "Juf", "email": reporter_email(run, seq)},
        "legal_basis": "meldrecht",
    }


def idempotency_key(run: str, seq: int) -> str:
    """The Idempotency-Key of one test signal (retries reuse it)."""
    return f"bench-{run}-{seq}"


@dataclass
class Submitted:
    """What the submitter saw: per sequence number the signal id, and the HTTP answers it got."""

    signal_ids: dict[int, str] = field(default_factory=dict)
    accepted_at: dict[int, float] = field(default_factory=dict)  # wall clock of the 202
    statuses: Counter[str] = field(default_factory=Counter)
    failed: list[int] = field(default_factory=list)  # never got a 202 within the retry budget
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def accepted(self) -> int:
        return len(self.signal_ids)


class Submitter:
    """POSTs test signals to intake with `clients` threads; retries 503/429/connection errors with the same key."""

    def __init__(self, base_url: str, *, run: str, clients: int = 8, retry_budget_s: float = 300.0) -> None:
        self.base_url = base_url
        self.run = run
        self.clients = clients
        self.retry_budget_s = retry_budget_s
        self.give_up_at: float | None = None  # monotonic: after this, no request is retried (a run must end)
        self.result = Submitted()
        self.sent = 0  # sequence numbers handed out so far (progress)
        self._local = threading.local()

    def _client(self) -> httpx.Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = httpx.Client(timeout=30, headers={"Authorization": f"Bearer {TOKEN}"})
            self._local.client = client
        return client

    def submit_one(self, seq: int) -> None:
        """Send one signal until intake answers 202 (or the retry budget is spent)."""
        deadline = time.monotonic() + self.retry_budget_s
        if self.give_up_at is not None:
            deadline = min(deadline, self.give_up_at)
        delay = 0.2
        while True:
            try:
                response = self._client().post(f"{self.base_url}/v1/signals", json=signal_body(self.run, seq),
                                               headers={"Idempotency-Key": idempotency_key(self.run, seq)})
                status = str(response.status_code)
            except httpx.HTTPError as exc:
                response, status = None, type(exc).__name__
            with self.result.lock:
                self.result.statuses[status] += 1
                if response is not None and response.status_code == 202:
                    self.result.signal_ids[seq] = response.json()["signal_id"]
                    self.result.accepted_at[seq] = time.time()
                    return
            if response is not None and response.status_code < 500 and response.status_code != 429:
                with self.result.lock:
                    self.result.failed.append(seq)
                return
            if time.monotonic() > deadline:
                with self.result.lock:
                    self.result.failed.append(seq)
                return
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def run_all(self, count: int, *, start: int = 0, on_progress: Callable[[int], None] | None = None,
                rate: float | None = None) -> Submitted:
        """Submit sequence numbers start..start+count-1; call on_progress(done) after each; optionally paced."""
        done = 0
        lock = threading.Lock()
        began = time.monotonic()

        def one(seq: int) -> None:
            nonlocal done
            if rate:
                wait = began + (seq - start) / rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            self.submit_one(seq)
            with lock:
                done += 1
                current = done
            if on_progress is not None:
                on_progress(current)

        with ThreadPoolExecutor(max_workers=self.clients) as pool:
            list(pool.map(one, range(start, start + count)))
        return self.result
