"""feedback's settings: the SLA sweep (environment SCHAKEL_...)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import Settings


class FeedbackSettings(Settings):
    """Settings of the feedback service."""

    # how often the SLA sweep scans the lifecycle table for due warnings, breaches, escalations.
    sla_sweep_interval_s: float = Field(default=30.0, gt=0)
