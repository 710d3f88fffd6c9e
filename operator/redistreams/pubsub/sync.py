"""Blocking facade over the asyncio client for code without an event loop.

All logic lives in the asyncio classes and the cores they share; these run them on one
private event loop in a daemon thread, so background work (batched acknowledgements,
lease renewal) carries on between calls. ``Topic`` sends in the caller's thread instead
(``blocking.py``), with the asyncio Topic's ``Publishing`` core.

A hop to that thread costs tens of microseconds, so ``Subscription.receive`` brings a
batch across (``read_ahead``) and hands it out one message at a time. Those messages are
delivered already: pending in the group, their leases renewed like any message held;
``shutdown`` gives back the ones not handed out, and if the process dies they are
delivered again (to this consumer name when it reopens, or to another after autoclaim).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Coroutine, Iterable, Iterator
from typing import Any, TypeVar

from redis.exceptions import MovedError, ResponseError

from . import publisher, subscriber
from .blocking import BlockingLink, blocking_link
from .cluster import to_send_again
from .link import TRANSIENT, Command
from .messages import DeadLetterError, Message, PubSubError, ReceivedMessage, SubscriptionClosed

T = TypeVar("T")


class _Loop:
    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def get(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None or cls._loop.is_closed():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="redistreams-pubsub", daemon=True).start()
                cls._loop = loop
            return cls._loop


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run_coroutine_threadsafe(coroutine, _Loop.get()).result()


class Topic:
    """Blocking ``redistreams.pubsub.Topic``. ``send`` and ``send_batch`` make their round
    trip in the calling thread (``blocking.BlockingLink``), with the asyncio Topic's
    ``Publishing`` core: the same entries, errors, retries and WAIT. Any number of threads
    may send at once; each thread's messages are stored in the order it sent them.

    On a Redis Cluster a trip goes from the calling thread to the master of the stream's
    slot by the asyncio Topic's slot map; what that map cannot settle runs on the asyncio
    Topic's ``cluster.RoutedLink`` (on the event loop): finding out whether a plain
    ``redis://`` server is a cluster node, loading the map, and sending again, in order,
    the commands answered MOVED, ASK, TRYAGAIN or CLUSTERDOWN.
    """

    def __init__(self, topic: publisher.Topic, link: BlockingLink | None = None) -> None:
        self._topic = topic
        self._core = topic.core
        self._link = link
        self._nodes: dict[tuple[str, int], BlockingLink] = {}  # on a cluster: a link per master
        self._slot = topic.server.slot_of(topic.stream)
        self._closed = False
        self.stream = topic.stream

    def send(self, message: Message | bytes | str) -> str:
        if self._link is None:
            return _run(self._topic.send(message))
        (entry_id,) = self._publish([self._core.command(message)])
        return entry_id

    def send_batch(self, messages: Iterable[Message | bytes | str]) -> list[str]:
        if self._link is None:
            return _run(self._topic.send_batch(list(messages)))
        commands = [self._core.command(m) for m in messages]
        return self._publish(commands) if commands else []

    def _publish(self, commands: list[Command]) -> list[str]:
        """``publisher.Topic._send_one_batch`` for one sender, in this thread."""
        if self._closed:
            raise PubSubError(f"topic {self.stream} is shut down")
        core = self._core
        trip = core.trip(commands)
        size = len(trip) - (1 if core.replicas else 0)
        retries = core.retries()
        while True:
            try:
                replies = self._call(trip)
                break
            except ResponseError as exc:  # refused while connecting (e.g. SELECT): nothing was sent
                raise core.refused(exc, size) from None
            except TRANSIENT as exc:
                delay = retries.delay(exc, self._closed)
                if delay is None:
                    raise
                time.sleep(delay)
        (outcome,) = core.outcomes(replies, [size])
        if not isinstance(outcome, list):
            raise outcome
        return outcome

    def _call(self, trip: list[Command]) -> list[Any]:
        """One try of a round trip (``cluster.RoutedLink.call``, made here where it can be)."""
        assert self._link is not None
        extra = self._core.extra_timeout
        server = self._topic.server
        if server.cluster is False:
            return self._link.call(trip, extra_timeout=extra)
        address = server.known_master(self._slot)
        if address is None:
            return _run(self._topic.link.call(trip, extra_timeout=extra))
        node = self._nodes.get(address)
        if node is None:
            node = self._nodes.setdefault(address, self._link.at(address))  # one per address, whichever thread
            if self._closed:
                node.close()
        try:
            replies = node.call(trip, extra_timeout=extra)
        except TRANSIENT:
            server.stale(address)  # a master killed: its replica may own the slot by the next try
            raise
        again = to_send_again(trip, replies)
        if again:
            first = replies[again[0]]
            if isinstance(first, MovedError):
                server.moved(first.slot_id, first.node_addr)
            redone = _run(self._topic.link.call([trip[i] for i in again], extra_timeout=extra))
            for i, reply in zip(again, redone):
                replies[i] = reply
        return replies

    def shutdown(self) -> None:
        self._closed = True
        for link in [self._link, *list(self._nodes.values())]:
            if link is not None:
                link.close()
        _run(self._topic.shutdown())

    def __enter__(self) -> Topic:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


class Subscription:
    def __init__(self, subscription: subscriber.Subscription) -> None:
        self._subscription = subscription
        self.stream, self.group, self.consumer = subscription.stream, subscription.group, subscription.consumer
        # Read ahead, not handed out yet. Filled on the event loop's thread (in fetch
        # order), emptied by popleft from any thread: each message goes to one caller.
        self._ahead: deque[ReceivedMessage] = deque()

    @property
    def stats(self) -> dict[str, int]:
        stats = dict(self._subscription.stats)
        stats["received"] = stats.get("received", 0) - len(self._ahead)
        return stats

    @property
    def dead_letter_error(self) -> DeadLetterError | None:
        return self._subscription.dead_letter_error

    def receive(self, timeout: float | None = None) -> ReceivedMessage:
        deadline = None if timeout is None else time.monotonic() + timeout
        remaining = timeout
        while True:
            try:
                return self._ahead.popleft()
            except IndexError:
                pass
            # Into _ahead, not returned: a caller interrupted meanwhile (Ctrl-C) leaves the
            # batch to the next receive or to shutdown instead of dropping its first message.
            # Another thread may take it all first: then read again, within the deadline.
            _run(self._read_ahead(remaining))
            if deadline is not None:
                remaining = max(0.0, deadline - time.monotonic())

    async def _read_ahead(self, timeout: float | None) -> None:
        self._ahead.extend(await self._subscription.read_ahead(timeout))

    def receive_batch(self, max_messages: int | None = None, timeout: float | None = None) -> list[ReceivedMessage]:
        wanted = max_messages or self._subscription.batch_size
        batch: list[ReceivedMessage] = []
        try:
            while len(batch) < wanted:
                batch.append(self._ahead.popleft())
        except IndexError:
            pass
        return batch or _run(self._subscription.receive_batch(max_messages, timeout))

    def ack(self, *messages: ReceivedMessage | str) -> None:
        self._subscription.ack(*messages)  # thread-safe, does not wait

    def nack(self, *messages: ReceivedMessage | str) -> None:
        self._subscription.nack(*messages)

    def flush(self, timeout: float | None = None) -> None:
        """Bounded like ``redistreams.pubsub.Subscription.flush`` (TimeoutError, AcknowledgeError)."""
        _run(self._subscription.flush(timeout))

    def shutdown(self, timeout: float | None = None) -> list[str]:
        """Bounded like ``redistreams.pubsub.Subscription.shutdown``; returns the IDs whose ack or nack
        Redis did not confirm (they stay pending and are delivered again)."""
        return _run(self._shut_down(timeout))

    async def _shut_down(self, timeout: float | None) -> list[str]:
        unread: list[ReceivedMessage] = []
        try:
            while True:
                unread.append(self._ahead.popleft())
        except IndexError:
            pass
        self._subscription.put_back(unread)  # given back by shutdown with its own unread ones
        return await self._subscription.shutdown(timeout)

    def __iter__(self) -> Iterator[ReceivedMessage]:
        ahead = self._ahead
        while True:
            try:
                message = ahead.popleft()  # ``receive``'s common case, without the call
            except IndexError:
                try:
                    message = self.receive()
                except SubscriptionClosed:
                    return
            yield message

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def open_topic(url: str, **options: Any) -> Topic:
    """Blocking ``redistreams.pubsub.open_topic``; same URL and options."""
    topic = _run(publisher.open_topic(url, **options))
    link = blocking_link(options.get("redis_url"), options.get("client"), "topic", url,
                         timeout=options.get("timeout", 10.0), name=publisher.CLIENT_NAME)
    return Topic(topic, link)


def open_subscription(url: str, **options: Any) -> Subscription:
    """Blocking ``redistreams.pubsub.open_subscription``; same URL and options."""
    return Subscription(_run(subscriber.open_subscription(url, **options)))
