"""Acknowledgements, nacks and leases of one subscription.

Acks, nacks and moves of malformed entries are queued and sent in batches on the
subscription's second connection, so they never wait behind a blocking read. Acks
linger a moment (``ACK_LINGER``) first: a read ahead (never blocking) going meanwhile
takes them along in its round trip (``ride``), one trip per batch instead of two. Entries
handed out and not acknowledged yet, and those whose ack Redis has not confirmed, are
leased: their idle time is reset before ``autoclaim`` would let another consumer take
them. When Redis refuses any of this (NOPERM…), ``failure`` says so and receiving stops.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable

from redis.exceptions import ResponseError

from .cluster import SlotNotServedError
from .deadletter import DeadLettering
from .link import TRANSIENT, Command, RoundTrips
from .messages import MAX_TRIP, AcknowledgeError, Throttled, backoff, log
from .resets import group_gone
from .urls import SubscriptionURL

# Nacked entries get this idle time so any consumer's reclaim takes them at once,
# including Go consumers with the driver's default of 30 minutes.
_NACK_IDLE_MS = 30 * 60 * 1000

# Told, once Redis confirmed a batch, which acks, nacks and moves it held.
Confirmed = Callable[[list[str], list[str], list[str]], None]

# Seconds queued acks wait for a read ahead to take them along before they go on their
# own trip. Short beside lease renewal and autoclaim; ``flush`` and ``shutdown`` never wait it.
ACK_LINGER = 0.002


class Ride:
    """Acks sent ahead of a read in that read's round trip (``Acks.ride``)."""

    __slots__ = ("command", "ids", "done")

    def __init__(self, command: Command, ids: list[str], done: asyncio.Future[None]) -> None:
        self.command, self.ids, self.done = command, ids, done


class Acks:
    """What one consumer owes Redis, sent on ``link`` from the subscription's event loop.

    ``on_confirmed`` hears of every batch Redis answered; ``dead_lettering`` moves the
    malformed entries queued with ``queue_moves``.
    """

    def __init__(self, link: RoundTrips, spec: SubscriptionURL, *, name: str, stats: Counter[str], autoclaim_ms: int,
                 renew_after: float, dead_lettering: DeadLettering | None, on_confirmed: Confirmed) -> None:
        self.stream, self.group, self.consumer = spec.stream, spec.group, spec.consumer
        self.stats = stats
        self.failure: AcknowledgeError | None = None  # once Redis refused any: raised by receive and flush
        self._link = link
        self._name = name
        self._autoclaim_ms = autoclaim_ms
        self._renew_after = renew_after
        self._dead_lettering = dead_lettering
        self._on_confirmed = on_confirmed
        # Delivered, and no ack confirmed by Redis yet -> lease taken. An acknowledged entry
        # keeps its lease until Redis confirms the ack: another consumer must not reclaim,
        # and handle again, an entry whose ack is only slow. (One dict, so an ack costs no
        # lease bookkeeping; the confirmation of its batch ends the lease.)
        self._outstanding: dict[str, float] = {}
        self._refused: dict[str, None] = {}  # acks and nacks Redis refused (in order): still pending
        self._acks: list[str] = []
        self._nacks: list[str] = []
        self._malformed: list[str] = []  # entries to move to the dead-letter stream
        self._task: asyncio.Task[None] | None = None
        self._linger: asyncio.TimerHandle | None = None  # sends queued acks unless a read takes them first
        self._ride: Ride | None = None  # acks on their way in a read's round trip
        self._abandoned = False
        self._renew_task: asyncio.Task[None] | None = None
        self._refusal_log = Throttled()
        self._loop = asyncio.get_running_loop()

    # -- what is held ----------------------------------------------------------------

    @property
    def leases(self) -> dict[str, float]:
        """Entries handed out and not acknowledged (or whose ack Redis has not confirmed
        yet) -> lease taken (``time.monotonic``): the subscriber adds each entry it
        decodes; renewed until the ack is confirmed."""
        return self._outstanding

    def held(self) -> set[str]:
        """Handed out and not acknowledged, or with an ack, nack or move queued or in flight."""
        held = set(self._outstanding)
        held.update(self._acks, self._nacks, self._malformed)
        if self._ride is not None:
            held.update(self._ride.ids)
        return held

    @property
    def waiting(self) -> int:
        """Acks and nacks not confirmed by Redis yet."""
        return len(self._acks) + len(self._nacks) + (0 if self._ride is None else len(self._ride.ids))

    # -- queueing --------------------------------------------------------------------

    def ack(self, ids: list[str]) -> None:
        self.stats["acked"] += len(ids)
        self._acks.extend(ids)
        if self._task is None and self._linger is None:
            self._linger = self._loop.call_later(ACK_LINGER, self._lingered)

    def ack_one(self, entry_id: str) -> None:
        """``ack([entry_id])`` without the list: once per message in most applications."""
        self.stats["acked"] += 1
        self._acks.append(entry_id)
        if self._task is None and self._linger is None:
            self._linger = self._loop.call_later(ACK_LINGER, self._lingered)

    def _lingered(self) -> None:
        self._linger = None
        if self._acks:
            self._kick()

    def nack(self, ids: list[str]) -> None:
        for entry_id in ids:
            self._outstanding.pop(entry_id, None)
        self.stats["nacked"] += len(ids)
        self._nacks.extend(ids)
        self._kick()

    def queue_acks(self, ids: list[str]) -> None:
        self._acks.extend(ids)
        self._kick()

    def queue_moves(self, ids: list[str]) -> None:
        """Entries not in the driver's format, for the dead-letter stream."""
        self._malformed.extend(ids)
        self._kick()

    def _kick(self) -> None:
        if self._task is None and not self._abandoned:
            self._task = self._loop.create_task(self._flush())

    async def settled(self) -> None:
        """Wait until everything queued so far was answered by Redis."""
        while True:
            if self._acks:
                self._kick()  # someone waits: no lingering
            if self._task is not None:
                await asyncio.shield(self._task)
            elif self._ride is not None:
                await asyncio.shield(self._ride.done)
            else:
                return

    # -- riding along with reads -----------------------------------------------------

    def ride(self) -> Ride | None:
        """The queued acks as an XACK to send ahead of a read (one that never blocks) in its
        round trip; None when there are none or a flush is under way (it sends them). The
        caller hands the XACK's reply to ``rode``, or calls ``unride`` if the trip failed."""
        if not self._acks or self._task is not None or self._ride is not None or self.failure is not None:
            return None
        ids = self._acks[:MAX_TRIP]
        del self._acks[:len(ids)]
        if not self._acks and self._linger is not None:
            self._linger.cancel()
            self._linger = None
        self._ride = Ride(("XACK", self.stream, self.group, *ids), ids, self._loop.create_future())
        return self._ride

    def rode(self, ride: Ride, reply: object) -> None:
        """Redis answered the XACK of a ride: as ``_flush`` does with its own."""
        if isinstance(reply, ResponseError):
            self._refusal("XACK", f"acknowledging {len(ride.ids)} entries", ride.ids, reply, unconfirmed=True)
        outstanding = self._outstanding
        for entry_id in ride.ids:
            outstanding.pop(entry_id, None)
        self._ride_over(ride)
        self._on_confirmed(ride.ids, [], [])

    def unride(self, ride: Ride) -> None:
        """The read's trip failed (or was cancelled): its acks are queued again, sent by a
        flush. (Redis may have applied them; an XACK sent twice does nothing more.)"""
        self._acks.extend(ride.ids)  # at the end: a flush under way deletes what it sent from the front
        self._ride_over(ride)
        self._kick()

    def _ride_over(self, ride: Ride) -> None:
        self._ride = None
        if not ride.done.done():
            ride.done.set_result(None)

    # -- sending ---------------------------------------------------------------------

    async def _flush(self) -> None:
        attempt = 0
        try:
            while self._acks or self._nacks or self._malformed:
                acks, nacks, malformed = self._acks[:MAX_TRIP], self._nacks[:MAX_TRIP], self._malformed[:MAX_TRIP]
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
                        replies = await self._link.call(commands)
                    except ResponseError as exc:  # refused while connecting (e.g. SELECT): nothing was sent
                        replies = [exc] * len(commands)
                    if malformed:
                        assert self._dead_lettering is not None
                        await self._dead_lettering.move_malformed(self._link, malformed)
                except TRANSIENT as exc:
                    log.warning("subscription %s: acknowledging: %s; retrying", self._name, exc)
                    await backoff(attempt)
                    attempt += 1
                    continue
                attempt = 0
                for (command, purpose, ids), reply in zip(sent, replies):
                    if isinstance(reply, ResponseError):
                        self._refusal(command, purpose, ids, reply, unconfirmed=True)
                del self._acks[:len(acks)], self._nacks[:len(nacks)], self._malformed[:len(malformed)]
                outstanding = self._outstanding
                for entry_id in acks:  # confirmed or refused: the lease ends either way
                    outstanding.pop(entry_id, None)
                self._on_confirmed(acks, nacks, malformed)
        finally:
            self._task = None

    def _refusal(self, command: str, purpose: str, ids: list[str], error: ResponseError, *,
                 unconfirmed: bool) -> None:
        """Redis refused an ack, nack or lease renewal. With the group gone there is nothing
        to settle (reading deals with it). Otherwise (NOPERM…) the entries stay pending and
        are delivered again, and receiving stops: every message handed out from then on
        would come back too."""
        text = str(error)
        if group_gone(text):
            log.debug("subscription %s: %s: %s", self._name, purpose, text)
            return
        refused = [entry_id for entry_id in ids if entry_id not in self._refused] if unconfirmed else []
        self._refused.update(dict.fromkeys(refused))
        if self.failure is None:
            self.failure = AcknowledgeError(
                f"subscription {self._name}: Redis refused {command} ({purpose}): {text}. Those entries stay pending "
                f"and are delivered again (to this consumer name when it reopens, or to another consumer after "
                f"autoclaim); receiving stops: grant the command and reopen the subscription", command, [])
        self.failure.ids.extend(refused)
        self._refusal_log.error("subscription %s: Redis refused %s (%s): %s", self._name, command, purpose, text)

    # -- leases ----------------------------------------------------------------------

    def start_renewing(self) -> None:
        self._renew_task = asyncio.create_task(self._renew_leases())

    def stop_renewing(self) -> None:
        if self._renew_task is not None:
            self._renew_task.cancel()

    async def _renew_leases(self) -> None:
        """Keep messages a slow handler still holds, and those whose ack Redis has not
        confirmed yet, from being reclaimed by other consumers."""
        min_idle_ms = int(self._renew_after * 1000)
        while True:
            await asyncio.sleep(self._renew_after / 2)
            cutoff = time.monotonic() - self._renew_after
            stale = [entry_id for entry_id, since in self._outstanding.items() if since <= cutoff]
            if not stale:
                continue
            try:
                for start in range(0, len(stale), MAX_TRIP):
                    chunk = stale[start:start + MAX_TRIP]
                    (reply,) = await self._link.call([("XCLAIM", self.stream, self.group, self.consumer,
                                                       min_idle_ms, *chunk, "JUSTID")])
                    if isinstance(reply, ResponseError):
                        raise reply
            except (*TRANSIENT, SlotNotServedError) as exc:
                log.warning("subscription %s: renewing leases: %s", self._name, exc)
                continue
            except ResponseError as exc:
                self._refusal("XCLAIM", f"renewing the leases of {len(stale)} entries", stale, exc, unconfirmed=False)
                if group_gone(str(exc)):
                    continue
                return  # refused: asking again every tick would change nothing
            now = time.monotonic()
            outstanding = self._outstanding
            for entry_id in stale:
                if entry_id in outstanding:
                    outstanding[entry_id] = now
            self.stats["leases_renewed"] += len(stale)

    # -- closing ---------------------------------------------------------------------

    async def abandon(self) -> list[str]:
        """Stop sending acks and nacks; returns the IDs not confirmed by Redis (refused or unsent)."""
        self._abandoned = True
        task = self._task
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        riding = [] if self._ride is None else self._ride.ids
        unsent = list(dict.fromkeys([*self._refused, *self._acks, *riding, *self._nacks]))
        self._acks.clear()
        self._nacks.clear()
        self._malformed.clear()  # still pending: moved when next claimed
        self._refused.clear()
        return unsent
