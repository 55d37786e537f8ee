"""`schakel privacy erase|export`: forgetting a child (AVG art. 17) and inzage (art. 15), ADR 0020.

    schakel privacy erase --bsn 123456782 --by "privacy officer J. Jansen"
    schakel privacy erase --subject sk_... | --pupil 12AB:4711
    schakel privacy export --bsn 123456782 > inzage.json

Erase destroys the child's data keys (tombstones on privacy.keys), sends a content-free SubjectErased that every
service acts on, and audits it. Export writes every signal, route, history entry, deadline, e-mail and access
(from the audit log) of that child as JSON; the export is audited too. Both read the secrets from the
environment (SCHAKEL_PSEUDONYM_SECRET, SCHAKEL_MASTER_KEY, SCHAKEL_SEALING_KEY), like the services.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from shared.erasure import Actor, erase
from shared.events import CLOUDEVENT_HEADERS, AuditRecorded, encode_event, make_event, source_urn, utcnow
from shared.keystore import Headers, KeyStore, Send, key_store_for
from shared.pseudonym import subject_key
from shared.settings import Settings
from shared.topics import AUDIT_LOG

T = TypeVar("T")
SOURCE = source_urn("cli")
SUBJECT = re.compile(r"^sk_[0-9a-f]{40}$")


class SubjectError(ValueError):
    """The child was not named in a way Schakel can turn into its pseudonym."""


def resolve_subject(*, secret: str, bsn: str | None = None, pupil: str | None = None,
                    subject: str | None = None) -> str:
    """The child's pseudonym from exactly one of: a BSN, BRIN:pupil number, or the pseudonym itself."""
    given = [v for v in (bsn, pupil, subject) if v]
    if len(given) != 1:
        raise SubjectError("name the child by exactly one of --bsn, --pupil or --subject")
    if bsn:
        if not re.fullmatch(r"[0-9]{8,9}", bsn):
            raise SubjectError("a BSN is 8 or 9 digits")
        return subject_key(secret=secret, bsn=bsn.zfill(9))
    if pupil:
        brin, sep, ref = pupil.partition(":")
        if not sep or not brin or not ref:
            raise SubjectError("--pupil takes BRIN:pupil number, e.g. 12AB:4711")
        return subject_key(secret=secret, school_brin=brin, pupil_ref=ref)
    if not SUBJECT.match(subject or ""):
        raise SubjectError("a subject pseudonym looks like sk_ followed by 40 hex digits")
    return subject or ""


async def with_key_store(settings: Settings, work: Callable[[KeyStore, Send], Awaitable[T]]) -> T:
    """Run `work` with a caught-up key store that writes through an acks=all producer."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True,
                                client_id="schakel-cli-privacy")
    await producer.start()

    async def send(topic: str, key: bytes, value: bytes | None, headers: Headers = ()) -> None:
        await producer.send_and_wait(topic, value=value, key=key, headers=list(headers))

    keys = key_store_for(settings, client_id="schakel-cli-keys", send=send)
    await keys.start()
    try:
        await keys.caught_up(timeout_s=30)
        return await work(keys, send)
    finally:
        await keys.stop()
        await producer.stop()


def _subject(args: argparse.Namespace, settings: Settings) -> str:
    return resolve_subject(secret=settings.pseudonym_secret.get_secret_value(), bsn=args.bsn, pupil=args.pupil,
                           subject=args.subject)


def erase_command(args: argparse.Namespace) -> int:
    """Erase one child; prints the erasure id and how many keys were destroyed (never the BSN)."""
    out = sys.stdout  # looked up when called: pytest and callers may have redirected it
    settings = Settings()
    try:
        subject = _subject(args, settings)
    except SubjectError as exc:
        print(f"schakel privacy erase: {exc}", file=sys.stderr)
        return 2
    actor = Actor(partner_id="operator", on_behalf_of=f"privacy_officer:{args.by}" if args.by else "operator",
                  service="schakel-cli")

    async def work(keys: KeyStore, send: Send) -> Any:
        return await erase(keys=keys, send=send, subject_key=subject, signal_ids=None, reason="request",
                           actor=actor, source=SOURCE)

    erased = asyncio.run(with_key_store(settings, work))
    out.write(json.dumps({"erasure_id": erased.erasure_id, "subject_key": subject,
                          "keys_destroyed": len(erased.signal_ids)}) + "\n")
    return 0


def export_command(args: argparse.Namespace) -> int:
    """Write the inzage document of one child as JSON, and audit the export."""
    out = sys.stdout  # looked up when called: pytest and callers may have redirected it
    from schakel.inzage import assemble

    settings = Settings()
    try:
        subject = _subject(args, settings)
    except SubjectError as exc:
        print(f"schakel privacy export: {exc}", file=sys.stderr)
        return 2

    async def work(keys: KeyStore, send: Send) -> dict[str, Any]:
        holdings = await asyncio.to_thread(read_holdings, settings.kafka_bootstrap, subject)
        opened: dict[tuple[str, str], str | None] = {}
        for token, field_name, signal_id in _tokens(holdings):
            opened[(token, field_name)] = await _open(keys, token, field_name, signal_id)
        document = assemble(subject, holdings, exported_at=utcnow().isoformat(),
                            opener=lambda token, field_name, _signal: opened.get((token, field_name)))
        for signal in document["signals"] or [{"signal_id": None}]:
            audit = AuditRecorded(audit_id=str(uuid.uuid4()), signal_id=signal["signal_id"],
                                  actor_partner_id="operator",
                                  on_behalf_of=f"privacy_officer:{args.by}" if args.by else "operator",
                                  action="inzage_export", outcome="allowed", service="schakel-cli", at=utcnow())
            event = make_event(audit, source=SOURCE, subject=signal["signal_id"], event_id=audit.audit_id)
            await send(AUDIT_LOG.name, (signal["signal_id"] or "").encode(), encode_event(event), CLOUDEVENT_HEADERS)
        return document

    document = asyncio.run(with_key_store(settings, work))
    out.write(json.dumps(document, ensure_ascii=False, indent=2) + "\n")
    print(f"exported {len(document['signals'])} signals", file=sys.stderr)
    return 0


async def _open(keys: KeyStore, token: str, field_name: str, signal_id: str) -> str | None:
    try:
        return await keys.decrypt(token, field=field_name, legacy_context=signal_id)
    except ValueError:
        return None


def _tokens(holdings: Any) -> list[tuple[str, str, str]]:
    tokens = [(r["data"]["summary_sealed"], "summary", r["data"]["signal_id"]) for r in holdings.received
              if r["data"].get("summary_sealed")]
    tokens += [(e["data"]["message_sealed"], "feedback_message", e["data"]["signal_id"])
               for e in holdings.by_topic.get("signals.lifecycle", []) if e["data"].get("message_sealed")]
    return tokens


def read_holdings(bootstrap: str, subject: str) -> Any:
    """Every record about the child, from the topics (a throw-away consumer, no group)."""
    from schakel.inzage import LIFECYCLE_CHANGELOG, SIGNAL_TOPICS, Holdings, decode_all

    received = decode_all(value for key, value in read_records(bootstrap, "signals.received")
                          if key == subject.encode())
    signal_ids = {r["data"]["signal_id"] for r in received}
    holdings = Holdings(received=received)
    for topic in SIGNAL_TOPICS:
        holdings.by_topic[topic] = [e for e in decode_all(v for _, v in read_records(bootstrap, topic))
                                    if e["data"].get("signal_id") in signal_ids]
    holdings.matched = decode_all(v for k, v in read_records(bootstrap, "signals.matched") if k == subject.encode())
    for key, value in read_records(bootstrap, LIFECYCLE_CHANGELOG):
        signal_id = (key or b"").decode(errors="replace")
        if signal_id in signal_ids:
            try:
                holdings.state[signal_id] = json.loads(value) if value is not None else {}
            except ValueError:
                continue
    return holdings


def read_records(bootstrap: str, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    """(key, value) of every record a topic holds now, all partitions, oldest first per partition."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                             consumer_timeout_ms=2000)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            return []
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        records: list[tuple[bytes | None, bytes | None]] = []
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            batch = consumer.poll(timeout_ms=1000)
            if not batch:
                break
            for tp, polled in batch.items():
                records.extend((r.key, r.value) for r in polled if r.offset < ends[tp])
        return records
    finally:
        consumer.close()


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `schakel privacy erase` and `schakel privacy export`."""
    privacy = sub.add_parser("privacy", help="erase a child's data (AVG art. 17) or export it (inzage, art. 15)")
    actions = privacy.add_subparsers(dest="privacy_action", required=True)
    for name, func, text in (("erase", erase_command, "destroy a child's keys and tell every service"),
                             ("export", export_command, "write all Schakel holds about a child as JSON")):
        command = actions.add_parser(name, help=text)
        who = command.add_mutually_exclusive_group(required=True)
        who.add_argument("--bsn", help="the child's BSN (never stored, only turned into its pseudonym)")
        who.add_argument("--pupil", help="BRIN:pupil number, for a child reported without BSN")
        who.add_argument("--subject", help="the child's pseudonym (sk_...)")
        command.add_argument("--by", help="who asks (recorded in the audit log), e.g. the privacy officer's role")
        command.set_defaults(func=func)
