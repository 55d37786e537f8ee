"""The development OpenID Connect provider (infra/idp, panva's oidc-provider on Node; ADR 0016).

Started by `schakel up` and by the test session like the broker: its files under a state directory, its pid
in a pid file, stopped by that pid only. The demo people come from examples/demo-people.json; the one client
is the werkbak. A municipality points Schakel at its own identity provider instead (SCHAKEL_OIDC_ISSUER).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from schakel.pids import stop_pid
from shared.settings import REPO_ROOT

IDP_DIR = REPO_ROOT / "infra" / "idp"
DEMO_PEOPLE = REPO_ROOT / "examples" / "demo-people.json"
START_TIMEOUT_S = 30.0
LOCAL_PORT = 18080  # `schakel up`
LOCAL_ISSUER = f"http://127.0.0.1:{LOCAL_PORT}"
WERKBAK_LOCAL_URL = "http://127.0.0.1:8005"


class IdpError(RuntimeError):
    """The identity provider could not be installed or started."""


@dataclass(frozen=True)
class OidcClient:
    """A relying party registered at the provider."""

    client_id: str
    client_secret: str
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str]


def ensure_installed() -> Path:
    """node_modules of infra/idp, installed with `npm ci` from the committed lockfile when missing."""
    modules = IDP_DIR / "node_modules"
    if (modules / "oidc-provider" / "package.json").exists() and (modules / "axe-core" / "axe.min.js").exists():
        return modules
    if shutil.which("npm") is None:
        raise IdpError("npm is not installed; it installs the development identity provider (infra/idp)")
    result = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=IDP_DIR, capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        raise IdpError(f"npm ci failed ({result.returncode}): {result.stdout[-2000:]}{result.stderr[-2000:]}")
    return modules


def discovery_ok(issuer: str, timeout: float = 1.0) -> bool:
    """Whether the provider answers its discovery document."""
    try:
        with urllib.request.urlopen(f"{issuer}/.well-known/openid-configuration", timeout=timeout) as response:  # noqa: S310 - local URL
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


@dataclass
class IdentityProvider:
    """One provider's files under a state directory."""

    home: Path
    port: int = LOCAL_PORT
    clients: list[OidcClient] = field(default_factory=list)
    people: Path = DEMO_PEOPLE
    audience: str = "schakel"
    access_token_ttl_s: int = 3600

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.home / "idp.pid"

    @property
    def log_path(self) -> Path:
        return self.home / "idp.log"

    def pid(self) -> int | None:
        """The running provider's pid, if the pid file names a live process."""
        try:
            pid = int(self.pid_file.read_text())
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        return pid

    def start(self) -> int:
        """Install if needed, write the configuration, start node and wait for the discovery document."""
        running = self.pid()
        if running is not None:
            return running
        ensure_installed()
        self.home.mkdir(parents=True, exist_ok=True)
        config = self.home / "idp-config.json"
        config.write_text(json.dumps({
            "issuer": self.issuer, "port": self.port, "people": str(self.people), "audience": self.audience,
            "access_token_ttl_s": self.access_token_ttl_s,
            "clients": [client.__dict__ for client in self.clients],
        }, indent=2))
        config.chmod(0o600)  # it holds the client secrets
        out = open(self.log_path, "ab")  # handed to the child
        proc = subprocess.Popen(["node", str(IDP_DIR / "provider.js"), str(config)], cwd=IDP_DIR, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + START_TIMEOUT_S
        while not discovery_ok(self.issuer):
            if proc.poll() is not None:
                raise IdpError(f"the identity provider exited with {proc.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                self.stop()
                raise IdpError(f"the identity provider did not answer within {START_TIMEOUT_S}s; see {self.log_path}")
            time.sleep(0.1)
        return proc.pid

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the provider by its pid (SIGKILL after the timeout)."""
        pid = self.pid()
        if pid is None:
            return
        stop_pid(pid, sig=signal.SIGTERM, timeout=timeout, poll_s=0.1)
        self.pid_file.unlink(missing_ok=True)


def local_provider(state_dir: Path) -> IdentityProvider:
    """The provider of `schakel up`, with the werkbak of the local stack as its client."""
    from services.werkbak.settings import WerkbakSettings

    werkbak = WerkbakSettings()
    base = werkbak.public_base_url.rstrip("/")
    client = OidcClient(client_id=werkbak.oidc_client_id,
                        client_secret=werkbak.oidc_client_secret.get_secret_value(),
                        redirect_uris=[f"{base}/auth/callback"], post_logout_redirect_uris=[f"{base}/afgemeld"])
    return IdentityProvider(state_dir / "idp", port=LOCAL_PORT, clients=[client])


def demo_people() -> list[dict[str, str]]:
    """The demo people's logins (examples/demo-people.json)."""
    people: list[dict[str, str]] = json.loads(DEMO_PEOPLE.read_text(encoding="utf-8"))["people"]
    return people
