"""The subscriber: a ``Subscription`` receives from one consumer group as one named
consumer, at least once. Its parts: ``acks`` (acknowledgements, nacks, leases),
``deadletter`` (the dead-letter script) and ``resets`` (a reset stream or a deleted group).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from threading import get_ident
from typing import Any

import redis.asyncio as aredis
from redis.exceptions import NoPermissionError, ResponseError

from ..connection import redact
from .acks import Acks
from .cluster import Server, server_for
from .deadletter import DeadLetter, DeadLettering
from .link import TRANSIENT, RoundTrips
from .messages import (
    ConsumerInUseError,
    DeadLetterError,
    GroupDeletedError,
    PubSubError,
    ReceivedMessage,
    SubscriptionClosed,
    backoff,
    format_ids,
    id_key,
    log,
)
from .resets import StreamHistory, group_gone, stream_state
from .urls import SubscriptionURL, parse_subscription_url
from .wire import BODY, HEADERS, decode_entry, shared_headers

_in_use: set[tuple[str, str, str, str]] = set()  # (server, stream, group, consumer) of open subscriptions


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

    def __init__(self, spec: SubscriptionURL, pool: Server, *, server: str,
                 batch_size: int = 100, block: float = 2.0, timeout: float = 10.0,
                 dead_letter: DeadLetter | None = None, create_group: bool = True,
                 reclaim_interval: float | None = None) -> None:
        self.stream, self.group, self.consumer = spec.stream, spec.group, spec.consumer
        self.spec = spec
        self._noack = spec.noack
        self.dead_letter = dead_letter
        self.batch_size = batch_size
        self.block = block
        self.timeout = timeout
        self.stats: Counter[str] = Counter()
        self._server = server
        self._pool = pool
        self._create_group = create_group
        self._read = pool.link(spec.stream, timeout, name="redistreams-sub")
        self._control = pool.link(spec.stream, timeout, name="redistreams-sub")
        self._autoclaim_ms = max(1, int(spec.autoclaim * 1000))
        self._reclaim_interval = reclaim_interval if reclaim_interval is not None else min(5.0, spec.autoclaim)
        self._buffer: deque[ReceivedMessage] = deque()
        self._fetch_lock = asyncio.Lock()
        self._backlog = False  # the last read came back full: more is likely waiting
        self._low_water = batch_size  # read ahead once fewer wait: one batch in flight while one is handled
        self._read_ahead_task: asyncio.Task[None] | None = None
        self._dead_lettering = (None if dead_letter is None else
                                DeadLettering(dead_letter, spec, name=self._name, stats=self.stats))
        self._acks = Acks(self._control, spec, name=self._name, stats=self.stats, autoclaim_ms=self._autoclaim_ms,
                          renew_after=max(0.1, spec.autoclaim / 3), dead_lettering=self._dead_lettering,
                          on_confirmed=self._confirmed)
        self._dead_link: RoundTrips | None = None  # to a dead-letter stream in another slot (cluster)
        self._settled_while_draining: set[str] = set()  # see _held()
        self._drain_from: str | None = "0"  # own pending list still to read; None when done
        self._reclaim_from = "0-0"
        self._next_reclaim = 0.0
        self._history = StreamHistory()  # tells a reset stream from a deleted group
        self._group_known = False  # the group existed (created, found or read from) since it was last lost
        self._create_from = spec.start  # where a group never seen is created; "0" once its stream was reset
        self._failure: GroupDeletedError | None = None  # raised by every receive from then on (see _stopped)
        self._create_refused = ""  # why XGROUP CREATE was refused, for the waiting message
        self._closed = False
        self._key = (server, spec.stream, spec.group, spec.consumer)
        self._loop = asyncio.get_running_loop()
        self._loop_thread = get_ident()
        # Acks and nacks from other threads, in order, taken over by one loop callback
        # per burst instead of one cross-thread wake-up per message (see _elsewhere).
        self._foreign: deque[tuple[Callable[..., None], tuple[Any, ...]]] = deque()
        self._foreign_wake = False  # a _take_foreign is scheduled and has not started

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
            self._check_dead_letter_slot()
            # Consumers otherwise appear only with their first delivery; make this one visible now.
            create = ("XGROUP", "CREATECONSUMER", self.stream, self.group, self.consumer)
            reply = (await self._control.call([create]))[0]
            if isinstance(reply, ResponseError):
                log.debug("subscription %s: XGROUP CREATECONSUMER: %s", self._name, reply)
            if not self.spec.noack:
                self._acks.start_renewing()
        except ResponseError as exc:  # refused while connecting (e.g. SELECT)
            _in_use.discard(self._key)
            await self._pool.disconnect()
            raise PubSubError(f"open subscription {self._name}: {exc}") from None
        except BaseException:
            _in_use.discard(self._key)
            await self._pool.disconnect()
            raise

    def _check_dead_letter_slot(self) -> None:
        """On a cluster, a dead-letter stream in another hash slot cannot be in the move's
        script: entries are handed over and copied on a link to its node."""
        if self._dead_lettering is None or self.dead_letter is None or not self._pool.cluster:
            return
        if self._pool.slot_of(self.stream) != self._pool.slot_of(self.dead_letter.stream):
            self._dead_link = self._pool.link(self.dead_letter.stream, self.timeout, name="redistreams-sub")
            self._dead_lettering.hand_off(self._dead_link)

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

    async def _observe(self) -> None:
        """Remember what the stream shows now (its last ID and entries-added counter): the
        baseline that later tells a reset stream from a deleted group."""
        _, state = await stream_state(self._control, self.stream, self._name)
        if state is not None:
            self._history.observe(state)

    @property
    def _name(self) -> str:
        return f"{self.stream}/{self.group}/{self.consumer}"

    @property
    def dead_letter_error(self) -> DeadLetterError | None:
        """The latest failure to move entries to the dead-letter stream; None once a move works again."""
        return None if self._dead_lettering is None else self._dead_lettering.error

    def _stopped(self) -> PubSubError | None:
        """Why receiving stopped for good: the group was deleted, or Redis refused acknowledgements."""
        return self._failure if self._failure is not None else self._acks.failure

    # -- receiving -------------------------------------------------------------------

    async def receive(self, timeout: float | None = None) -> ReceivedMessage:
        """The next message; raises TimeoutError when none arrives within ``timeout`` seconds."""
        buffer = self._buffer
        if buffer:  # the one-at-a-time loop's common case: no deadline, no list
            self.stats["received"] += 1
            message = buffer.popleft()
            if self._read_ahead_task is None and self._backlog and self._fetch_ahead():
                try:
                    await asyncio.sleep(0)  # let the read ahead put its request on the wire now
                except asyncio.CancelledError:
                    self.put_back([message])  # not handed out after all
                    raise
            return message
        return (await self.read_ahead(timeout, 1))[0]

    async def read_ahead(self, timeout: float | None = None, max_messages: int | None = None) -> list[ReceivedMessage]:
        """The next message and those fetched behind it, up to ``max_messages`` (default
        ``batch_size``); raises TimeoutError when none arrives within ``timeout`` seconds.

        For a facade that hands them out one at a time: all are handed out (pending in
        the group, their leases renewed until acknowledged); ``put_back`` those it does
        not hand on, so that ``shutdown`` gives them back.
        """
        batch = await self._receive(max_messages or self.batch_size, timeout)
        if not batch:
            raise TimeoutError(f"no message on {self._name} within {timeout}s")
        self._fetch_ahead()
        return batch

    def put_back(self, messages: Sequence[ReceivedMessage]) -> None:
        """Messages from ``read_ahead`` not handed on after all: the next receive hands them
        out first, ``shutdown`` gives them back. Call on the subscription's event loop."""
        self._buffer.extendleft(reversed(messages))
        self.stats["received"] -= len(messages)

    async def receive_batch(self, max_messages: int | None = None,
                            timeout: float | None = None) -> list[ReceivedMessage]:
        """Up to ``max_messages`` messages as soon as at least one is there; [] after ``timeout``.
        Fetches at most ``batch_size`` (or ``max_messages``) at a time, never ahead."""
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
            failure = self._stopped()
            if failure is not None:
                raise failure
            if self._closed:
                raise SubscriptionClosed(f"subscription {self._name} is shut down")
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return []
            failed = False
            async with self._fetch_lock:
                if self._buffer or self._closed or self._stopped() is not None:
                    continue
                block = self.block if remaining is None else max(0.0, min(self.block, remaining))
                try:
                    await self._fetch_into_buffer(max(wanted, self.batch_size), block)
                    attempt = 0
                except TRANSIENT as exc:
                    if self._closed:
                        raise SubscriptionClosed(f"subscription {self._name} is shut down") from None
                    self._read_failed(exc)
                    failed = True
            if failed:  # back off without holding the lock, so shutdown is not kept waiting
                await backoff(attempt)
                attempt += 1

    async def _fetch_into_buffer(self, count: int, block: float) -> None:
        """One read (under ``_fetch_lock``); what it brings waits in the buffer, in order."""
        try:
            messages = await self._fetch(count, block)
        except asyncio.CancelledError:
            # A receive cancelled mid-read (wait_for, a task group): Redis may have delivered
            # entries whose reply went with the connection. Read the own pending list again,
            # as after a lost reply, or they would wait for autoclaim.
            if self._drain_from is None:
                self._drain_from = "0"
            raise
        self._backlog = len(messages) >= count
        self._buffer.extend(messages)

    def _read_failed(self, exc: Exception) -> None:
        self.stats["errors"] += 1
        log.warning("subscription %s: %s; retrying", self._name, exc)
        # Redis may have delivered entries before the reply was lost: they now wait in
        # this consumer's pending list, where neither '>' nor reclaim (for `autoclaim`)
        # looks. Read that list again, as at start. A drain under way goes on from
        # its cursor: it had not moved past what the lost reply held.
        if self._drain_from is None:
            self._drain_from = "0"

    def _fetch_ahead(self) -> bool:
        """One message at a time (``receive``, ``read_ahead``) with a backlog: read the next
        batch while the application handles this one, so its round trip overlaps their
        work instead of adding to it. Without BLOCK: a read ahead never holds the
        connection (and a receive with a deadline) waiting. At most two batches wait
        fetched; like any, they are leased until acknowledged and given back by
        ``shutdown``. ``receive_batch`` never reads ahead: it fetches what it is asked for;
        nor does ``noack``: what it fetched and did not hand out is lost at shutdown."""
        if (self._backlog and not self._noack and self._read_ahead_task is None and not self._fetch_lock.locked()
                and len(self._buffer) <= self._low_water and not self._closed):
            self._read_ahead_task = self._loop.create_task(self._read_ahead())
            return True
        return False

    async def _read_ahead(self) -> None:
        try:
            async with self._fetch_lock:
                if self._closed or self._stopped() is not None or len(self._buffer) > self._low_water:
                    return
                try:
                    await self._fetch_into_buffer(self.batch_size, 0)
                except TRANSIENT as exc:
                    if not self._closed:
                        self._read_failed(exc)
                except PubSubError:
                    self._backlog = False  # the next receive reads again and raises it (or the failure set)
        finally:
            self._read_ahead_task = None

    def _hand_out(self, wanted: int) -> list[ReceivedMessage]:
        batch = [self._buffer.popleft() for _ in range(min(wanted, len(self._buffer)))]
        self.stats["received"] += len(batch)
        return batch

    async def _fetch(self, count: int, block: float) -> list[ReceivedMessage]:
        try:
            try:
                messages = await self._fetch_step(count, block)
            except ResponseError as exc:
                if not group_gone(str(exc)):
                    raise
                if str(exc).startswith("UNBLOCKED") and self._pool.cluster:
                    # The key left the node under a blocked read: deleted, or migrated to
                    # another node of the cluster (MIGRATE). The next read tells which.
                    return []
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
        exists, state = await stream_state(self._control, self.stream, self._name)
        reason = self._history.reset_reason(exists, state)
        if reason is None:
            self._failure = self._history.deleted_error(self._name, self.stream, self.group, state)
            log.error("%s", self._failure)
            raise self._failure
        # A new stream: what was known of the old one no longer applies.
        self._history.forget()
        self._group_known, self._create_from = False, "0"
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

    def _held(self) -> set[str]:
        """IDs a re-read of the own pending list must not hand out: given to the application
        and not acknowledged, with an ack, nack or move queued or in flight, or settled
        while the re-read runs (Redis may have answered the read before applying the ack)."""
        held = self._acks.held()
        held.update(self._settled_while_draining)
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
                after = id_key(start[1:])
                held = {entry_id for entry_id in held if id_key(entry_id) > after}
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
        assert self._dead_lettering is not None
        next_start, claimed, gone = await self._dead_lettering.claim(self._read, start, count, min_idle=min_idle,
                                                                     owner=owner, skip=skip)
        if gone:
            self._report_deleted(gone)
        return next_start, self._decode(claimed, redelivered=True)

    async def _read_new(self, count: int, block: float) -> list[ReceivedMessage]:
        command: list[Any] = ["XREADGROUP", "GROUP", self.group, self.consumer, "COUNT", count]
        if block > 0:
            command += ["BLOCK", max(1, int(block * 1000))]
        if self.spec.noack:
            command.append("NOACK")
        command += ["STREAMS", self.stream, ">"]
        ride = None if block > 0 else self._acks.ride()  # a read that never blocks takes queued acks along
        if ride is None:
            reply = await self._read.call_one(*command, extra_timeout=block)
        else:
            try:
                ack_reply, reply = await self._read.call([ride.command, tuple(command)])
            except BaseException:
                self._acks.unride(ride)
                raise
            self._acks.rode(ride, ack_reply)
            if isinstance(reply, ResponseError):
                raise reply
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
            self._history.note(id_key(entries[-1][0]))  # replies list entries in ID order
        leases = self._acks.leases if track else {}
        append = messages.append
        for raw_id, flat in entries:
            entry_id = raw_id.decode()
            # The driver's format with headers seen before: nothing to check or parse.
            if flat is not None and len(flat) == 4 and flat[0] == HEADERS and flat[2] == BODY:
                shared = shared_headers(flat[1])
                if shared is not None:
                    append(ReceivedMessage(flat[3], None, entry_id, redelivered, None, self, shared))
                    leases[entry_id] = now
                    continue
            decoded = decode_entry(flat)
            if decoded is None:
                deleted.append(entry_id)
                continue
            body, metadata, problem = decoded
            if problem:
                if self.dead_letter:
                    malformed.append(entry_id)
                    continue
                self.stats["malformed"] += 1
                log.warning("subscription %s: entry %s is not in the driver's format (%s); delivering it as is",
                            self._name, entry_id, problem)
            messages.append(ReceivedMessage(body, metadata, entry_id, redelivered, problem, self))
            leases[entry_id] = now  # renewed until acknowledged (Acks.leases)
        if redelivered:
            self.stats["redelivered"] += len(messages)
        if deleted:
            self._report_deleted(deleted)
            self._acks.queue_acks(deleted)
        if malformed:
            self._acks.queue_moves(malformed)
        return messages

    def _report_deleted(self, ids: list[str]) -> None:
        self.stats["deleted"] += len(ids)
        log.warning("subscription %s: %d pending entries were deleted from the stream before they were "
                    "acknowledged (trimmed or XDEL); acknowledged them: %s", self._name, len(ids), format_ids(ids))

    # -- acknowledging ---------------------------------------------------------------

    def _elsewhere(self, method: Callable[..., None], messages: tuple[Any, ...]) -> None:
        """A call from another thread (the blocking facade, a worker thread): hop to our loop.

        Calls queue up in order; only the first of a burst wakes the loop. No lock (a
        deque append is atomic): a call is queued before the flag is read, and the
        wake-up clears the flag before it takes the queue, so a call seeing the flag set
        is taken by a wake-up not started yet, which runs before any ``flush`` or
        ``shutdown`` scheduled after the call."""
        self._foreign.append((method, messages))
        if not self._foreign_wake:
            self._foreign_wake = True
            try:
                self._loop.call_soon_threadsafe(self._take_foreign)
            except RuntimeError:  # the loop is closed: nothing will take them
                self._foreign.clear()
                self._foreign_wake = False  # the next call fails the same way
                raise

    def _take_foreign(self) -> None:
        self._foreign_wake = False
        foreign = self._foreign
        # What is queued now; later calls saw the flag clear and scheduled another wake-up.
        calls = [foreign.popleft() for _ in range(len(foreign))]
        # Runs of one method (ack after ack…) as one call, order kept.
        for method, group in itertools.groupby(calls, key=lambda call: call[0]):
            method(*itertools.chain.from_iterable(messages for _, messages in group))

    def ack_message(self, message: ReceivedMessage) -> None:
        """``ack(message)``, for ``message.ack()``: once per message in most applications,
        so kept to a few operations."""
        if self._noack:
            return
        if get_ident() == self._loop_thread:
            self._acks.ack_one(message.id)
        else:
            self._elsewhere(self.ack, (message,))

    def ack(self, *messages: ReceivedMessage | str) -> None:
        """Acknowledge messages; sent in the background, batched (see ``flush``). Thread-safe."""
        if self._noack:
            return
        if get_ident() != self._loop_thread:
            self._elsewhere(self.ack, messages)
            return
        if len(messages) == 1:
            (message,) = messages
            self._acks.ack_one(message if isinstance(message, str) else message.id)
        else:
            self._acks.ack([m if isinstance(m, str) else m.id for m in messages])

    def nack(self, *messages: ReceivedMessage | str) -> None:
        """Give messages back: any consumer of the group (this one too) gets them again promptly."""
        if self._noack:
            return
        if get_ident() != self._loop_thread:
            self._elsewhere(self.nack, messages)
            return
        self._acks.nack([m if isinstance(m, str) else m.id for m in messages])

    def _confirmed(self, acks: list[str], nacks: list[str], moved: list[str]) -> None:
        """Redis answered a batch of acks, nacks and moves."""
        if self._drain_from is not None:
            self._settled_while_draining.update(acks, nacks, moved)
        if nacks:
            # Take them back ourselves at the next fetch unless another consumer is faster.
            self._next_reclaim, self._reclaim_from = 0.0, "0-0"

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
                await self._acks.settled()
        except TimeoutError:
            raise TimeoutError(f"subscription {self._name}: Redis did not confirm {self._acks.waiting} acks/nacks "
                               f"within {limit:g}s; they stay queued and are sent once it answers") from None
        if self._acks.failure is not None:
            raise self._acks.failure

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
                    await self._acks.settled()
            except TimeoutError:
                pass
            unsent = await self._acks.abandon()
            if unsent:
                log.warning("subscription %s: shut down without Redis confirming %d acks/nacks; those entries stay "
                            "pending and will be delivered again: %s", self._name, len(unsent), format_ids(unsent))
            return unsent
        finally:
            if self._read_ahead_task is not None:
                self._read_ahead_task.cancel()
            self._acks.stop_renewing()
            _in_use.discard(self._key)
            # A call still in flight is waited for only as long as the deadline allows;
            # disconnecting the pool then ends it.
            for link in (self._control, self._read, *([self._dead_link] if self._dead_link else [])):
                try:
                    async with asyncio.timeout_at(max(deadline, self._loop.time() + 0.05)):
                        await link.close()
                except TimeoutError:
                    pass
            await self._pool.disconnect()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()


async def open_subscription(url: str, *, redis_url: str | None = None,
                            client: aredis.Redis | aredis.RedisCluster | None = None, batch_size: int = 100,
                            block: float = 2.0, timeout: float = 10.0,
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
    server = (redact(redis_url or os.environ.get("REDIS_URL", "")) if client is None
              else repr(getattr(client, "connection_pool", client)))
    pool = server_for(client, redis_url, "subscription", url)
    subscription = Subscription(spec, pool, server=server, batch_size=batch_size, block=block, timeout=timeout,
                                dead_letter=dead_letter, create_group=create_group,
                                reclaim_interval=reclaim_interval)
    await subscription._open()
    return subscription
