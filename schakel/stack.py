"""The local stack without Docker: `schakel up`, `down`, `status`, `demo`."""

from __future__ import annotations

import email
import email.policy
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from schakel.idp import LOCAL_ISSUER, demo_people, local_provider
from schakel.kafka_broker import Broker
from schakel.processes import DEFAULT_PORTS, SERVICES, http_ok
from schakel.progress import progress_bar
from schakel.supervisor import PROMETHEUS_PORT, SMTP_PORT, WERKBAK_PORT
from schakel.topics_admin import ensure_topics
from schakel.workers import format_workers, parse_workers, plan_workers
from shared.settings import REPO_ROOT, Settings

DEMO_FILE = REPO_ROOT / "examples" / "demo-signals.yaml"
READY_TIMEOUT_S = 120.0


def _settings() -> Settings:
    return Settings()


def _broker(settings: Settings) -> Broker:
    return Broker(settings.state_dir / "kafka", port=int(settings.kafka_bootstrap.rsplit(":", 1)[1]))


def _supervisor_pid(settings: Settings) -> int | None:
    try:
        pid = int((settings.state_dir / "supervisor.pid").read_text())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    return pid


def up(workers: str | None = None) -> int:
    """Start the broker, the identity provider, the mail sink, the services (`workers` per stream service), the
    werkbak and Prometheus (if installed)."""
    settings = _settings()
    try:
        counts = parse_workers(workers)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    broker = _broker(settings)
    print(f"starting Kafka on {broker.bootstrap} (first run fetches the broker jars with Maven) ...", flush=True)
    broker.start()
    ensure_topics(broker.bootstrap)
    idp = local_provider(settings.state_dir)
    print(f"starting the identity provider on {idp.issuer} (first run installs it with npm) ...", flush=True)
    idp.start()
    if _supervisor_pid(settings) is None:
        logs = settings.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "SCHAKEL_STACK_WORKERS": format_workers(counts)}
        with open(logs / "supervisor.log", "ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "schakel.supervisor"], cwd=REPO_ROOT, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True, env=env)
        (settings.state_dir / "supervisor.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + READY_TIMEOUT_S
    for worker in plan_workers(counts):
        url = f"http://127.0.0.1:{worker.port}/readyz"
        while not http_ok(url):
            if time.monotonic() > deadline:
                print(f"{worker.name} did not become ready; see {settings.state_dir / 'logs' / (worker.name + '.log')}")
                return 1
            time.sleep(0.5)
        print(f"  {worker.name:11s} ready on http://127.0.0.1:{worker.port}")
    while not http_ok(f"http://127.0.0.1:{WERKBAK_PORT}/readyz"):
        if time.monotonic() > deadline:
            print(f"werkbak did not become ready; see {settings.state_dir / 'logs' / 'werkbak.log'}")
            return 1
        time.sleep(0.5)
    print(f"  {'werkbak':11s} ready on http://127.0.0.1:{WERKBAK_PORT}")
    _print_addresses(settings)
    return 0


def _print_addresses(settings: Settings) -> None:
    print("\nSchakel runs locally:")
    print(f"  partner API (intake)    http://127.0.0.1:{DEFAULT_PORTS['intake']}/docs")
    print(f"  partner API (feedback)  http://127.0.0.1:{DEFAULT_PORTS['feedback']}/docs")
    print(f"  werkbak (log in)        http://127.0.0.1:{WERKBAK_PORT}  (demo logins: schakel demo)")
    print(f"  identity provider       {LOCAL_ISSUER}")
    print("  metrics                 " + ", ".join(f"http://127.0.0.1:{DEFAULT_PORTS[n]}/metrics" for n in SERVICES))
    print(f"  caught e-mails          {settings.state_dir / 'mail'} (SMTP sink on 127.0.0.1:{SMTP_PORT})")
    if http_ok(f"http://127.0.0.1:{PROMETHEUS_PORT}/-/ready") or _wait_prometheus():
        print(f"  Prometheus              http://127.0.0.1:{PROMETHEUS_PORT}")
    else:
        print("  Prometheus              not installed here (apt-get install prometheus)")
    print(f"  logs                    {settings.state_dir / 'logs'}")
    print("  stop with               schakel down")


def _wait_prometheus(timeout: float = 20.0) -> bool:
    import shutil

    if shutil.which("prometheus") is None:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http_ok(f"http://127.0.0.1:{PROMETHEUS_PORT}/-/ready"):
            return True
        time.sleep(0.5)
    return False


def down() -> int:
    """Stop the supervised processes and the broker."""
    settings = _settings()
    pid = _supervisor_pid(settings)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _supervisor_pid(settings) is not None:
            time.sleep(0.3)
    (settings.state_dir / "supervisor.pid").unlink(missing_ok=True)
    local_provider(settings.state_dir).stop()
    _broker(settings).stop()
    print("Schakel stopped")
    return 0


def status() -> int:
    """Show what runs."""
    settings = _settings()
    broker_pid = _broker(settings).pid()
    print(f"  kafka      {'running' if broker_pid else 'stopped'}")
    all_ready = broker_pid is not None
    for name in SERVICES:
        ready = http_ok(f"http://127.0.0.1:{DEFAULT_PORTS[name]}/readyz")
        all_ready &= ready
        print(f"  {name:9s}  {'ready' if ready else 'not ready'}")
    idp_running = local_provider(settings.state_dir).pid() is not None
    werkbak_ready = http_ok(f"http://127.0.0.1:{WERKBAK_PORT}/readyz")
    all_ready &= idp_running and werkbak_ready
    print(f"  {'idp':9s}  {'running' if idp_running else 'stopped'}")
    print(f"  {'werkbak':9s}  {'ready' if werkbak_ready else 'not ready'}")
    return 0 if all_ready else 3


def demo_bsn(rng: random.Random) -> str:
    """A random nine-digit number that passes the elfproef (fictitious, for the demo only)."""
    while True:
        digits = [rng.randint(1, 9)] + [rng.randint(0, 9) for _ in range(7)]
        check = sum(d * w for d, w in zip(digits, range(9, 1, -1), strict=True)) % 11
        if check < 10:
            return "".join(map(str, digits)) + str(check)


def fresh_children(spec: dict[str, Any], run: str, rng: random.Random) -> dict[str, Any]:
    """The demo's children with identifiers new to this run, the same child keeping the same ones.

    Otherwise a second `schakel demo` on the same state would match its school signal with the police
    signals of the first run (the matching window is two years) and tell another story.
    """
    bsns: dict[str, str] = {}
    for item in spec["signals"]:
        subject = item["body"].get("subject", {})
        if "bsn" in subject:
            subject["bsn"] = bsns.setdefault(subject["bsn"], demo_bsn(rng))
        for ref in ("pupil_ref", "family_ref"):
            if ref in subject:
                subject[ref] = f"{subject[ref]}-{run}"
    return spec


def demo() -> int:
    """Send the example signals, act on the first one, and show what every partner received."""
    settings = _settings()
    spec: dict[str, Any] = fresh_children(yaml.safe_load(DEMO_FILE.read_text()),
                                          run=time.strftime("%H%M%S"), rng=random.Random())
    tokens: dict[str, str] = spec["tokens"]
    intake = f"http://127.0.0.1:{DEFAULT_PORTS['intake']}"
    feedback = f"http://127.0.0.1:{DEFAULT_PORTS['feedback']}"
    mail_dir = settings.state_dir / "mail"
    before = set(mail_dir.glob("*.eml")) if mail_dir.exists() else set()
    from rich.console import Console

    # The demo's story is for a person: its lines and the bar on standard output (plain text off a terminal).
    with httpx.Client(timeout=30) as client, progress_bar("demo", console=Console()) as progress:
        task = progress.add_task("signalen", total=len(spec["signals"]))
        say = progress.console.print
        for item in spec["signals"]:
            headers = {"Authorization": f"Bearer {tokens[item['partner']]}"}
            answer = client.post(f"{intake}/v1/signals", json=item["body"], headers=headers)
            if answer.status_code != 202:
                say(f"  ! {item['name']}: {answer.status_code} {answer.text}", markup=False, highlight=False)
                return 1
            signal_id = answer.json()["signal_id"]
            state = _wait_for_state(client, feedback, signal_id, headers)
            say(f"- {item['name']} ({item['partner']}): {answer.json()['reference']} → "
                f"{state['route']} / {state['body']['name']} (regel {state['routing']['rule_id']})",
                markup=False, highlight=False)
            for step in item.get("then", []):
                acted = client.post(f"{feedback}/v1/signals/{signal_id}/events", json=step["event"],
                                    headers={"Authorization": f"Bearer {tokens[step['as']]}"})
                say(f"    {step['as']}: {step['event']['type']} → {acted.status_code} "
                    f"{acted.json().get('status', acted.json().get('code'))}", markup=False, highlight=False)
            progress.advance(task)
    _show_mail(mail_dir, before)
    _show_logins()
    return 0


def _show_logins() -> None:
    """Who can log in to the werkbak, and where (demo only)."""
    print(f"\nLog in to the werkbak at http://127.0.0.1:{WERKBAK_PORT} as one of the demo people "
          f"(password: {demo_people()[0]['password']}, demo only):")
    for entry in demo_people():
        print(f"  {entry['email']:36s} {entry['name']} ({entry['organisation']})")


def _wait_for_state(client: httpx.Client, feedback: str, signal_id: str, headers: dict[str, str]) -> Any:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        answer = client.get(f"{feedback}/v1/signals/{signal_id}", headers=headers)
        if answer.status_code == 200:
            return answer.json()
        time.sleep(0.3)
    raise SystemExit(f"signal {signal_id} did not reach feedback within 60 s; see .state/logs")


def _show_mail(mail_dir: Path, before: set[Path]) -> None:
    time.sleep(3.0)  # let notify finish the last e-mails before listing them
    by_recipient: dict[str, list[str]] = {}
    for path in sorted(set(mail_dir.glob("*.eml")) - before):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        by_recipient.setdefault(str(message["To"]), []).append(str(message["Subject"]))
    print(f"\nE-mails caught by the local SMTP sink ({mail_dir}):")
    for recipient, subjects in sorted(by_recipient.items()):
        print(f"  {recipient}")
        for subject in subjects:
            print(f"    {subject}")
    print("\nMetrics: http://127.0.0.1:8001/metrics … :8004/metrics; Prometheus (if installed) "
          f"http://127.0.0.1:{PROMETHEUS_PORT}")
