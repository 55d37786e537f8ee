"""The municipality file and its rule book as the running service sees them, with safe reloads.

Reload by polling the file's modification time (every `routing_reload_interval_s`): it works the
same under a supervisor, in a container with a mounted ConfigMap, and in tests. A file that does
not validate is refused: the old rules stay, `routing_config_reloads_total{outcome="refused"}`
counts it and `routing_config_refused` is logged with the lines. Rules an earlier rule catches completely
are kept and logged as `routing_config_warnings`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import structlog

from services.routing.metrics import RoutingMetrics
from services.routing.reachability import shadow_warnings
from services.routing.rules import RuleBook, parse_rulebook
from shared.municipality import ConfigError, Municipality, load_municipality

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Loaded:
    """One consistent pair: the bodies and the rules that name them."""

    municipality: Municipality
    book: RuleBook


def _log_warnings(loaded: Loaded) -> None:
    """Rules that an earlier rule catches completely are kept, and logged (ADR 0013)."""
    warnings = shadow_warnings(loaded.book.rules, loaded.municipality)
    if warnings:
        log.warning("routing_config_warnings", problems=[f"line {line or '?'}: {text}" for line, text in warnings])


class RoutingConfig:
    """Holds the current configuration; swaps it only for a valid file."""

    def __init__(self, path: Path | None, metrics: RoutingMetrics, *, municipality: Municipality | None = None) -> None:
        self.path = path
        self.metrics = metrics
        self._mtime = self._stat()
        municipality = municipality or load_municipality(path)  # type: ignore[arg-type]
        self.current = Loaded(municipality, parse_rulebook(municipality))
        _log_warnings(self.current)
        metrics.config_reloads.labels(outcome="ok").inc()
        metrics.precreate_rules(self.current.book, municipality)

    def _stat(self) -> float | None:
        try:
            return self.path.stat().st_mtime_ns if self.path else None
        except OSError:
            return None

    def maybe_reload(self) -> bool | None:
        """Reload when the file changed: True loaded, False refused, None unchanged."""
        mtime = self._stat()
        if self.path is None or mtime is None or mtime == self._mtime:
            return None
        self._mtime = mtime
        try:
            municipality = load_municipality(self.path)
            book = parse_rulebook(municipality)
        except ConfigError as exc:
            self.metrics.config_reloads.labels(outcome="refused").inc()
            log.error("routing_config_refused", path=str(self.path), kept="previous",
                      problems=[f"line {line or '?'}: {message}" for line, message in exc.problems])
            return False
        self.current = Loaded(municipality, book)
        _log_warnings(self.current)
        self.metrics.config_reloads.labels(outcome="ok").inc()
        self.metrics.precreate_rules(book, municipality)
        log.info("routing_config_reloaded", path=str(self.path), rules=len(book.rules))
        return True
