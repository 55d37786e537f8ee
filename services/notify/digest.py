"""Daily digests, pure parts: periods, the pending entry per recipient, and what is due (ADR 0008)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
RECENT_LIMIT = 500


def recipient_key(email: str) -> str:
    """The Kafka and table key of a recipient: a hash, so keys and partitions do not spell addresses."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]


@dataclass(frozen=True)
class DigestSchedule:
    """When digests fall due: daily at a local time, or every `interval_s` seconds (tests, demos)."""

    at: time = time(7, 0)
    interval_s: float | None = None

    @classmethod
    def parse(cls, hhmm: str, interval_s: float | None = None) -> DigestSchedule:
        """From settings: 'HH:MM' and an optional interval."""
        hours, minutes = hhmm.split(":")
        return cls(at=time(int(hours), int(minutes)), interval_s=interval_s)

    def period_start(self, now: datetime) -> datetime:
        """The start of the period `now` falls in: the latest digest moment at or before `now`."""
        if self.interval_s is not None:
            seconds = now.timestamp() // self.interval_s * self.interval_s
            return datetime.fromtimestamp(seconds, UTC)
        local = now.astimezone(AMSTERDAM)
        today = datetime.combine(local.date(), self.at, AMSTERDAM)
        start = today if today <= local else datetime.combine(local.date() - timedelta(days=1), self.at, AMSTERDAM)
        return start.astimezone(UTC)

    def period_id(self, now: datetime) -> str:
        """A name for the period `now` falls in: the local date in daily mode, the start second otherwise."""
        start = self.period_start(now)
        if self.interval_s is not None:
            return f"t{int(start.timestamp())}"
        return start.astimezone(AMSTERDAM).date().isoformat()


@dataclass(frozen=True)
class PendingItem:
    """One signal waiting for a recipient's digest."""

    item_id: str
    signal_id: str
    reference: str
    route: str
    urgency: str
    queued_at: datetime


@dataclass(frozen=True)
class PendingEntry:
    """A recipient's digest state: items waiting, the last period sent, and recently sent item ids."""

    recipient: str
    role: str
    items: tuple[PendingItem, ...] = ()
    last_period: str | None = None
    recent: tuple[str, ...] = field(default=())

    def with_item(self, item: PendingItem) -> PendingEntry | None:
        """The entry with the item added; None when it is already waiting or was recently sent."""
        if item.item_id in self.recent or any(i.item_id == item.item_id for i in self.items):
            return None
        return replace(self, items=(*self.items, item))

    def due(self, period_start: datetime) -> tuple[PendingItem, ...]:
        """Items queued before the period began: the previous period's collection."""
        return tuple(i for i in self.items if i.queued_at < period_start)

    def without_signal(self, signal_id: str) -> PendingEntry:
        """The entry with an (erased) signal's items taken out."""
        return replace(self, items=tuple(i for i in self.items if i.signal_id != signal_id))

    def after_sending(self, period: str, sent: tuple[PendingItem, ...]) -> PendingEntry:
        """The entry once a digest for `period` carried `sent`."""
        ids = {i.item_id for i in sent}
        return replace(self, items=tuple(i for i in self.items if i.item_id not in ids), last_period=period,
                       recent=(*self.recent, *ids)[-RECENT_LIMIT:])

    def encode(self) -> bytes:
        """JSON bytes for the table."""
        return json.dumps({
            "recipient": self.recipient, "role": self.role, "last_period": self.last_period,
            "recent": list(self.recent),
            "items": [{"item_id": i.item_id, "signal_id": i.signal_id, "reference": i.reference, "route": i.route,
                       "urgency": i.urgency, "queued_at": i.queued_at.isoformat()} for i in self.items],
        }).encode()

    @classmethod
    def decode(cls, raw: bytes) -> PendingEntry:
        """From the table's JSON bytes."""
        data = json.loads(raw)
        items = tuple(PendingItem(**{**i, "queued_at": datetime.fromisoformat(i["queued_at"])}) for i in data["items"])
        return cls(recipient=data["recipient"], role=data["role"], items=items, last_period=data["last_period"],
                   recent=tuple(data["recent"]))
