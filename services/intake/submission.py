"""One path for every signal, over HTTP or Kafka: validate, claim the key, pseudonymise, publish, answer."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

import structlog
from opentelemetry import trace
from pydantic import ValidationError

from services.intake.handlers import received_event_id, signal_id_for, to_signal_received
from services.intake.idempotency import IdempotencyStore
from services.intake.ledger import fingerprint, key_hash, slot_for
from services.intake.metrics import IntakeMetrics
from services.intake.publisher import BrokerUnavailable, Publisher
from services.intake.settings import IntakeSettings
from services.intake.validation import SignalIn, describe_errors, parse_signal
from shared.events import CLOUDEVENT_HEADERS, encode_event, make_event, source_urn, utcnow
from shared.keystore import KeyStore
from shared.municipality import Municipality, Partner
from shared.topics import SIGNALS_RECEIVED
from shared.tracing import trace_headers

log = structlog.get_logger(__name__)
MAX_IDEMPOTENCY_KEY = 255


@dataclass(frozen=True)
class Accepted:
    """Published and acknowledged (or replayed from the idempotency record)."""

    body: dict[str, Any]
    replay: bool = False


@dataclass(frozen=True)
class Rejected:
    """Refused: an HTTP status with a problem body, or a dead letter with the code."""

    status: int
    code: str
    title: str
    detail: str
    errors: list[dict[str, str]] | None = None
    retry_after: int | None = None


def idempotency_key_problem(key: str | None) -> Rejected | None:
    """A Rejected when an Idempotency-Key is given but empty or too long."""
    if key is None or 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
        return None
    message = f"De Idempotency-Key is 1 tot {MAX_IDEMPOTENCY_KEY} tekens lang."
    return Rejected(422, "invalid_idempotency_key", "Ongeldige Idempotency-Key", message,
                    errors=[{"field": "Idempotency-Key", "code": "invalid_idempotency_key", "message": message}])


def validate(payload: Any) -> SignalIn | Rejected:
    """The decoded body as a SignalIn, or a 422 naming every field that is wrong."""
    try:
        return parse_signal(payload)
    except ValidationError as exc:
        errors = describe_errors(exc)
        code = errors[0]["code"] if len(errors) == 1 else "validation_failed"
        return Rejected(422, code, "Het signaal is niet geldig", "Eén of meer velden zijn niet goed ingevuld.",
                        errors=errors)


class Intake:
    """Accepts signals for partners; the HTTP routes and the Kafka consumer are thin around it."""

    def __init__(
        self, *, settings: IntakeSettings, municipality: Municipality, publisher: Publisher, store: IdempotencyStore,
        metrics: IntakeMetrics, keys: KeyStore,
    ) -> None:
        self.settings = settings
        self.municipality = municipality
        self.publisher = publisher
        self.store = store
        self.metrics = metrics
        self.keys = keys
        self._secret = settings.pseudonym_secret.get_secret_value()
        self._locks: dict[str, asyncio.Lock] = {}

    def unavailable(self) -> Rejected:
        """Kafka did not acknowledge: 503 with Retry-After."""
        return Rejected(503, "kafka_unavailable", "Tijdelijk niet beschikbaar",
                        "Het signaal kon niet veilig worden opgeslagen. Probeer het later opnieuw.",
                        retry_after=self.settings.intake_retry_after_s)

    def reject(self, partner_kind: str, rejected: Rejected) -> Rejected:
        """Count a refusal by partner kind and stable code (503s are not the partner's fault: not counted)."""
        if rejected.status != 503:
            self.metrics.count_rejection(partner_kind=partner_kind, reason=rejected.code)
        return rejected

    async def submit(
        self, payload: Any, *, partner: Partner, idempotency_key: str | None, channel: str, wait_s: float
    ) -> Accepted | Rejected:
        """Validate and publish one signal; with a key, at most one signal per (partner, key), ever."""
        problem = idempotency_key_problem(idempotency_key)
        signal = validate(payload) if problem is None else problem
        if isinstance(signal, Rejected):
            return self.reject(partner.kind, signal)
        if idempotency_key is None:
            return await self._publish(signal, partner=partner, signal_id=str(uuid.uuid4()), channel=channel,
                                       retried=False)
        if not self.store.recovered:
            return self.unavailable()
        hashed = key_hash(secret=self._secret, idempotency_key=idempotency_key)
        slot = slot_for(partner.id, hashed)
        lock = self._locks.setdefault(slot, asyncio.Lock())
        try:
            async with lock:
                return await self._submit_once(signal, payload=payload, partner=partner, slot=slot,
                                               hashed_key=hashed, channel=channel, wait_s=wait_s)
        finally:
            if not lock.locked():
                self._locks.pop(slot, None)

    async def _submit_once(  # noqa: PLR0911 - each idempotency state ends the loop its own way
        self, signal: SignalIn, *, payload: Any, partner: Partner, slot: str, hashed_key: str, channel: str,
        wait_s: float,
    ) -> Accepted | Rejected:
        fp = fingerprint(payload, secret=self._secret)
        deadline = time.monotonic() + wait_s
        while True:
            done = self.store.done(slot)
            if done is not None:
                if done.fingerprint != fp:
                    return self.reject(partner.kind, self._conflict())
                self.metrics.replays.inc()
                log.info("idempotent_replay", signal_id=done.response.get("signal_id"), channel=channel)
                return Accepted(done.response, replay=True)
            active = self.store.active_claim(slot)
            if active is not None:
                if active.fingerprint != fp:
                    return self.reject(partner.kind, self._conflict())
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return self.reject(partner.kind, self._in_progress())
                await self.store.wait_for(
                    lambda: self.store.done(slot) is not None or self.store.active_claim(slot) is None,
                    timeout=remaining,
                )
                continue
            try:
                won = await self.store.claim(slot, fingerprint=fp)
            except BrokerUnavailable:
                return self.unavailable()
            if won is None:
                continue
            signal_id = signal_id_for(partner_id=partner.id, idempotency_key=hashed_key, fallback="")
            # Only an earlier claim of this slot can have made the signal's key: the first needs no look-up.
            result = await self._publish(signal, partner=partner, signal_id=signal_id, channel=channel,
                                         retried=not won.first_attempt)
            if isinstance(result, Rejected):
                await self.store.release(slot, claim_id=won.claim_id)
                return result
            # Off the request path: this process replays the answer at once, the others once the `done`
            # record is in the log; a failed write is retried until it is (ADR 0005, point 4).
            self.store.complete_soon(slot, claim_id=won.claim_id, fingerprint=fp, response=result.body)
            return result

    def _conflict(self) -> Rejected:
        return Rejected(409, "idempotency_conflict", "Andere inhoud onder dezelfde sleutel",
                        "Deze Idempotency-Key is al gebruikt voor een ander signaal.")

    def _in_progress(self) -> Rejected:
        return Rejected(409, "idempotency_in_progress", "Verzoek wordt nog verwerkt",
                        "Een eerder verzoek met deze Idempotency-Key wordt nog verwerkt. Probeer het zo opnieuw.",
                        retry_after=self.settings.intake_retry_after_s)

    async def _publish(
        self, signal: SignalIn, *, partner: Partner, signal_id: str, channel: str, retried: bool
    ) -> Accepted | Rejected:
        """Store the signal's data key, then publish the signal with its free text encrypted under it.

        `retried`: an earlier claim of the same Idempotency-Key (same signal id) may have made the key.
        """
        received = to_signal_received(
            signal, partner=partner, signal_id=signal_id, received_at=utcnow(), pseudonym_secret=self._secret,
        )
        trace.get_current_span().set_attribute("schakel.signal_id", signal_id)
        event_id = received_event_id(signal_id)
        try:
            if signal.summary:
                sealed = await self.keys.encrypt(signal.summary, subject=received.subject_key, kid=signal_id,
                                                 event_id=event_id, field="summary", may_exist=retried)
                received = received.model_copy(update={"summary_sealed": sealed})
            else:  # a key all the same: the child's key ring is the index of its signals (erasure, inzage)
                await self.keys.data_key_for_new(received.subject_key, signal_id, may_exist=retried)
        except (BrokerUnavailable, TimeoutError):
            return self.unavailable()
        event = make_event(received, source=source_urn("intake"), subject=signal_id, event_id=event_id)
        try:
            await self.publisher.publish(topic=SIGNALS_RECEIVED.name, key=received.subject_key,
                                         value=encode_event(event), headers=[*CLOUDEVENT_HEADERS, *trace_headers()])
        except BrokerUnavailable:
            return self.unavailable()
        self.metrics.hop.produced.labels(topic=SIGNALS_RECEIVED.name).inc()
        self.metrics.accepted.labels(partner_kind=partner.kind, channel=channel).inc()
        self.metrics.last_accepted.set(time.time())
        log.info("signal_accepted", signal_id=signal_id, partner_kind=partner.kind, category=received.category,
                 channel=channel)
        return Accepted({"signal_id": signal_id, "reference": received.reference, "status": "received"})
