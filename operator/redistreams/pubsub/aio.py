"""asyncio publisher and subscriber over Redis Streams, wire-compatible with the Go driver."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
import time
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import redis.asyncio as aredis
from redis.exceptions import NoPermissionError, NoScriptError, ResponseError

from ..connection import redact
from .link import TRANSIENT, Command, Link, make_pool, pool_like
from .urls import SubscriptionURL, TopicURL, parse_subscription_url, parse_topic_url
from .wire import BODY, HEADERS, decode_fields, encode_body, encode_headers

log = logging.getLogger("redistreams.pubsub")

# Nacked entries get this idle time so any consumer's reclaim takes them at once,
# including Go consumers with the driver's default of 30 minutes.
_NACK_IDLE_MS = 30 * 60 * 1000
_MAX_TRIP = 1000  # commands or IDs per round trip


class PubSubError(Exception):
    """Opening, publishing or subscribing failed for a reason retrying will not fix."""


class PublishError(PubSubError):
    """Some messages of a batch were not stored; ``ids`` has None where a send failed."""

    def __init__(self, message: str, ids: list[str | None]) -> None:
        super().__init__(message)
        self.ids = ids


class ConsumerInUseError(PubSubError):
    pass


class SubscriptionClosed(PubSubError):
    pass


class GroupDeletedError(PubSubError):
    """The consumer group was deleted while its stream kept its history (``XGROUP
    DESTROY``, a group removed by redistreams). Not re-created: that would replay every
    entry the group had already acknowledged. Raised by ``receive`` from then on."""

    def __init__(self, message: str, stream: str, group: str) -> None:
        super().__init__(message)
        self.stream, self.group = stream, group


class AcknowledgeError(PubSubError):
    """Redis refused acknowledgements, nacks or lease renewals (e.g. the ACL user lacks
    XACK or XCLAIM). The entries concerned stay pending and are delivered again; ``ids``
    lists those whose ack or nack was refused. Raised by ``receive`` and ``flush`` from
    then on: handing out messages that cannot be acknowledged would only multiply
    redeliveries. Grant the command and reopen the subscription."""

    def __init__(self, message: str, command: str, ids: list[str]) -> None:
        super().__init__(message)
        self.command, self.ids = command, ids


class DeadLetterError(PubSubError):
    """Entries could not be copied to the dead-letter stream; they stay pending.

    ``ids`` maps each entry ID to Redis' error (e.g. no XADD permission, a dead-letter
    key holding another type). Kept in ``Subscription.dead_letter_error`` until a later
    move succeeds; receiving goes on meanwhile.
    """

    def __init__(self, message: str, stream: str, ids: dict[str, str]) -> None:
        super().__init__(message)
        self.stream, self.ids = stream, ids


@dataclass(slots=True)
class Message:
    """A message: raw body bytes and string metadata (the Go driver's ``headers``)."""

    body: bytes
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if type(self.body) is not bytes:
            self.body = encode_body(self.body)
        if type(self.metadata) is not dict:
            self.metadata = dict(self.metadata or {})


@dataclass(slots=True, eq=False)
class ReceivedMessage(Message):
    """A delivered message; acknowledge it (or nack it) through its subscription."""

    id: str = ""
    redelivered: bool = False  # taken from a pending list rather than read new
    problem: str | None = None  # set when the entry was not in the driver's format
    subscription: Subscription | None = field(default=None, repr=False)

    def ack(self) -> None:
        assert self.subscription is not None
        self.subscription.ack(self)

    def nack(self) -> None:
        assert self.subscription is not None
        self.subscription.nack(self)


def _redis_url(explicit: str | None, what: str, url: str) -> str:
    value = explicit or os.environ.get("REDIS_URL")
    if not value:
        raise PubSubError(f"open {what} {redact(url)}: REDIS_URL environment variable not set")
    return value


def _pool_for(client: aredis.Redis | None, redis_url: str | None, what: str, url: str) -> aredis.ConnectionPool:
    if client is not None:
        return pool_like(client.connection_pool.connection_class, client.connection_pool.connection_kwargs)
    return make_pool(_redis_url(redis_url, what, url))


async def _backoff(attempt: int) -> None:
    await asyncio.sleep(min(2.0, 0.05 * 2 ** attempt) * (0.5 + random.random() / 2))


_ERROR_LOG_INTERVAL = 60.0  # seconds between two logs of one recurring failure


class _Throttled:
    """Logs a recurring failure at most once per interval, so a permanent
    misconfiguration reports itself without flooding the logs."""

    def __init__(self, interval: float = _ERROR_LOG_INTERVAL) -> None:
        self.interval = interval
        self._next = 0.0
        self._quiet = 0

    def error(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now < self._next:
            self._quiet += 1
            return
        if self._quiet:
            message, args = message + " (%d more failures since the last report)", (*args, self._quiet)
        log.error(message, *args)
        self._quiet, self._next = 0, now + self.interval


def _id_key(entry_id: str | bytes) -> tuple[int, int]:
    """An entry ID as a comparable pair."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


# ---------------------------------------------------------------------------------------
# Publishing


@dataclass(slots=True)
class _Send:
    commands: list[Command]
    future: asyncio.Future[list[str]]


class Topic:
    """Publishes to one stream. Concurrent ``send`` calls share round trips.

    Each message is one ``XADD <stream> [MAXLEN n] * headers <json> body <bytes>``, as
    the Go driver writes it. A connection failure is retried for ``retry_for`` seconds;
    a retried XADD may already have been stored, so delivery is at least once.
    """

    def __init__(self, spec: TopicURL, pool: aredis.ConnectionPool, *, timeout: float = 10.0,
                 retry_for: float = 10.0, max_batch: int = _MAX_TRIP) -> None:
        self.stream = spec.stream
        self.maxlen = spec.maxlen
        self._pool = pool
        self._link = Link(pool, timeout, name="redistreams-pub")
        self._retry_for = retry_for
        self._max_batch = max_batch
        self._queue: deque[_Send] = deque()
        self._flusher: asyncio.Task[None] | None = None
        self._busy = False  # a round trip is in flight (by a sender or the flusher)
        self._closed = False
        prefix: list[Any] = ["XADD", spec.stream]
        if spec.maxlen:
            # go-redis sends an exact MAXLEN: it can trim entries no group has read yet.
            prefix += ["MAXLEN", spec.maxlen]
            log.warning("topic %s: maxlen=%d trims exactly on every send and can drop entries consumer groups "
                        "have not read or acknowledged; prefer a Topic retention managed by redistreams",
                        spec.stream, spec.maxlen)
        self._prefix = tuple(prefix) + ("*",)

    def _command(self, message: Message | bytes | str) -> Command:
        if not isinstance(message, Message):
            message = Message(encode_body(message))  # Message's body is bytes: converted as it would
        return self._prefix + (HEADERS, encode_headers(message.metadata), BODY, message.body)

    async def send(self, message: Message | bytes | str) -> str:
        """Store one message; returns its entry ID."""
        (entry_id,) = await self._submit([self._command(message)])
        return entry_id

    async def send_batch(self, messages: Iterable[Message | bytes | str]) -> list[str]:
        """Store messages in order, pipelined; returns their entry IDs."""
        commands = [self._command(m) for m in messages]
        return await self._submit(commands) if commands else []

    async def _submit(self, commands: list[Command]) -> list[str]:
        if self._closed:
            raise PubSubError(f"topic {self.stream} is shut down")
        future: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Send(commands, future))
        if not self._busy:
            # Nothing in flight: this sender makes the round trip itself (no task, no
            # extra loop turn); whatever queues up meanwhile goes in one background trip.
            self._busy = True
            try:
                await self._send_one_batch()
            finally:
                self._busy = False
                if self._queue:
                    self._busy = True
                    self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._queue:
                await self._send_one_batch()
        finally:
            self._busy = False
            self._flusher = None

    async def _send_one_batch(self) -> None:
        batch = [self._queue.popleft()]
        size = len(batch[0].commands)
        while self._queue and size + len(self._queue[0].commands) <= self._max_batch:
            size += len(self._queue[0].commands)
            batch.append(self._queue.popleft())
        commands = [c for item in batch for c in item.commands]
        try:
            replies = await self._round_trip(commands)
        except ResponseError as exc:  # refused while connecting (e.g. SELECT): nothing was sent
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(PublishError(
                        f"publish to {self.stream}: no message stored: {exc}", [None] * len(item.commands)))
            return
        except Exception as exc:  # noqa: BLE001 - handed to every waiting sender
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        except BaseException:
            # The sender making this trip was cancelled: the others must not wait forever.
            interrupted = PubSubError(f"publish to {self.stream} interrupted; the messages may or may not be stored")
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(interrupted)
                    item.future.exception()  # retrieved: the cancelled sender never awaits its own
            raise
        offset = 0
        for item in batch:
            mine = replies[offset:offset + len(item.commands)]
            offset += len(item.commands)
            if item.future.done():
                continue
            errors = [r for r in mine if isinstance(r, ResponseError)]
            if errors:
                ids = [None if isinstance(r, ResponseError) else r.decode() for r in mine]
                item.future.set_exception(PublishError(
                    f"publish to {self.stream}: {len(errors)} of {len(mine)} messages not stored: {errors[0]}", ids))
            else:
                item.future.set_result([r.decode() for r in mine])

    async def _round_trip(self, commands: list[Command]) -> list[Any]:
        deadline = time.monotonic() + self._retry_for
        attempt = 0
        while True:
            try:
                return await self._link.call(commands)
            except TRANSIENT as exc:
                if time.monotonic() >= deadline or self._closed:
                    raise
                log.warning("topic %s: %s; retrying", self.stream, exc)
                await _backoff(attempt)
                attempt += 1

    async def shutdown(self) -> None:
        """Wait for messages being sent, then close the connection."""
        self._closed = True
        while self._busy or self._queue:
            if self._flusher is not None:
                await asyncio.shield(self._flusher)
            else:
                await asyncio.sleep(0.005)
        await self._link.close()
        await self._pool.disconnect()

    async def __aenter__(self) -> Topic:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()


async def open_topic(url: str, *, redis_url: str | None = None, client: aredis.Redis | None = None,
                     timeout: float = 10.0, retry_for: float = 10.0) -> Topic:
    """Open ``redis://<stream key>[?maxlen=N]`` on ``redis_url`` (default ``REDIS_URL``)."""
    spec = parse_topic_url(url)
    return Topic(spec, _pool_for(client, redis_url, "topic", url), timeout=timeout, retry_for=retry_for)


# ---------------------------------------------------------------------------------------
# Subscribing

_in_use: set[tuple[str, str, str, str]] = set()

_SCRIPT = resources.files(__package__).joinpath("lua/deliveries.lua").read_text()
_SCRIPT_SHA = hashlib.sha1(_SCRIPT.encode()).hexdigest()


@dataclass
class DeadLetter:
    """Move an entry to ``stream`` (and acknowledge it) once it was delivered ``max_deliveries`` times.

    The move is one Lua script, so the stream must be in the same hash slot as the topic
    on Redis Cluster (``{orders}`` and ``{orders}.dead``). The entry is acknowledged only
    once its copy is stored: when the copy fails (no XADD permission, the key holds
    another type) it stays pending, is not handed to the application, and the failure
    shows in ``Subscription.dead_letter_error``, ``stats["dead_letter_failed"]`` and an
    error log (at most once a minute).
    """

    stream: str
    max_deliveries: int = 5

    def __post_init__(self) -> None:
        if not self.stream:
            raise ValueError("dead-letter stream name is empty")
        if self.max_deliveries < 1:
            raise ValueError("max_deliveries must be at least 1")


@dataclass(frozen=True, slots=True)
class _StreamState:
    """What XINFO STREAM tells about a stream (entries_added is None before Redis 7)."""

    last_id: tuple[int, int]
    length: int
    entries_added: int | None
    first_id: tuple[int, int] | None

    @classmethod
    def parse(cls, reply: list[Any]) -> _StreamState:
        fields = dict(zip(reply[::2], reply[1::2]))
        first = fields.get(b"first-entry")
        added = fields.get(b"entries-added")
        return cls(last_id=_id_key(fields[b"last-generated-id"]), length=int(fields[b"length"]),
                   entries_added=None if added is None else int(added),
                   first_id=_id_key(first[0]) if first else None)


def _group_gone(error: str) -> bool:
    """NOGROUP: the group (or its stream) is missing; UNBLOCKED: the stream was deleted
    under a blocked read (Redis 7+). Scripts' errors may carry it after a prefix (6.2)."""
    return any(error.startswith(code) or f": {code} " in error for code in ("NOGROUP", "UNBLOCKED"))


class Subscription:
    """Receives from one consumer group as one named consumer, at least once.

    Order of work: this consumer's own pending entries once at start (it crashed or was
    restarted before acknowledging), then idle entries of other consumers (dead ones)
    reclaimed with a cursor so none is starved, then new entries read with a bounded
    ``BLOCK`` so shutdown and deadlines work. Acknowledgements and nacks are batched on
    a second connection and never wait behind a blocking read.

    After a connection failure during a read, the own pending entries are read again:
    Redis may have delivered entries whose reply was lost, and they would otherwise wait
    for ``autoclaim``. Entries this subscription handed out and that are not acknowledged
    yet (or whose ack or nack is on its way) are not handed out a second time.

    A missing group is re-created from ``0`` only when its stream was reset (Redis
    restarted without persistence, FLUSHALL, the key deleted), so nothing published
    since is missed. The subscription remembers H, the highest entry ID it knows the
    stream held (the last ID at open, from XINFO STREAM when permitted, and every ID it
    received), and the stream's entries-added counter at open. The stream counts as
    reset when its key is gone, when its last ID is below H, or when it holds no entry
    up to H although it never lost an entry (entries-added equals its length) or counts
    fewer entries ever added than at open. Otherwise the group was deleted on purpose
    while the stream kept its history (XGROUP DESTROY, redistreams' deletionPolicy
    Delete): re-creating it from ``0`` would replay everything the group acknowledged,
    so ``receive`` raises ``GroupDeletedError`` instead, as it does when H is unknown.

    Consumer names must be unique: two subscriptions with one name share a pending list
    and get each other's redeliveries. Opening the same name twice in one process fails.
    """

    def __init__(self, spec: SubscriptionURL, pool: aredis.ConnectionPool, *, server: str,
                 batch_size: int = 100, block: float = 2.0, timeout: float = 10.0,
                 dead_letter: DeadLetter | None = None, create_group: bool = True,
                 reclaim_interval: float | None = None) -> None:
        self.stream, self.group, self.consumer = spec.stream, spec.group, spec.consumer
        self.spec = spec
        self.dead_letter = dead_letter
        self.batch_size = batch_size
        self.block = block
        self.timeout = timeout
        self.stats: Counter[str] = Counter()
        # The latest failure to move entries to the dead-letter stream; None once a move works again.
        self.dead_letter_error: DeadLetterError | None = None
        self._server = server
        self._pool = pool
        self._create_group = create_group
        self._read = Link(pool, timeout, name="redistreams-sub")
        self._control = Link(pool, timeout, name="redistreams-sub")
        self._autoclaim_ms = max(1, int(spec.autoclaim * 1000))
        self._reclaim_interval = reclaim_interval if reclaim_interval is not None else min(5.0, spec.autoclaim)
        self._renew_after = max(0.1, spec.autoclaim / 3)
        self._buffer: deque[ReceivedMessage] = deque()
        self._fetch_lock = asyncio.Lock()
        self._outstanding: dict[str, float] = {}  # delivered, not yet acknowledged -> lease taken
        self._acking: dict[str, float] = {}  # acknowledged, not yet confirmed by Redis -> lease taken
        self._refused: dict[str, None] = {}  # acks and nacks Redis refused (in order): still pending
        self._ack_failure: AcknowledgeError | None = None
        self._acks: list[str] = []
        self._nacks: list[str] = []
        self._malformed: list[str] = []  # entries to move to the dead-letter stream
        self._settled_while_draining: set[str] = set()  # see _held()
        self._control_task: asyncio.Task[None] | None = None
        self._renew_task: asyncio.Task[None] | None = None
        self._drain_from: str | None = "0"  # own pending list still to read; None when done
        self._reclaim_from = "0-0"
        self._next_reclaim = 0.0
        self._high: tuple[int, int] | None = None  # highest entry ID known to have been in the stream
        self._added_seen: int | None = None  # the stream's entries-added counter when last looked at
        self._group_known = False  # the group existed (created, found or read from) since it was last lost
        self._create_from = spec.start  # where a group never seen is created; "0" once its stream was reset
        self._failure: PubSubError | None = None  # raised by every receive from then on
        self._dead_letter_log = _Throttled()
        self._refusal_log = _Throttled()
        self._create_refused = ""  # why XGROUP CREATE was refused, for the waiting message
        self._evalsha = True  # False once EVALSHA was refused: EVAL alone is enough
        self._closed = False
        self._key = (server, spec.stream, spec.group, spec.consumer)
        self._loop = asyncio.get_running_loop()

    # -- opening ---------------------------------------------------------------------

    async def _open(self) -> None:
        if self._key in _in_use:
            raise ConsumerInUseError(
                f'consumer "{self.consumer}" of group "{self.group}" on topic "{self.stream}" is already used by an '
                f"open subscription in this process; consumer names must be unique (per process and per pod): "
                f"two subscriptions with one name share a pending list and receive each other's redeliveries")
        _in_use.add(self._key)
        try:
            if self._create_group:
                await self._ensure_group(self.spec.start)
            await self._observe()
            # Consumers otherwise appear only with their first delivery; make this one visible now.
            create = ("XGROUP", "CREATECONSUMER", self.stream, self.group, self.consumer)
            reply = (await self._control.call([create]))[0]
            if isinstance(reply, ResponseError):
                log.debug("subscription %s: XGROUP CREATECONSUMER: %s", self._name, reply)
            if not self.spec.noack:
                self._renew_task = asyncio.create_task(self._renew_leases())
        except ResponseError as exc:  # refused while connecting (e.g. SELECT)
            _in_use.discard(self._key)
            await self._pool.disconnect()
            raise PubSubError(f"open subscription {self._name}: {exc}") from None
        except BaseException:
            _in_use.discard(self._key)
            await self._pool.disconnect()
            raise

    async def _ensure_group(self, start: str) -> bool | None:
        """XGROUP CREATE … MKSTREAM like the Go driver. True: created, False: it existed,
        None: not allowed to create it."""
        reply = (await self._control.call([("XGROUP", "CREATE", self.stream, self.group, start, "MKSTREAM")]))[0]
        if not isinstance(reply, ResponseError):
            self._group_known = True
            return True
        text = str(reply)
        if text.startswith("BUSYGROUP"):
            self._group_known = True
            return False
        if isinstance(reply, NoPermissionError):  # redis-py strips the NOPERM code from the text
            # Allowed to read but not to create: fine when the group was provisioned
            # (the operator or `redistreams apply`); a missing group shows up at the first read.
            log.debug("subscription %s: cannot create the group (%s); assuming it exists", self._name, text)
            self._create_refused = f" (creating it was refused: {text})"
            return None
        if text.startswith("WRONGTYPE"):
            raise PubSubError(f"subscription {self._name}: key {self.stream!r} exists and is not a stream")
        raise PubSubError(f"subscription {self._name}: creating group {self.group!r} at {start!r}: {text}")

    async def _stream_state(self) -> tuple[bool | None, _StreamState | None]:
        """Whether the stream key exists (None: cannot tell) and, when permitted, its XINFO."""
        reply = (await self._control.call([("XINFO", "STREAM", self.stream)]))[0]
        if not isinstance(reply, ResponseError):
            return True, _StreamState.parse(reply)
        text = str(reply)
        if text.startswith("WRONGTYPE"):
            raise PubSubError(f"subscription {self._name}: key {self.stream!r} exists and is not a stream")
        if "no such key" in text.lower():
            return False, None
        log.debug("subscription %s: XINFO STREAM: %s", self._name, text)
        reply = (await self._control.call([("EXISTS", self.stream)]))[0]
        return (None if isinstance(reply, ResponseError) else bool(reply)), None

    async def _observe(self) -> None:
        """Remember what the stream shows now (its last ID and entries-added counter): the
        baseline that later tells a reset stream from a deleted group."""
        _, state = await self._stream_state()
        if state is not None:
            self._note_high(state.last_id)
            self._added_seen = state.entries_added

    def _note_high(self, key: tuple[int, int]) -> None:
        if self._high is None or key > self._high:
            self._high = key

    @property
    def _name(self) -> str:
        return f"{self.stream}/{self.group}/{self.consumer}"

    # -- receiving -------------------------------------------------------------------

    async def receive(self, timeout: float | None = None) -> ReceivedMessage:
        """The next message; raises TimeoutError when none arrives within ``timeout`` seconds."""
        batch = await self._receive(1, timeout)
        if not batch:
            raise TimeoutError(f"no message on {self._name} within {timeout}s")
        return batch[0]

    async def receive_batch(self, max_messages: int | None = None,
                            timeout: float | None = None) -> list[ReceivedMessage]:
        """Up to ``max_messages`` messages as soon as at least one is there; [] after ``timeout``."""
        return await self._receive(max_messages or self.batch_size, timeout)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> ReceivedMessage:
        try:
            return await self.receive()
        except SubscriptionClosed:
            raise StopAsyncIteration from None

    async def _receive(self, wanted: int, timeout: float | None) -> list[ReceivedMessage]:
        deadline = None if timeout is None else time.monotonic() + timeout
        attempt = 0
        while True:
            if self._buffer:
                return self._hand_out(wanted)
            if self._failure is not None:
                raise self._failure
            if self._closed:
                raise SubscriptionClosed(f"subscription {self._name} is shut down")
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return []
            failed = False
            async with self._fetch_lock:
                if self._buffer or self._closed or self._failure is not None:
                    continue
                block = self.block if remaining is None else max(0.0, min(self.block, remaining))
                try:
                    self._buffer.extend(await self._fetch(max(wanted, self.batch_size), block))
                    attempt = 0
                except TRANSIENT as exc:
                    if self._closed:
                        raise SubscriptionClosed(f"subscription {self._name} is shut down") from None
                    self.stats["errors"] += 1
                    log.warning("subscription %s: %s; retrying", self._name, exc)
                    # Redis may have delivered entries before the reply was lost: they now wait in
                    # this consumer's pending list, where neither '>' nor reclaim (for `autoclaim`)
                    # looks. Read that list again, as at start. A drain under way goes on from
                    # its cursor: it had not moved past what the lost reply held.
                    if self._drain_from is None:
                        self._drain_from = "0"
                    failed = True
            if failed:  # back off without holding the lock, so shutdown is not kept waiting
                await _backoff(attempt)
                attempt += 1

    def _hand_out(self, wanted: int) -> list[ReceivedMessage]:
        batch = [self._buffer.popleft() for _ in range(min(wanted, len(self._buffer)))]
        self.stats["received"] += len(batch)
        return batch

    async def _fetch(self, count: int, block: float) -> list[ReceivedMessage]:
        try:
            try:
                messages = await self._fetch_step(count, block)
            except ResponseError as exc:
                if not _group_gone(str(exc)):
                    raise
                await self._group_lost(block)
                return []
        except ResponseError as exc:  # refused (NOPERM names the command), WRONGTYPE…
            raise PubSubError(f"subscription {self._name}: {exc}") from None
        self._group_known = True
        return messages

    async def _fetch_step(self, count: int, block: float) -> list[ReceivedMessage]:
        while self._drain_from is not None:
            messages = await self._drain(count)
            if messages:
                return messages
        if time.monotonic() >= self._next_reclaim:
            messages = await self._reclaim(count)
            if messages:
                return messages
        return await self._read_new(count, block)

    async def _group_lost(self, block: float) -> None:
        """The group is missing. Re-create it from 0 if its stream was reset; stop with
        GroupDeletedError if it was deleted while the stream kept its history."""
        self._drain_from, self._reclaim_from = "0", "0-0"
        if not self._group_known:
            # Not there yet (not provisioned), or lost with its stream and not ours to create.
            if not (self._create_group and await self._ensure_group(self._create_from) is not None):
                log.warning("subscription %s: group %r does not exist; waiting for it to be created%s",
                            self._name, self.group, self._create_refused)
                await asyncio.sleep(min(block, 1.0))
            return
        exists, state = await self._stream_state()
        reason = self._reset_reason(exists, state)
        if reason is None:
            self._failure = self._deleted_error(state)
            log.error("%s", self._failure)
            raise self._failure
        # A new stream: what was known of the old one no longer applies.
        self._high, self._added_seen, self._group_known, self._create_from = None, None, False, "0"
        created = await self._ensure_group("0") if self._create_group else None
        if created is None:
            log.warning("subscription %s: stream %r was reset (%s) and group %r with it; waiting for the group "
                        "to be created again", self._name, self.stream, reason, self.group)
            await asyncio.sleep(min(block, 1.0))
            return
        if created:
            self.stats["group_recreated"] += 1
            log.warning("subscription %s: stream %r was reset (%s) and group %r with it; re-created the group "
                        "from 0, so nothing published since is missed", self._name, self.stream, reason, self.group)
        await self._observe()

    def _reset_reason(self, exists: bool | None, state: _StreamState | None) -> str | None:
        """Why the stream is not the one the group was lost from; None if it may well be."""
        if exists is False:
            return "its key is gone"
        if state is None:
            return None
        high = self._high
        if high is None:
            return None
        if state.last_id < high:
            return f"its last ID {_id_text(state.last_id)} is below {_id_text(high)}, which it held"
        if (state.first_id is not None and state.first_id <= high) or state.entries_added is None:
            return None
        # It holds nothing up to H. Trimming could explain that, unless it never lost an
        # entry, or it counts fewer entries ever added than it did before.
        if state.entries_added == state.length:
            return (f"it holds no entry up to {_id_text(high)}, which it held, and never lost one "
                    f"({state.length} newer entries)")
        if self._added_seen is not None and state.entries_added < self._added_seen:
            return (f"it holds no entry up to {_id_text(high)}, which it held, and counts {state.entries_added} "
                    f"entries ever added where it counted {self._added_seen}")
        return None

    def _deleted_error(self, state: _StreamState | None) -> GroupDeletedError:
        if state is None:
            why = "and whether its stream was reset cannot be told (XINFO STREAM is not permitted)"
        elif self._high is None:
            why = "and whether its stream was reset cannot be told (no entry of it was known before)"
        else:
            why = f"while stream {self.stream!r} still holds its history (entries up to {_id_text(self._high)})"
        return GroupDeletedError(
            f"subscription {self._name}: consumer group {self.group!r} of stream {self.stream!r} was deleted {why}; "
            f"it is not re-created, so entries the group already acknowledged are not replayed. Create the group "
            f"again (e.g. redistreams apply, or XGROUP CREATE at the position to resume from) and reopen the "
            f"subscription", self.stream, self.group)

    def _held(self) -> set[str]:
        """IDs a re-read of the own pending list must not hand out: given to the application
        and not acknowledged, with an ack, nack or move queued or in flight, or settled
        while the re-read runs (Redis may have answered the read before applying the ack)."""
        held = set(self._outstanding)
        held.update(self._acks, self._nacks, self._malformed, self._settled_while_draining)
        return held

    def _drained(self) -> None:
        self._drain_from = None
        self._settled_while_draining.clear()

    async def _drain(self, count: int) -> list[ReceivedMessage]:
        """One step through this consumer's own pending entries."""
        assert self._drain_from is not None
        held = self._held()
        if self.dead_letter:
            start = "-" if self._drain_from == "0" else self._drain_from
            if held and start != "-":  # only IDs the script can still meet
                after = _id_key(start[1:])
                held = {entry_id for entry_id in held if _id_key(entry_id) > after}
            next_start, messages = await self._claim(start, count, min_idle=0, owner=self.consumer, skip=held)
            if next_start:
                self._drain_from = next_start
            else:
                self._drained()
            return messages
        reply = await self._read.call_one("XREADGROUP", "GROUP", self.group, self.consumer, "COUNT", count,
                                          "STREAMS", self.stream, self._drain_from)
        entries = reply[0][1] if reply else []
        if not entries:
            self._drained()
            return []
        self._drain_from = entries[-1][0].decode()
        if held:
            entries = [entry for entry in entries if entry[0].decode() not in held]
        return self._decode(entries, redelivered=True)

    async def _reclaim(self, count: int) -> list[ReceivedMessage]:
        """One step of the cursor over idle entries of other consumers."""
        if self.dead_letter:
            start = "-" if self._reclaim_from == "0-0" else self._reclaim_from
            next_start, messages = await self._claim(start, count, min_idle=self._autoclaim_ms, owner="")
            next_cursor = next_start or "0-0"
        else:
            reply = await self._read.call_one("XAUTOCLAIM", self.stream, self.group, self.consumer,
                                              self._autoclaim_ms, self._reclaim_from, "COUNT", count)
            next_cursor = reply[0].decode()
            deleted = reply[2] if len(reply) > 2 else []
            if deleted:
                self._report_deleted([d.decode() for d in deleted])
            messages = self._decode(reply[1], redelivered=True)
        if messages:
            self.stats["reclaimed"] += len(messages)
        self._reclaim_from = next_cursor
        if next_cursor == "0-0":
            self._next_reclaim = time.monotonic() + self._reclaim_interval
        return messages

    async def _claim(self, start: str, count: int, *, min_idle: int, owner: str,
                     skip: Iterable[str] = ()) -> tuple[str, list[ReceivedMessage]]:
        assert self.dead_letter is not None
        next_start, claimed, moved, gone, errors = await self._script(
            [self.stream, self.dead_letter.stream],
            ["claim", self.group, self.consumer, min_idle, start, count, self.dead_letter.max_deliveries, owner,
             *skip])
        if moved:
            log.warning("subscription %s: moved %d entries to %s after %d deliveries: %s", self._name, len(moved),
                        self.dead_letter.stream, self.dead_letter.max_deliveries, _ids(moved))
        self._dead_lettered(moved, errors)
        if gone:
            self._report_deleted([g.decode() for g in gone])
        messages = self._decode(claimed, redelivered=True)
        return next_start.decode() if next_start else "", messages

    async def _read_new(self, count: int, block: float) -> list[ReceivedMessage]:
        command: list[Any] = ["XREADGROUP", "GROUP", self.group, self.consumer, "COUNT", count,
                              "BLOCK", max(1, int(block * 1000))]
        if self.spec.noack:
            command.append("NOACK")
        command += ["STREAMS", self.stream, ">"]
        reply = await self._read.call_one(*command, extra_timeout=block)
        if not reply:
            return []
        return self._decode(reply[0][1], redelivered=False)

    def _decode(self, entries: Sequence[Any], *, redelivered: bool) -> list[ReceivedMessage]:
        messages: list[ReceivedMessage] = []
        deleted: list[str] = []
        malformed: list[str] = []
        now = time.monotonic()
        track = not self.spec.noack
        if entries:
            self._note_high(_id_key(entries[-1][0]))  # replies list entries in ID order
        for raw_id, flat in entries:
            entry_id = raw_id.decode()
            decoded = decode_fields(flat)
            if decoded is None:
                deleted.append(entry_id)
                continue
            if decoded.problem and self.dead_letter:
                malformed.append(entry_id)
                continue
            if decoded.problem:
                self.stats["malformed"] += 1
                log.warning("subscription %s: entry %s is not in the driver's format (%s); delivering it as is",
                            self._name, entry_id, decoded.problem)
            messages.append(ReceivedMessage(body=decoded.body, metadata=decoded.metadata, id=entry_id,
                                            redelivered=redelivered, problem=decoded.problem, subscription=self))
            if track:
                self._outstanding[entry_id] = now
        if redelivered:
            self.stats["redelivered"] += len(messages)
        if deleted:
            self._report_deleted(deleted)
            self._queue_acks(deleted)
        if malformed:
            self._malformed.extend(malformed)
            self._kick_control()
        return messages

    def _report_deleted(self, ids: list[str]) -> None:
        self.stats["deleted"] += len(ids)
        log.warning("subscription %s: %d pending entries were deleted from the stream before they were "
                    "acknowledged (trimmed or XDEL); acknowledged them: %s", self._name, len(ids), _ids(ids))

    def _dead_lettered(self, moved: Sequence[Any], errors: Sequence[Any]) -> None:
        """Account for a dead-letter move: {id, error, …} pairs that failed stay pending."""
        self.stats["dead_lettered"] += len(moved)
        if errors:
            pairs = zip(errors[::2], errors[1::2])
            self._dead_letter_failed({i.decode(): e.decode(errors="replace") for i, e in pairs})
        elif moved:
            self.dead_letter_error = None

    def _dead_letter_failed(self, ids: dict[str, str]) -> None:
        assert self.dead_letter is not None
        self.stats["dead_letter_failed"] += len(ids)
        first = next(iter(ids.values()))
        self.dead_letter_error = DeadLetterError(
            f"subscription {self._name}: {len(ids)} entries could not be moved to the dead-letter stream "
            f"{self.dead_letter.stream!r} and stay pending ({first})", self.dead_letter.stream, ids)
        self._dead_letter_log.error(
            "subscription %s: could not move %d entries to the dead-letter stream %s: %s; they stay pending "
            "and the move is tried again when they are next claimed: %s",
            self._name, len(ids), self.dead_letter.stream, first, _ids(list(ids)))

    # -- acknowledging ---------------------------------------------------------------

    def _elsewhere(self, method: Any, messages: tuple[Any, ...]) -> bool:
        """Called from another thread (the blocking facade, a worker thread): hop to our loop."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            return False
        self._loop.call_soon_threadsafe(method, *messages)
        return True

    def ack(self, *messages: ReceivedMessage | str) -> None:
        """Acknowledge messages; sent in the background, batched (see ``flush``). Thread-safe."""
        if self.spec.noack or self._elsewhere(self.ack, messages):
            return
        ids = [m if isinstance(m, str) else m.id for m in messages]
        for entry_id in ids:
            since = self._outstanding.pop(entry_id, None)
            if since is not None:
                # The lease is renewed until Redis confirms the ack: another consumer must
                # not reclaim, and handle again, an entry whose ack is only slow.
                self._acking[entry_id] = since
        self.stats["acked"] += len(ids)
        self._queue_acks(ids)

    def nack(self, *messages: ReceivedMessage | str) -> None:
        """Give messages back: any consumer of the group (this one too) gets them again promptly."""
        if self.spec.noack or self._elsewhere(self.nack, messages):
            return
        ids = [m if isinstance(m, str) else m.id for m in messages]
        for entry_id in ids:
            self._outstanding.pop(entry_id, None)
        self.stats["nacked"] += len(ids)
        self._nacks.extend(ids)
        self._kick_control()

    def _queue_acks(self, ids: list[str]) -> None:
        self._acks.extend(ids)
        self._kick_control()

    def _kick_control(self) -> None:
        if self._control_task is None:
            self._control_task = self._loop.create_task(self._flush_control())

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until every acknowledgement and nack so far has reached Redis, at most
        ``timeout`` seconds (default: the subscription's ``timeout``).

        Raises ``TimeoutError`` when Redis did not confirm them in time (down or
        unreachable: they stay queued and are sent once it answers), and
        ``AcknowledgeError`` once Redis refused any (they stay pending in Redis).
        """
        limit = self.timeout if timeout is None else max(0.0, timeout)
        try:
            async with asyncio.timeout(limit):
                await self._settled()
        except TimeoutError:
            waiting = len(self._acks) + len(self._nacks)
            raise TimeoutError(f"subscription {self._name}: Redis did not confirm {waiting} acks/nacks within "
                               f"{limit:g}s; they stay queued and are sent once it answers") from None
        if self._ack_failure is not None:
            raise self._ack_failure

    async def _settled(self) -> None:
        while self._control_task is not None:
            await asyncio.shield(self._control_task)

    async def _flush_control(self) -> None:
        attempt = 0
        try:
            while self._acks or self._nacks or self._malformed:
                acks, nacks, malformed = self._acks[:_MAX_TRIP], self._nacks[:_MAX_TRIP], self._malformed[:_MAX_TRIP]
                commands: list[Command] = []
                sent: list[tuple[str, str, list[str]]] = []  # command, what it does, its IDs
                if acks:
                    commands.append(("XACK", self.stream, self.group, *acks))
                    sent.append(("XACK", f"acknowledging {len(acks)} entries", acks))
                if nacks:
                    commands.append(("XCLAIM", self.stream, self.group, self.consumer, 0, *nacks,
                                     "IDLE", max(_NACK_IDLE_MS, self._autoclaim_ms), "JUSTID"))
                    sent.append(("XCLAIM", f"nacking {len(nacks)} entries", nacks))
                try:
                    try:
                        replies = await self._control.call(commands)
                    except ResponseError as exc:  # refused while connecting (e.g. SELECT): nothing was sent
                        replies = [exc] * len(commands)
                    if malformed:
                        await self._move_malformed(malformed)
                except TRANSIENT as exc:
                    log.warning("subscription %s: acknowledging: %s; retrying", self._name, exc)
                    await _backoff(attempt)
                    attempt += 1
                    continue
                attempt = 0
                for (command, purpose, ids), reply in zip(sent, replies):
                    if isinstance(reply, ResponseError):
                        self._refusal(command, purpose, ids, reply, unconfirmed=True)
                del self._acks[:len(acks)], self._nacks[:len(nacks)], self._malformed[:len(malformed)]
                for entry_id in acks:
                    self._acking.pop(entry_id, None)
                if self._drain_from is not None:
                    self._settled_while_draining.update(acks, nacks, malformed)
                if nacks:
                    # Take them back ourselves at the next fetch unless another consumer is faster.
                    self._next_reclaim, self._reclaim_from = 0.0, "0-0"
        finally:
            self._control_task = None

    def _refusal(self, command: str, purpose: str, ids: list[str], error: ResponseError, *,
                 unconfirmed: bool) -> None:
        """Redis refused an ack, nack or lease renewal. With the group gone there is nothing
        to settle (reading deals with it). Otherwise (NOPERM…) the entries stay pending and
        are delivered again, and receiving stops: every message handed out from then on
        would come back too."""
        text = str(error)
        if _group_gone(text):
            log.debug("subscription %s: %s: %s", self._name, purpose, text)
            return
        for entry_id in ids:
            self._acking.pop(entry_id, None)
        refused = [entry_id for entry_id in ids if entry_id not in self._refused] if unconfirmed else []
        self._refused.update(dict.fromkeys(refused))
        if self._ack_failure is None:
            self._ack_failure = AcknowledgeError(
                f"subscription {self._name}: Redis refused {command} ({purpose}): {text}. Those entries stay pending "
                f"and are delivered again (to this consumer name when it reopens, or to another consumer after "
                f"autoclaim); receiving stops: grant the command and reopen the subscription", command, [])
            if self._failure is None:
                self._failure = self._ack_failure
        self._ack_failure.ids.extend(refused)
        self._refusal_log.error("subscription %s: Redis refused %s (%s): %s", self._name, command, purpose, text)

    async def _move_malformed(self, ids: list[str]) -> None:
        assert self.dead_letter is not None
        try:
            moved, gone, errors = await self._script(
                [self.stream, self.dead_letter.stream],
                ["move", self.group, self.consumer, "entry is not in the driver's format (headers/body)", *ids],
                link=self._control)
        except ResponseError as exc:  # the script as a whole refused (e.g. no access to the dead-letter key)
            self._dead_letter_failed({entry_id: str(exc) for entry_id in ids})
            return
        if moved:
            log.warning("subscription %s: moved %d malformed entries to %s: %s", self._name, len(moved),
                        self.dead_letter.stream, _ids(moved))
        self._dead_lettered(moved, errors)

    async def _script(self, keys: list[str], args: list[Any], link: Link | None = None) -> Any:
        link = link or self._read
        try:
            if self._evalsha:
                try:
                    return await link.call_one("EVALSHA", _SCRIPT_SHA, len(keys), *keys, *args)
                except NoScriptError:
                    pass
                except NoPermissionError as exc:
                    if "'evalsha'" not in str(exc):
                        raise
                    self._evalsha = False  # EVAL alone will do: the script is sent each time
            return await link.call_one("EVAL", _SCRIPT, len(keys), *keys, *args)
        except NoPermissionError as exc:
            if "one of the keys" in str(exc):  # Redis does not say which
                raise NoPermissionError(f"{exc}: {', '.join(repr(k) for k in keys)}") from None
            raise

    async def _renew_leases(self) -> None:
        """Keep messages a slow handler still holds, and those whose ack Redis has not
        confirmed yet, from being reclaimed by other consumers."""
        min_idle_ms = int(self._renew_after * 1000)
        while True:
            await asyncio.sleep(self._renew_after / 2)
            cutoff = time.monotonic() - self._renew_after
            stale = [entry_id for entry_id, since in self._outstanding.items() if since <= cutoff]
            stale += [entry_id for entry_id, since in self._acking.items() if since <= cutoff]
            if not stale:
                continue
            try:
                for start in range(0, len(stale), _MAX_TRIP):
                    chunk = stale[start:start + _MAX_TRIP]
                    (reply,) = await self._control.call([("XCLAIM", self.stream, self.group, self.consumer,
                                                          min_idle_ms, *chunk, "JUSTID")])
                    if isinstance(reply, ResponseError):
                        raise reply
            except TRANSIENT as exc:
                log.warning("subscription %s: renewing leases: %s", self._name, exc)
                continue
            except ResponseError as exc:
                self._refusal("XCLAIM", f"renewing the leases of {len(stale)} entries", stale, exc, unconfirmed=False)
                if _group_gone(str(exc)):
                    continue
                return  # refused: asking again every tick would change nothing
            now = time.monotonic()
            for entry_id in stale:
                for leases in (self._outstanding, self._acking):
                    if entry_id in leases:
                        leases[entry_id] = now
            self.stats["leases_renewed"] += len(stale)

    # -- closing ---------------------------------------------------------------------

    async def shutdown(self, timeout: float | None = None) -> list[str]:
        """Stop receiving, taking at most ``timeout`` seconds (default: the subscription's
        ``timeout``). Messages fetched but not handed out are given back, queued
        acknowledgements and nacks are sent, then the connections close. Messages handed
        out and not acknowledged stay pending and are redelivered later.

        Returns the IDs whose ack or nack Redis did not confirm in time or refused (Redis
        down or unreachable, no XACK/XCLAIM permission; also logged as a warning). Nothing
        is lost: unless Redis applied the command just before the connection failed,
        those entries stay pending and are delivered again, to this consumer name when it
        next opens or to another consumer after ``autoclaim``.
        """
        if self._closed:
            return []
        self._closed = True
        deadline = self._loop.time() + (self.timeout if timeout is None else max(0.0, timeout))
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    async with self._fetch_lock:  # a read in flight ends within `block`
                        unread = [m.id for m in self._buffer]
                        self._buffer.clear()
                    if unread:
                        self.nack(*unread)
                    await self._settled()
            except TimeoutError:
                pass
            unsent = await self._abandon_control()
            if unsent:
                log.warning("subscription %s: shut down without Redis confirming %d acks/nacks; those entries stay "
                            "pending and will be delivered again: %s", self._name, len(unsent), _ids(unsent))
            return unsent
        finally:
            if self._renew_task is not None:
                self._renew_task.cancel()
            _in_use.discard(self._key)
            # A call still in flight is waited for only as long as the deadline allows;
            # disconnecting the pool then ends it.
            for link in (self._control, self._read):
                try:
                    async with asyncio.timeout_at(max(deadline, self._loop.time() + 0.05)):
                        await link.close()
                except TimeoutError:
                    pass
            await self._pool.disconnect()

    async def _abandon_control(self) -> list[str]:
        """Stop sending acks and nacks; returns the IDs not confirmed by Redis (refused or unsent)."""
        task = self._control_task
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        unsent = list(dict.fromkeys([*self._refused, *self._acks, *self._nacks]))
        self._acks.clear()
        self._nacks.clear()
        self._malformed.clear()  # still pending: moved when next claimed
        self._acking.clear()
        self._refused.clear()
        return unsent

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()


def _id_text(key: tuple[int, int]) -> str:
    return f"{key[0]}-{key[1]}"


def _ids(ids: list[Any], limit: int = 5) -> str:
    shown = ", ".join(i.decode() if isinstance(i, bytes) else str(i) for i in ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


async def open_subscription(url: str, *, redis_url: str | None = None, client: aredis.Redis | None = None,
                            batch_size: int = 100, block: float = 2.0, timeout: float = 10.0,
                            dead_letter: DeadLetter | str | None = None, max_deliveries: int = 5,
                            create_group: bool = True, reclaim_interval: float | None = None) -> Subscription:
    """Open ``redis://<group>?topic=<stream>&consumer=<name>[&from=ID][&autoclaim=30m][&noack]``.

    Like the Go driver, the group is created at ``from`` (default ``0``) unless it
    exists. ``dead_letter`` (a stream name or ``DeadLetter``) moves an entry there after
    ``max_deliveries`` deliveries without acknowledgement. ``timeout`` bounds each round
    trip and, by default, ``shutdown``.
    """
    spec = parse_subscription_url(url)
    if isinstance(dead_letter, str):
        dead_letter = DeadLetter(dead_letter, max_deliveries)
    if dead_letter and spec.noack:
        raise PubSubError(
            f"open subscription {redact(url)}: a dead-letter stream needs acknowledgements (drop 'noack')")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if block <= 0:
        raise ValueError("block must be positive (seconds)")
    server = redact(redis_url or os.environ.get("REDIS_URL", "")) if client is None else repr(client.connection_pool)
    pool = _pool_for(client, redis_url, "subscription", url)
    subscription = Subscription(spec, pool, server=server, batch_size=batch_size, block=block, timeout=timeout,
                                dead_letter=dead_letter, create_group=create_group,
                                reclaim_interval=reclaim_interval)
    await subscription._open()
    return subscription
