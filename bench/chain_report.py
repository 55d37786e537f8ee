"""Tables and bench/results/latest.json for bench.chain."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from bench.chain_run import STAGES, Window
from bench.peers import smtp_peer_name
from bench.report import print_table
from bench.results import provenance

SERVICES = ("intake", "routing", "feedback", "notify")


def services_ms(window: Window) -> float | None:
    """CPU ms per signal of the four services together."""
    per = window.cpu_ms_per_signal()
    values = [per.get(name) for name in SERVICES]
    return None if any(v is None for v in values) else round(sum(v for v in values if v is not None), 2)


def _window(windows: list[Window], name: str) -> Window | None:
    return next((w for w in windows if w.name == name), None)


def results_json(figures: dict[str, Any]) -> dict[str, Any]:
    """The keys issue 10 asks for, plus the details they come from."""
    windows: list[Window] = figures["windows"]
    out: dict[str, Any] = provenance()  # the chain's run is the file's headline: machine, date, commit
    top = _window(windows, "max")
    if top is not None:
        out["e2e_signals_per_s"] = top.completed_per_s
        out["services_cpu_ms_per_signal"] = services_ms(top)
        out["broker_cpu_ms_per_signal"] = top.cpu_ms_per_signal().get("broker")
    for rate in (100, 200):
        window = _window(windows, f"{rate}/s")
        if window is not None:
            out[f"e2e_p99_ms_at_{rate}_per_s"] = window.latency["both e-mails"]["p99_ms"]
    for window in windows:
        if window.name != "max":
            tag = window.name.replace("/s", "")
            out[f"services_cpu_ms_per_signal_at_{tag}_per_s"] = services_ms(window)
            out[f"e2e_signals_per_s_at_{tag}_per_s"] = window.completed_per_s
    if windows:
        out["lost"] = sum(w.lost for w in windows)
    raw = next((p for p in figures["peers"] if p["peer"].endswith("batched")), None)
    if raw is not None:
        out["raw_passthrough_records_per_s"] = raw["records_per_s"]
    hop = figures.get("hop")
    if hop is not None:
        out["routing_records_per_s"] = hop["records_per_s"]
    if raw and hop and raw["records_per_s"] and hop["records_per_s"]:
        out["routing_to_raw_passthrough_ratio"] = round(hop["records_per_s"] / raw["records_per_s"], 3)
    # Always written (None when not measured), so a run without the notify hop leaves no older figure behind.
    notify = figures.get("notify_hop")
    mails = notify.get("mails_per_s") if notify else None
    one = next((p for p in figures["peers"] if p["peer"] == smtp_peer_name(1)), None)
    out["notify_mails_per_s"] = mails
    out["notify_to_raw_smtp_ratio"] = (round(mails / one["mails_per_s"], 3)
                                       if mails and one and one["mails_per_s"] else None)
    out["chain"] = {"sink": figures.get("sink"), "idle_cpu_ms_per_s": figures.get("idle_cpu_ms_per_s"),
                    "peers": figures["peers"], "hop": hop, "notify_hop": notify,
                    "rss_idle_mib": figures.get("rss_idle"), "service_metrics": figures.get("service_metrics"),
                    "windows": [asdict(w) | {"cpu_ms_per_signal": w.cpu_ms_per_signal()} for w in windows]}
    return out


def peer_row(peer: dict[str, Any]) -> dict[str, Any]:
    """One line per peer: its rate, its unit, and the rest of its figures."""
    rate_key = next(k for k in peer if k.endswith("_per_s") and not k.startswith("wall"))
    rest = {k: v for k, v in peer.items() if k not in ("peer", rate_key)}
    return {"peer": peer["peer"], "rate": peer[rate_key], "unit": rate_key.removesuffix("_per_s") + "/s",
            "details": ", ".join(f"{k}={v}" for k, v in rest.items())}


def print_all(figures: dict[str, Any]) -> None:
    """Every table of the run."""
    windows: list[Window] = figures["windows"]
    if figures["peers"]:
        print("\nraw peers (same broker, nothing else running)")
        print_table([peer_row(p) for p in figures["peers"]], indent="  ")
    if windows:
        print("\nchain: throughput and loss")
        print_table([{"window": w.name, "load": w.offered, "sent": w.sent, "202": w.accepted,
                      "other answers": {k: v for k, v in w.statuses.items() if k != "202"} or "",
                      "accepted/s": w.accepted_per_s, "both e-mails": w.completed, "lost": w.lost,
                      "of them later": "" if w.eventually is None else w.eventually,
                      "e2e signals/s": w.completed_per_s,
                      "first send → last mail /s": w.first_send_to_last_mail_per_s, "conns": w.connections,
                      "resent": w.resent} for w in windows], indent="  ")
        print("\nchain: latency from the scheduled send, p50 / p99 / max ms")
        print_table([{"window": w.name, **{s: f"{w.latency[s]['p50_ms']} / {w.latency[s]['p99_ms']} /"
                                              f" {w.latency[s]['max_ms']}" for s in STAGES}} for w in windows],
                    indent="  ")
        names = list(windows[0].cpu_s)
        print("\nchain: CPU ms per accepted signal (/proc/<pid>/stat over the window)")
        print_table([{"window": w.name, **w.cpu_ms_per_signal(), "4 services": services_ms(w)} for w in windows],
                    indent="  ")
        if figures.get("idle_cpu_ms_per_s"):
            print("\nCPU ms per second with no load (before the warm-up)")
            print_table([figures["idle_cpu_ms_per_s"]], indent="  ")
        print("\nRSS MiB (idle after start → after each window)")
        idle = figures.get("rss_idle") or {}
        print_table([{"process": n, "idle": idle.get(n), **{w.name: w.rss_mib.get(n) for w in windows}}
                     for n in names], indent="  ")
    if figures.get("hop"):
        print("\nrouting hop alone")
        print_table([{k: v for k, v in figures["hop"].items() if k != "metrics"}], indent="  ")
        for key, value in figures["hop"].get("metrics", {}).items():
            print(f"  routing {key}: {value}")
    if figures.get("notify_hop"):
        print("\nnotify hop alone (the routing hop's assignments: a receipt to the reporter, a notice to the body)")
        print_table([{k: v for k, v in figures["notify_hop"].items() if k != "metrics"}], indent="  ")
