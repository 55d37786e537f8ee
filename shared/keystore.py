"""The key store: every child's data keys, wrapped, on the compacted topic `privacy.keys` (ADR 0020).

The one module that gives a service the data key it may use; nothing else touches keys. A record's key is
`<subject pseudonym>/<key id>` (the key id is the signal id), its value the wrapped data key; erasure writes
a tombstone per key. Each process follows the topic from the beginning into memory — the ring in this module,
never a RocksDB table or a changelog — so a tombstoned key is gone from every process once it read the
tombstone, and cannot come back after a restart. The topic's compaction is bounded (shared.topics.PRIVACY_KEYS)
so the wrapped key and then its tombstone leave the broker's disks too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from aiokafka import TopicPartition

from shared.events import JSON_HEADERS
from shared.pseudonym import unseal
from shared.retry import retry_with_backoff, stopped_on_error
from shared.settings import Settings
from shared.subject_crypto import (
    UndecryptableField,
    decrypt_field,
    encrypt_field,
    is_token,
    master_key_from,
    new_data_key,
    token_header,
    unwrap_key,
    wrap_key,
)
from shared.topics import PRIVACY_KEYS

log = structlog.get_logger(__name__)
Headers = tuple[tuple[str, bytes], ...]


class Send(Protocol):
    """Produce one record and wait for the broker's ack: topic, key, value (None: a tombstone), headers."""

    def __call__(self, topic: str, key: bytes, value: bytes | None, headers: Headers = ()) -> Awaitable[None]: ...
HEARTBEAT_KEY = b"~heartbeat"
FETCH_MAX_WAIT_MS = 250
FETCH_MIN_BYTES = 256 * 1024


def record_key(subject: str, kid: str) -> bytes:
    """The topic key of one data key."""
    return f"{subject}/{kid}".encode()


def parse_record_key(raw: bytes) -> tuple[str, str] | None:
    """(subject, key id) of a topic key; None for anything else (the heartbeat)."""
    subject, sep, kid = raw.decode(errors="replace").partition("/")
    return (subject, kid) if sep and subject and kid else None


def key_record_value(*, subject: str, kid: str, wrapped: str, created_at: float) -> bytes:
    """The value stored for one data key: wrapped, never in clear."""
    return json.dumps({"subject": subject, "kid": kid, "wrapped": wrapped, "created_at": created_at}).encode()


@dataclass
class KeyRing:
    """The wrapped data keys read so far, by subject and key id (pure state, fed record by record)."""

    wrapped: dict[str, dict[str, str]] = field(default_factory=dict)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One record of the topic, in offset order: a key, or a tombstone that removes it."""
        parsed = parse_record_key(key or b"")
        if parsed is None:
            return
        subject, kid = parsed
        if value is None:
            self.drop(subject, [kid])
            return
        try:
            wrapped = json.loads(value)["wrapped"]
        except (ValueError, KeyError, TypeError):
            log.warning("key_record_unreadable", kid_length=len(kid))
            return
        self.wrapped.setdefault(subject, {})[kid] = wrapped

    def drop(self, subject: str, kids: Iterable[str] | None = None) -> list[str]:
        """Forget keys of a subject (all when kids is None); returns the key ids forgotten."""
        ring = self.wrapped.get(subject, {})
        gone = [kid for kid in (list(ring) if kids is None else kids) if ring.pop(kid, None) is not None]
        if not ring:
            self.wrapped.pop(subject, None)
        return gone

    def get(self, subject: str, kid: str) -> str | None:
        """The wrapped key, if the ring holds it."""
        return self.wrapped.get(subject, {}).get(kid)

    def kids_of(self, subject: str) -> list[str]:
        """Every key id of a subject still held."""
        return sorted(self.wrapped.get(subject, {}))


def open_token(token: str, *, ring: KeyRing, master_key: bytes, field: str) -> str | None:
    """A per-child token opened with a ring's keys; None when its key is not in the ring (erased)."""
    header = token_header(token)
    wrapped = ring.get(header.subject, header.kid)
    if wrapped is None:
        return None
    data_key = unwrap_key(wrapped, master_key=master_key, subject=header.subject, kid=header.kid)
    return decrypt_field(token, data_key=data_key, field=field)


class KeyStore:
    """Follows `privacy.keys` into a ring; creates, hands out and erases data keys (the only holder of keys)."""

    def __init__(self, *, bootstrap: str, master_secret: str, legacy_sealing_key: str, send: Send | None,
                 client_id: str, topic: str = PRIVACY_KEYS.name) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.client_id = client_id
        self.ring = KeyRing()
        self._master = master_key_from(master_secret)
        self._legacy = legacy_sealing_key
        self._send = send
        self._unwrapped: dict[tuple[str, str], bytes] = {}
        self._position = 0
        self._advanced = asyncio.Event()
        self._consumer: Any = None
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._tp = TopicPartition(topic, 0)

    # -- following the topic -------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the store follows the topic (readiness)."""
        return self._consumer is not None

    async def start(self) -> None:
        """Connect (retrying while Kafka is away) and follow the topic from its beginning, in the background."""
        self._task = asyncio.create_task(self._run())

    async def _connect(self) -> Any:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.errors import KafkaError

        async def attempt() -> AIOKafkaConsumer:
            # Keys are needed seconds after they are written, not milliseconds: the broker answers a fetch
            # when it has FETCH_MIN_BYTES or after FETCH_MAX_WAIT_MS, not for every key (a miss waits in
            # caught_up()). One fetch per key and process was a fifth of the chain's requests to the broker.
            consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, group_id=None,
                                        client_id=self.client_id, fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
                                        fetch_min_bytes=FETCH_MIN_BYTES)
            async with stopped_on_error(consumer):
                await consumer.start()
                consumer.assign([self._tp])
                await consumer.seek_to_beginning(self._tp)
                await consumer.end_offsets([self._tp])
            return consumer

        return await retry_with_backoff(attempt, event="key_store_not_reachable", errors=(KafkaError,))

    async def _run(self) -> None:
        consumer = await self._connect()
        self._consumer = consumer
        self._connected.set()
        await self._follow(consumer)

    async def stop(self) -> None:
        """Stop following; the ring and the unwrapped keys are dropped with the process."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._consumer.stop(), timeout=5)
        self._unwrapped.clear()

    async def _follow(self, consumer: Any) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    self.ring.apply(record.key, record.value)
                    if record.value is None:
                        parsed = parse_record_key(record.key or b"")
                        if parsed is not None:
                            self._unwrapped.pop(parsed, None)
                    self._position = record.offset + 1
            position = await consumer.position(self._tp)
            self._position = max(self._position, position)
            self._advanced.set()
            self._advanced = asyncio.Event()

    async def caught_up(self, timeout_s: float = 10.0) -> None:
        """Wait until every key record written before this call is in the ring (TimeoutError otherwise)."""
        deadline = time.monotonic() + timeout_s
        if self._consumer is None:
            await asyncio.wait_for(self._connected.wait(), timeout=timeout_s)
        end = (await self._consumer.end_offsets([self._tp]))[self._tp]
        while self._position < end:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the key store did not catch up")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._advanced.wait(), timeout=remaining)

    # -- keys ----------------------------------------------------------------------------------------------

    def _data_key_held(self, subject: str, kid: str) -> bytes | None:
        slot = (subject, kid)
        if slot in self._unwrapped:
            return self._unwrapped[slot]
        wrapped = self.ring.get(subject, kid)
        if wrapped is None:
            return None
        key = unwrap_key(wrapped, master_key=self._master, subject=subject, kid=kid)
        self._unwrapped[slot] = key
        return key

    async def data_key(self, subject: str, kid: str) -> bytes | None:
        """The data key, or None when it does not exist (never made, or erased)."""
        key = self._data_key_held(subject, kid)
        if key is None:
            await self.caught_up()
            key = self._data_key_held(subject, kid)
        return key

    async def data_key_for_new(self, subject: str, kid: str, *, may_exist: bool) -> bytes:
        """The key for a new record: the existing one when a retry already made it, else a new one, stored first."""
        existing = await self.data_key(subject, kid) if may_exist else self._data_key_held(subject, kid)
        if existing is not None:
            return existing
        if self._send is None:
            raise RuntimeError("this key store cannot write keys")
        key = new_data_key()
        wrapped = wrap_key(key, master_key=self._master, subject=subject, kid=kid)
        value = key_record_value(subject=subject, kid=kid, wrapped=wrapped, created_at=time.time())
        await self._send(self.topic, record_key(subject, kid), value, JSON_HEADERS)
        self.ring.wrapped.setdefault(subject, {})[kid] = wrapped
        self._unwrapped[(subject, kid)] = key
        return key

    async def erase(self, subject: str, kids: Iterable[str] | None = None) -> list[str]:
        """Tombstone a subject's keys (all, or the given key ids) and forget them here; the ids erased."""
        if self._send is None:
            raise RuntimeError("this key store cannot write keys")
        await self.caught_up()
        held = self.ring.kids_of(subject)
        targets = held if kids is None else sorted(set(kids))
        for kid in targets:
            await self._send(self.topic, record_key(subject, kid), None, JSON_HEADERS)
        self.forget(subject, targets)
        return [kid for kid in targets if kid in held]

    def forget(self, subject: str, kids: Iterable[str] | None = None) -> None:
        """Drop keys from this process's memory (a SubjectErased seen before the tombstones were read)."""
        gone = self.ring.drop(subject, kids)
        for kid in gone if kids is None else kids:
            self._unwrapped.pop((subject, kid), None)
        if kids is None:
            for slot in [s for s in self._unwrapped if s[0] == subject]:
                self._unwrapped.pop(slot, None)

    def kids_of(self, subject: str) -> list[str]:
        """The key ids the ring holds for a subject (its signals, and records of no signal yet)."""
        return self.ring.kids_of(subject)

    async def heartbeat(self) -> None:
        """A content-free record so the active segment rolls and compaction can reach the last tombstones."""
        if self._send is not None:
            await self._send(self.topic, HEARTBEAT_KEY, b"{}", JSON_HEADERS)

    # -- fields --------------------------------------------------------------------------------------------

    async def encrypt(self, text: str, *, subject: str, kid: str, event_id: str, field: str,
                      may_exist: bool = True) -> str:
        """Encrypt a personal field under the key of (subject, kid), made when needed."""
        key = await self.data_key_for_new(subject, kid, may_exist=may_exist)
        return encrypt_field(text, data_key=key, subject=subject, kid=kid, event_id=event_id, field=field)

    async def decrypt(self, token: str, *, field: str, legacy_context: str | None = None) -> str | None:
        """The text of a field; None when its key is gone (erased). Legacy v1 tokens use the old sealing key."""
        if not is_token(token):
            if legacy_context is None:
                raise UndecryptableField("a legacy token needs its context")
            return unseal(token, key=self._legacy, context=legacy_context)
        header = token_header(token)
        key = await self.data_key(header.subject, header.kid)
        if key is None:
            return None
        return decrypt_field(token, data_key=key, field=field)


def key_store_for(settings: Settings, *, client_id: str, send: Send | None) -> KeyStore:
    """The key store of a process, from its settings (writing through `send` when given)."""
    return KeyStore(bootstrap=settings.kafka_bootstrap, master_secret=settings.master_key.get_secret_value(),
                    legacy_sealing_key=settings.sealing_key.get_secret_value(), send=send, client_id=client_id)
