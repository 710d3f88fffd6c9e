"""The publisher: a ``Topic`` appends messages to one stream, as the Go driver does."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aredis
from redis.exceptions import ResponseError

from .cluster import Server, server_for
from .link import TRANSIENT, Command
from .messages import MAX_TRIP, Message, PublishError, PubSubError, Retries, log
from .urls import TopicURL, parse_topic_url
from .wire import BODY, HEADERS, encode_body, encode_headers

CLIENT_NAME = "redistreams-pub"  # CLIENT SETNAME of a publisher's connections


class Publishing:
    """What a topic sends and what Redis' answers mean, without I/O.

    The asyncio ``Topic`` and the blocking one (``sync.py``) both use it, so they write
    the same entries and raise the same errors: one ``XADD <stream> [MAXLEN n] * headers
    <json> body <bytes>`` per message, as the Go driver writes it; ``WAIT replicas`` at the
    end of a round trip when asked; the retry rule of ``messages.Retries``.
    """

    def __init__(self, spec: TopicURL, *, timeout: float, retry_for: float, replicas: int) -> None:
        self.stream = spec.stream
        self.maxlen = spec.maxlen
        self.timeout = timeout
        self.retry_for = retry_for
        self.replicas = replicas
        self.extra_timeout = timeout if replicas else 0.0  # WAIT may take that long on its own
        prefix: list[Any] = ["XADD", spec.stream]
        if spec.maxlen:
            # go-redis sends an exact MAXLEN: it can trim entries no group has read yet.
            prefix += ["MAXLEN", spec.maxlen]
            log.warning("topic %s: maxlen=%d trims exactly on every send and can drop entries consumer groups "
                        "have not read or acknowledged; prefer a Topic retention managed by redistreams",
                        spec.stream, spec.maxlen)
        self._prefix = tuple(prefix) + ("*",)

    def command(self, message: Message | bytes | str) -> Command:
        if not isinstance(message, Message):
            message = Message(encode_body(message))  # Message's body is bytes: converted as it would
        return self._prefix + (HEADERS, encode_headers(message.metadata), BODY, message.body)

    def trip(self, commands: list[Command]) -> list[Command]:
        """The round trip storing ``commands`` (in place: WAIT appended when replicas are asked)."""
        if self.replicas:
            commands.append(("WAIT", self.replicas, max(1, int(self.timeout * 1000))))
        return commands

    def retries(self) -> Retries:
        return Retries(f"topic {self.stream}", self.retry_for)

    def outcomes(self, replies: list[Any], sizes: list[int]) -> list[list[str] | PubSubError]:
        """Each sender's entry IDs, or the error to raise to it, from the replies of a trip
        made of senders of ``sizes`` messages each (in order)."""
        unreplicated = self._unreplicated(replies[-1]) if self.replicas else None
        results: list[list[str] | PubSubError] = []
        offset = 0
        for size in sizes:
            mine = replies[offset:offset + size]
            offset += size
            errors = [r for r in mine if isinstance(r, ResponseError)]
            if unreplicated and not errors:
                results.append(PublishError(f"publish to {self.stream}: stored, but {unreplicated}; "
                                            f"a failover may lose them", [r.decode() for r in mine]))
            elif errors:
                ids = [None if isinstance(r, ResponseError) else r.decode() for r in mine]
                results.append(PublishError(f"publish to {self.stream}: {len(errors)} of {len(mine)} messages "
                                            f"not stored: {errors[0]}", ids))
            else:
                results.append([r.decode() for r in mine])
        return results

    def refused(self, error: ResponseError, size: int) -> PublishError:
        """Redis refused the connection itself (e.g. SELECT): no message was sent."""
        return PublishError(f"publish to {self.stream}: no message stored: {error}", [None] * size)

    def interrupted(self) -> PubSubError:
        return PubSubError(f"publish to {self.stream} interrupted; the messages may or may not be stored")

    def _unreplicated(self, reply: Any) -> str | None:
        """Why a WAIT reply falls short of ``replicas``; None when it does not."""
        if isinstance(reply, ResponseError):
            return f"WAIT was refused: {reply}"
        if int(reply) < self.replicas:
            return f"only {reply} of {self.replicas} replicas confirmed them within {self.timeout:g}s"
        return None


@dataclass(slots=True)
class _Send:
    commands: list[Command]
    future: asyncio.Future[list[str]]


class Topic:
    """Publishes to one stream. Concurrent ``send`` calls share round trips.

    Each message is one ``XADD <stream> [MAXLEN n] * headers <json> body <bytes>``, as
    the Go driver writes it. A connection failure is retried for ``retry_for`` seconds;
    a retried XADD may already have been stored, so delivery is at least once.

    ``replicas`` (default 0) makes each round trip end with ``WAIT replicas``: a send
    returns once that many replicas hold its messages, and raises ``PublishError`` (the
    messages are stored on the master, maybe not beyond) when they do not within
    ``timeout``. Replication is asynchronous: without it, a failover (Cluster, Sentinel)
    can lose the last messages the old master acknowledged.
    """

    def __init__(self, spec: TopicURL, pool: Server, *, timeout: float = 10.0,
                 retry_for: float = 10.0, max_batch: int = MAX_TRIP, replicas: int = 0) -> None:
        self.core = Publishing(spec, timeout=timeout, retry_for=retry_for, replicas=replicas)
        self.stream = spec.stream
        self.maxlen = spec.maxlen
        self.server = pool
        self.link = self._link = pool.link(spec.stream, timeout, name=CLIENT_NAME)  # used on the event loop only
        self._max_batch = max_batch
        self._queue: deque[_Send] = deque()
        self._flusher: asyncio.Task[None] | None = None
        self._busy = False  # a round trip is in flight (by a sender or the flusher)
        self._closed = False
        self._command = self.core.command

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
        core = self.core
        try:
            replies = await self._round_trip(core.trip([c for item in batch for c in item.commands]))
        except ResponseError as exc:  # refused while connecting (e.g. SELECT): nothing was sent
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(core.refused(exc, len(item.commands)))
            return
        except Exception as exc:  # noqa: BLE001 - handed to every waiting sender
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        except BaseException:
            # The sender making this trip was cancelled: the others must not wait forever.
            interrupted = core.interrupted()
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(interrupted)
                    item.future.exception()  # retrieved: the cancelled sender never awaits its own
            raise
        for item, outcome in zip(batch, core.outcomes(replies, [len(item.commands) for item in batch])):
            if item.future.done():
                continue
            if isinstance(outcome, list):
                item.future.set_result(outcome)
            else:
                item.future.set_exception(outcome)

    async def _round_trip(self, commands: list[Command]) -> list[Any]:
        retries = self.core.retries()
        extra = self.core.extra_timeout
        while True:
            try:
                return await self._link.call(commands, extra_timeout=extra)
            except TRANSIENT as exc:
                delay = retries.delay(exc, self._closed)
                if delay is None:
                    raise
                await asyncio.sleep(delay)

    async def shutdown(self) -> None:
        """Wait for messages being sent, then close the connection."""
        self._closed = True
        while self._busy or self._queue:
            if self._flusher is not None:
                await asyncio.shield(self._flusher)
            else:
                await asyncio.sleep(0.005)
        await self._link.close()
        await self.server.disconnect()

    async def __aenter__(self) -> Topic:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()


async def open_topic(url: str, *, redis_url: str | None = None,
                     client: aredis.Redis | aredis.RedisCluster | None = None, timeout: float = 10.0,
                     retry_for: float = 10.0, replicas: int = 0) -> Topic:
    """Open ``redis://<stream key>[?maxlen=N]`` on ``redis_url`` (default ``REDIS_URL``;
    ``redis+cluster://host:port,…`` or any node's URL for a Redis Cluster)."""
    spec = parse_topic_url(url)
    return Topic(spec, server_for(client, redis_url, "topic", url), timeout=timeout, retry_for=retry_for,
                 replicas=replicas)
