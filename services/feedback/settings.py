"""feedback's settings: the SLA sweep (environment SCHAKEL_...)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from shared.settings import Settings


class FeedbackSettings(Settings):
    """Settings of the feedback service."""

    # how often the SLA sweep scans the lifecycle table for due warnings, breaches, escalations.
    sla_sweep_interval_s: float = Field(default=30.0, gt=0)
    # Retention (ADR 0020): a signal is erased this long after it was received (ISO 8601 duration: P730D, PT3S) ...
    retention_term: timedelta = Field(default=timedelta(days=730), gt=timedelta(0))
    # ... or this long after it was closed as unfounded (outcome ongegrond), whichever comes first.
    retention_unfounded_term: timedelta = Field(default=timedelta(days=182), gt=timedelta(0))
    # How often the retention sweep looks for signals past their term (and rolls the key topic's segment).
    retention_sweep_interval_s: float = Field(default=600.0, gt=0)
