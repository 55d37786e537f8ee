"""Keeps the local stack's processes running: the mail sink, the services' workers, the werkbak, Prometheus if
installed.

Run detached by `schakel up`; `schakel down` sends it SIGTERM and it stops its children.
A child that exits is started again after a short, growing pause.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from schakel.idp import LOCAL_ISSUER
from schakel.workers import parse_workers, plan_workers
from shared.settings import REPO_ROOT, Settings

SMTP_PORT = 8025
PROMETHEUS_PORT = 9090
WERKBAK_PORT = 8005


@dataclass
class Child:
    """A supervised command with its log file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    backoff: float = 1.0

    def start(self) -> None:
        """Spawn it; output goes to its log."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv, cwd=REPO_ROOT, env={**os.environ, **self.env}, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 30 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


@dataclass
class Supervisor:
    """Starts the children and restarts any that exit, until told to stop."""

    settings: Settings
    children: list[Child] = field(default_factory=list)
    stopping: bool = False

    def plan(self) -> list[Child]:
        """Every process of the local stack."""
        state = self.settings.state_dir
        logs = state / "logs"
        python = sys.executable
        children = [Child("mail-sink", [python, "-m", "schakel.mail_sink", "--port", str(SMTP_PORT),
                                        "--dir", str(state / "mail")], {}, logs / "mail-sink.log")]
        # People's access tokens are checked against the local identity provider unless another one is set.
        issuer = {"SCHAKEL_OIDC_ISSUER": os.environ.get("SCHAKEL_OIDC_ISSUER", LOCAL_ISSUER)}
        for worker in plan_workers(parse_workers(os.environ.get("SCHAKEL_STACK_WORKERS"))):
            env = {"SCHAKEL_HTTP_PORT": str(worker.port), "SCHAKEL_SMTP_PORT": str(SMTP_PORT),
                   "SCHAKEL_STATE_DIR": str(worker.state_dir(state)), "SCHAKEL_WORKER_ID": worker.name, **issuer}
            children.append(Child(worker.name, [python, "-m", f"services.{worker.service}"], env,
                                  logs / f"{worker.name}.log"))
        children.append(Child("werkbak", [python, "-m", "services.werkbak"], {
            "SCHAKEL_HTTP_PORT": str(WERKBAK_PORT), "SCHAKEL_STATE_DIR": str(state / "werkbak"), **issuer,
        }, logs / "werkbak.log"))
        prometheus = shutil.which("prometheus")
        if prometheus:
            config = write_prometheus_config(state)
            children.append(Child("prometheus", [
                prometheus, f"--config.file={config}", f"--storage.tsdb.path={state / 'prometheus'}",
                f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}",
            ], {}, logs / "prometheus.log"))
        return children

    def run(self) -> None:
        """Start everything and watch until SIGTERM."""
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        self.children = self.plan()
        for child in self.children:
            child.start()
        while not self.stopping:
            now = time.monotonic()
            for child in self.children:
                if child.proc is not None and child.proc.poll() is not None:
                    child.proc = None
                    child.restarts += 1
                    child.next_start = now + child.backoff
                    child.backoff = min(child.backoff * 2, 30.0)
                    print(f"{child.name} exited; restarting in {child.backoff / 2:.0f}s", flush=True)
                elif child.proc is None and now >= child.next_start:
                    child.start()
            time.sleep(0.5)
        for child in reversed(self.children):
            child.stop()

    def _on_term(self, *_: object) -> None:
        self.stopping = True


def write_prometheus_config(state: Path) -> Path:
    """The local Prometheus configuration, rendered from the repo's rules and the local targets."""
    from schakel.prometheus_config import LOCAL_TARGETS, PROMETHEUS_DIR, render_config

    path = state / "prometheus.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_config(targets=LOCAL_TARGETS, rules_dir=PROMETHEUS_DIR / "rules"))
    return path


if __name__ == "__main__":
    Supervisor(Settings()).run()
