"""A real single-node KRaft Kafka broker from Maven Central jars, for development and tests."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from schakel.pids import stop_pid
from shared.settings import REPO_ROOT

POM = REPO_ROOT / "infra" / "kafka" / "pom.xml"
LOG4J_CONFIG = REPO_ROOT / "infra" / "kafka" / "log4j2.properties"
SERVER_TEMPLATE = REPO_ROOT / "infra" / "kafka" / "server.properties.template"
START_TIMEOUT_S = 90.0


class BrokerError(RuntimeError):
    """The broker could not be fetched, formatted or started."""


def libs_dir() -> Path:
    """Where the broker jars live; keyed by the pom's hash so a pom change refetches."""
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:12]
    base = Path(os.environ.get("SCHAKEL_KAFKA_LIBS", Path.home() / ".cache" / "schakel" / "kafka-libs"))
    return base / digest


def fetch_jars() -> Path:
    """Fetch kafka_2.13 and its log4j backend with Maven (cached; idempotent)."""
    target = libs_dir()
    marker = target / ".complete"
    if marker.exists():
        return target
    if shutil.which("mvn") is None:
        raise BrokerError("Maven (mvn) is not installed; it fetches the Kafka broker jars")
    partial = target.with_suffix(".partial")
    shutil.rmtree(partial, ignore_errors=True)
    cmd = [
        "mvn", "-B", "-q", "-f", str(POM), "dependency:copy-dependencies",
        "-DincludeScope=runtime", f"-DoutputDirectory={partial}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BrokerError(f"mvn failed ({result.returncode}): {result.stdout[-2000:]}{result.stderr[-2000:]}")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    marker.touch()
    return target


# Below Linux's ephemeral range (32768-60999): a port the kernel picked for "bind to 0" can be taken by an
# outgoing connection (a Kafka client's, say) before the service that was given it binds it.
FREE_PORTS = range(20000, 32000)
_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, outside the ephemeral range, not handed out before."""
    for _ in range(200):
        port = random.choice(FREE_PORTS)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free TCP port found in 20000-32000")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on the port."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


@dataclass
class Broker:
    """One broker's files under a state directory."""

    home: Path
    port: int = 19092
    controller_port: int = 19093

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.home / "broker.pid"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    def _write_config(self) -> Path:
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        props = self.home / "server.properties"
        props.write_text(
            SERVER_TEMPLATE.read_text().format(
                port=self.port, controller_port=self.controller_port, data_dir=self.home / "data"
            )
        )
        return props

    def _cluster_id(self) -> str:
        path = self.home / "cluster.id"
        if not path.exists():
            # KRaft wants a base64 UUID of 22 characters.
            import base64

            # A leading '-' would be read by StorageTool as an option; draw again.
            cluster_id = "-"
            while cluster_id.startswith("-"):
                cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            path.write_text(cluster_id)
        return path.read_text().strip()

    def pid(self) -> int | None:
        """The running broker's pid, if the pid file names a live process."""
        try:
            pid = int(self.pid_file.read_text())
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        return pid

    def start(self, *, wait: bool = True) -> int:
        """Format storage if needed, start the broker, and wait until it answers."""
        running = self.pid()
        if running is not None:
            return running
        libs = fetch_jars()
        props = self._write_config()
        classpath = f"{libs}/*"
        fmt = subprocess.run(
            ["java", "-cp", classpath, f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
             f"-Dkafka.logs.dir={self.log_dir}", "kafka.tools.StorageTool", "format",
             "-t", self._cluster_id(), "-c", str(props), "--ignore-formatted"],
            capture_output=True, text=True, check=False,
        )
        if fmt.returncode != 0:
            raise BrokerError(f"storage format failed: {fmt.stdout}{fmt.stderr}")
        out = open(self.log_dir / "stdout.log", "ab")  # handed to the child
        proc = subprocess.Popen(
            ["java", "-Xms512m", "-Xmx1g", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
             "-Djava.awt.headless=true", f"-Dkafka.logs.dir={self.log_dir}",
             f"-Dlog4j2.configurationFile={LOG4J_CONFIG}", "-cp", classpath, "kafka.Kafka", str(props)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.pid_file.write_text(str(proc.pid))
        if wait:
            self.wait_ready(proc)
        return proc.pid

    def wait_ready(self, proc: subprocess.Popen[bytes] | None = None, timeout: float = START_TIMEOUT_S) -> None:
        """Block until the broker serves metadata requests."""
        from kafka import KafkaAdminClient

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise BrokerError(f"broker exited with {proc.returncode}; see {self.log_dir}")
            if port_open(self.port):
                with contextlib.suppress(Exception):  # not up yet; keep polling
                    admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
                    admin.list_topics()
                    admin.close()
                    return
            time.sleep(0.3)
        raise BrokerError(f"broker did not answer on {self.bootstrap} within {timeout}s")

    def stop(self, *, timeout: float = 30.0, kill: bool = False) -> None:
        """Stop the broker: SIGTERM (controlled shutdown) or SIGKILL."""
        pid = self.pid()
        if pid is None:
            return
        stop_pid(pid, sig=signal.SIGKILL if kill else signal.SIGTERM, timeout=timeout, poll_s=0.2)
        self.pid_file.unlink(missing_ok=True)
