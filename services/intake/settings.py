"""intake's settings: rate limits, answers while Kafka is away, idempotency (environment SCHAKEL_...)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import Settings


class IntakeSettings(Settings):
    """Settings of the intake service."""

    # per-partner token bucket (per process), answers 429 with Retry-After when empty.
    intake_rate_per_minute: float = Field(default=600.0, gt=0)
    intake_rate_burst: int = Field(default=60, ge=1)
    # Retry-After (seconds) on 503, and how long to wait for Kafka's ack before answering 503.
    intake_retry_after_s: int = Field(default=5, ge=1)
    intake_send_timeout_s: float = Field(default=5.0, gt=0)
    # how long an idempotency claim holds before another request may take it over (ADR 0005).
    intake_claim_lease_s: float = Field(default=30.0, gt=0)
