"""The notify hop alone: with notify stopped, a backlog of assignments waits; start notify by itself, time its mails.

It follows the routing hop (bench.routing_hop), whose assignments notify has not read yet: each is two
e-mails, the receipt to the reporter and the notice to the body's handler. Notify drains them through its SMTP
pool into the sink. The figures: its mails/s (from the CreateTimes of its notifications.sent records), its
CPU per mail after it was ready, and the mean time a mail's 'sent' mark took to reach the broker (ADR 0022:
what a connection's next mail waits for). Beside the raw aiosmtplib peer of the same run, this is notify's
ceiling with nothing else loading the machine.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import httpx

from bench import procstat
from bench.chain_metrics import loop_figures
from bench.routing_hop import end_offsets, timestamps_after
from bench.stats import rate_between
from schakel.processes import ServiceProcess
from shared.topics import NOTIFICATIONS_SENT

MARK = "notify_sent_mark_duration_seconds"
MAILS_PER_ASSIGNMENT = 2  # the receipt to the reporter, the notice to the body's handler


def notify_hop(bootstrap: str, notify: ServiceProcess, *, assignments: int, timeout_s: float = 300) -> dict[str, Any]:
    """Start the stopped notify alone on its backlog of assignments; its mails/s, CPU per mail, mark time."""
    mails = MAILS_PER_ASSIGNMENT * assignments
    start = end_offsets(bootstrap, NOTIFICATIONS_SENT.name)
    started = time.time()
    notify.start()
    notify.wait_ready()
    pid = notify.proc.pid if notify.proc else None
    # Start-up (imports, faust, recovery) is not counted; the few mails sent in the last readiness poll are.
    cpu_at_ready = procstat.cpu_seconds(pid)
    stamps, read_at = timestamps_after(bootstrap, NOTIFICATIONS_SENT.name, start, mails, timeout_s)
    cpu = procstat.cpu_seconds(pid)
    rate = rate_between(stamps)
    metrics: dict[str, Any] = {}
    with contextlib.suppress(httpx.HTTPError):
        metrics = loop_figures(httpx.get(f"{notify.base_url}/metrics", timeout=10).text)
    mark = metrics.get(MARK, {}).get("mean")
    spent = None if cpu is None or cpu_at_ready is None else cpu - cpu_at_ready
    per_mail = round(1000 * spent / len(stamps), 2) if spent is not None and stamps else None
    if len(stamps) != mails:  # then the read waited for its timeout, and the rate and CPU figures say little
        print(f"  notify hop: {len(stamps)} e-mails out of {mails} expected", flush=True)
    return {"assignments": assignments, "mails": mails, "sent": len(stamps),
            "mails_per_s": round(rate) if rate else None,
            "first_output_after_start_s": round(min(stamps) - started, 1) if stamps else None,
            "all_out_after_start_s": round(max(stamps) - started, 1) if stamps else None,
            "read_after_start_s": round(read_at - started, 1),
            "notify_cpu_ms_per_mail_after_ready": per_mail,
            "mark_mean_ms": round(1000 * mark, 2) if mark is not None else None,
            "notify_rss_mib": procstat.rss_mib(pid), "metrics": metrics}
