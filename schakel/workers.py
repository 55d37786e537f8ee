"""How many workers of each stream service the local stack runs, and where each one listens.

`schakel up --workers 2` runs two workers of routing, feedback and notify; `--workers routing=3,notify=2`
names them one by one. Intake stays one process locally (several intake processes need a load balancer in
front; they share the idempotency ledger, ADR 0005). A worker beyond the first listens on its service's port
plus 10 per extra worker and keeps its state (RocksDB tables) in a directory of its own. More workers than a
topic has partitions sit idle (shared/topics.py: 4 partitions per stream topic).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from schakel.processes import DEFAULT_PORTS

SCALABLE = ("routing", "feedback", "notify")
MAX_WORKERS = 4  # the stream topics' partitions


@dataclass(frozen=True)
class Worker:
    """One process of a service in the local stack."""

    service: str
    index: int  # 1 for the first
    port: int

    @property
    def name(self) -> str:
        """`routing` for the first worker, `routing-2` for the second, ..."""
        return self.service if self.index == 1 else f"{self.service}-{self.index}"

    def state_dir(self, root: Path) -> Path:
        """Where this worker keeps its state: the stack's own directory for the first, a directory apart else."""
        return root if self.index == 1 else root / "workers" / self.name


def parse_workers(text: str | None) -> dict[str, int]:
    """`2` or `routing=2,notify=3` as a count per scalable service (1 where not named)."""
    counts = dict.fromkeys(SCALABLE, 1)
    if not text:
        return counts
    if text.strip().isdigit():
        return dict.fromkeys(SCALABLE, _bounded(int(text)))
    for part in text.split(","):
        service, _, count = part.partition("=")
        service = service.strip()
        if service not in SCALABLE or not count.strip().isdigit():
            raise ValueError(f"--workers: expected N or SERVICE=N[,SERVICE=N] with SERVICE one of "
                             f"{', '.join(SCALABLE)}, got {part!r}")
        counts[service] = _bounded(int(count))
    return counts


def _bounded(count: int) -> int:
    if not 1 <= count <= MAX_WORKERS:
        raise ValueError(f"--workers: between 1 and {MAX_WORKERS} per service (the topics' partitions)")
    return count


def plan_workers(counts: dict[str, int]) -> list[Worker]:
    """Every service process: one intake, and the counted workers of the stream services."""
    workers = [Worker("intake", 1, DEFAULT_PORTS["intake"])]
    for service in SCALABLE:
        workers += [Worker(service, i, DEFAULT_PORTS[service] + 10 * (i - 1)) for i in range(1, counts[service] + 1)]
    return workers


def format_workers(counts: dict[str, int]) -> str:
    """The counts in the form parse_workers reads."""
    return ",".join(f"{service}={count}" for service, count in counts.items())
