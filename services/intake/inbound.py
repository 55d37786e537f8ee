"""Kafka-connected partners (ADR 0006): signals.inbound → the same checks as HTTP → signals.received or the DLQ."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from services.intake.publisher import BrokerUnavailable
from services.intake.signing import IDEMPOTENCY_HEADER, PARTNER_HEADER, SIGNATURE_HEADER, partner_signing_key, verify
from services.intake.submission import Accepted, Intake, Rejected
from services.intake.validation import MAX_BODY_BYTES
from shared import fastjson
from shared.events import CloudEvent, content_type_of
from shared.keystore import KeyStore
from shared.pseudonym import seal, subject_key
from shared.record_loop import fatal, provenance_headers
from shared.retry import retry_with_backoff, stopped_on_error
from shared.topics import SIGNALS_INBOUND, SIGNALS_INBOUND_DLQ

log = structlog.get_logger(__name__)
SUBMITTED_TYPE = "nl.schakel.signal.submitted.v1"
GROUP_ID = "schakel-intake"
SEALED_HEADER = "schakel-value-sealed"


def dead_letter_value(raw: bytes, *, sealing_key: str, topic: str, partition: int, offset: int) -> bytes:
    """A rejected record no child can be found in, sealed with the sealing key (dead letters carry no clear text)."""
    context = f"{topic}:{partition}:{offset}"
    return seal(base64.b64encode(raw).decode(), key=sealing_key, context=context).encode()


def subject_of_raw(raw: bytes, *, pseudonym_secret: str) -> str | None:
    """The subject pseudonym of a rejected record, when its identifiers can be read (whether valid or not)."""
    try:
        document = fastjson.loads(raw)
        subject = document["data"]["subject"]
        bsn, brin, pupil = (subject.get(name) for name in ("bsn", "school_brin", "pupil_ref"))
        text = [v if isinstance(v, str) and v else None for v in (bsn, brin, pupil)]
        return subject_key(secret=pseudonym_secret, bsn=text[0], school_brin=text[1], pupil_ref=text[2])
    except (ValueError, RecursionError, KeyError, TypeError, AttributeError):
        return None


DEAD_LETTER_FIELD = "inbound_record"


async def child_dead_letter_value(raw: bytes, *, keys: KeyStore, subject: str, topic: str, partition: int,
                                  offset: int) -> bytes:
    """A rejected record about a known child, encrypted under a key of that child (erased with the child)."""
    context = f"{topic}:{partition}:{offset}"
    token = await keys.encrypt(base64.b64encode(raw).decode(), subject=subject, kid=f"inbound:{context}",
                               event_id=context, field=DEAD_LETTER_FIELD)
    return token.encode()


class InboundConsumer:
    """Reads signals.inbound with manual commits: a record's offset is committed only after its output is acked."""

    def __init__(
        self, intake: Intake, *, topic: str = SIGNALS_INBOUND.name, dlq_topic: str = SIGNALS_INBOUND_DLQ.name
    ) -> None:
        self.intake = intake
        self.settings = intake.settings
        self.topic = topic
        self.dlq_topic = dlq_topic
        self.running = False
        self.processed: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._master = self.settings.inbound_signing_secret.get_secret_value()

    async def start(self) -> None:
        """Begin consuming in the background."""
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop consuming; whatever was not committed is read again by the next owner."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._consumer.stop(), timeout=5)

    async def _connect(self) -> AIOKafkaConsumer:
        async def attempt() -> AIOKafkaConsumer:
            consumer = AIOKafkaConsumer(
                self.topic, bootstrap_servers=self.settings.kafka_bootstrap, group_id=GROUP_ID,
                enable_auto_commit=False, auto_offset_reset="earliest", client_id="schakel-intake-inbound",
                max_poll_records=100, fetch_max_wait_ms=200,
            )
            async with stopped_on_error(consumer):
                await consumer.start()
            return consumer

        return await retry_with_backoff(attempt, event="inbound_not_reachable", errors=(KafkaError,))

    async def _run(self) -> None:
        consumer = self._consumer = await self._connect()
        self.running = True
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                for record in records:
                    await self._until_written(record)
                    self.processed[tp] = record.offset
                await self._commit(consumer, tp, records[-1].offset + 1)
            self._update_lag(consumer)

    async def _until_written(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """Handle one record; while Kafka is away, retry the same record (never skip, never commit past it)."""
        delay = 0.5
        while True:
            try:
                await self.handle(record)
                return
            except BrokerUnavailable:
                log.warning("inbound_output_not_acknowledged", offset=record.offset, retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            except Exception as exc:  # a bug: crash so the supervisor restarts, do not skip
                fatal(exc)

    async def _commit(self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> None:
        delay = 0.5
        while True:
            try:
                await consumer.commit({tp: offset})
                return
            except KafkaError as exc:
                if not consumer.assignment() or tp not in consumer.assignment():
                    # Rebalanced away: the new owner reads these records again; the claims make that harmless.
                    log.warning("inbound_commit_after_revoke", error=type(exc).__name__)
                    return
                log.warning("inbound_commit_failed", error=type(exc).__name__, retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _update_lag(self, consumer: AIOKafkaConsumer) -> None:
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            done = self.processed.get(tp)
            lag = highwater - (done + 1) if done is not None else highwater
            self.intake.metrics.hop.lag.labels(topic=tp.topic, partition=str(tp.partition)).set(max(lag, 0))

    async def handle(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """Accept or dead-letter one record; BrokerUnavailable when the outcome could not be written."""
        started = time.perf_counter()
        metrics = self.intake.metrics
        metrics.hop.consumed.labels(topic=record.topic).inc()
        outcome, partner_kind = await self._decide(record)
        if isinstance(outcome, Rejected):
            if outcome.status == 503:
                raise BrokerUnavailable(outcome.code)
            await self._dead_letter(record, outcome.code, partner_kind=partner_kind)
        metrics.hop.duration.labels(topic=record.topic).observe(time.perf_counter() - started)

    async def _decide(self, record: ConsumerRecord[bytes, bytes]) -> tuple[Accepted | Rejected, str]:
        outcome, partner_kind = await self._check(record)
        if isinstance(outcome, tuple):
            code, detail = outcome
            return self.intake.reject(partner_kind, _bad(code, detail)), partner_kind
        return outcome, partner_kind

    async def _check(  # noqa: PLR0911 - one early return per way a record is refused
        self, record: ConsumerRecord[bytes, bytes]
    ) -> tuple[Accepted | Rejected | tuple[str, str], str]:
        headers = {name.lower(): value for name, value in (record.headers or ())}
        value = record.value
        if value is None or not value:
            return ("empty_record", "Het bericht is leeg."), "unknown"
        if len(value) > MAX_BODY_BYTES:
            return ("payload_too_large", "Het bericht is groter dan 64 KiB."), "unknown"
        partner_id = _text(headers.get(PARTNER_HEADER))
        if not partner_id:
            return ("missing_partner", f"De header {PARTNER_HEADER} ontbreekt."), "unknown"
        partner = self.intake.municipality.partners.get(partner_id)
        if partner is None:
            return ("unknown_partner", "Onbekende partner."), "unknown"
        key = partner_signing_key(master_secret=self._master, partner_id=partner.id)
        if not verify(value, _text(headers.get(SIGNATURE_HEADER)), signing_key=key):
            return ("bad_signature", "De handtekening klopt niet."), partner.kind
        if "signals:submit" not in partner.scopes:
            return ("forbidden", "Deze partner mag geen signalen indienen."), partner.kind
        content_type = content_type_of(record.headers)
        if content_type is not None and not content_type.lower().startswith("application/cloudevents+json"):
            return ("unsupported_content_type", "Stuur een CloudEvent in de structured mode "
                    "(content-type application/cloudevents+json)."), partner.kind
        try:
            fastjson.loads(value)
        except (ValueError, RecursionError):
            return ("bad_json", "Het bericht is geen geldige JSON."), partner.kind
        try:
            envelope = CloudEvent.model_validate_json(value)
        except ValidationError:
            return ("bad_envelope", "Het bericht is geen geldig CloudEvent."), partner.kind
        if envelope.type != SUBMITTED_TYPE:
            return ("unknown_event_type", f"Verwacht type {SUBMITTED_TYPE}."), partner.kind
        idempotency_key = _text(headers.get(IDEMPOTENCY_HEADER)) or f"cloudevent:{envelope.id}"
        outcome = await self.intake.submit(
            envelope.data, partner=partner, idempotency_key=idempotency_key, channel="kafka",
            wait_s=self.settings.intake_claim_lease_s + self.settings.intake_send_timeout_s,
        )
        return outcome, partner.kind

    async def _dead_letter(self, record: ConsumerRecord[bytes, bytes], code: str, *, partner_kind: str) -> None:
        """Write the sealed record with provenance and wait for the ack (before the offset is committed)."""
        headers = provenance_headers(topic=record.topic, partition=record.partition, offset=record.offset,
                                     code=code, service="intake")
        raw = record.value or b""
        subject = subject_of_raw(raw, pseudonym_secret=self.settings.pseudonym_secret.get_secret_value())
        if subject is None:
            headers.append((SEALED_HEADER, b"v1"))
            value = dead_letter_value(raw, sealing_key=self.settings.sealing_key.get_secret_value(),
                                      topic=record.topic, partition=record.partition, offset=record.offset)
        else:
            headers.append((SEALED_HEADER, b"v2"))
            try:
                value = await child_dead_letter_value(raw, keys=self.intake.keys, subject=subject, topic=record.topic,
                                                      partition=record.partition, offset=record.offset)
            except TimeoutError as exc:
                raise BrokerUnavailable("key store") from exc
        await self.intake.publisher.publish(topic=self.dlq_topic, key=record.key, value=value, headers=headers)
        metrics = self.intake.metrics
        metrics.count_dead_letter(topic=record.topic, reason=code)
        metrics.hop.produced.labels(topic=self.dlq_topic).inc()
        log.warning("record_dead_lettered", topic=record.topic, partition=record.partition, offset=record.offset,
                    code=code)


def _bad(code: str, detail: str) -> Rejected:
    return Rejected(422, code, "Bericht geweigerd", detail)


def _text(raw: Any) -> str | None:
    if raw is None:
        return None
    try:
        return raw.decode() if isinstance(raw, bytes) else str(raw)
    except UnicodeDecodeError:
        return None
