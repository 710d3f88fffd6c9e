"""The publisher: a ``Topic`` appends messages to one stream, as the Go driver does."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aredis
from redis.exceptions import ResponseError

from .cluster import Server, server_for
from .link import TRANSIENT, Command
from .messages import MAX_TRIP, Message, PublishError, PubSubError, backoff, log
from .urls import TopicURL, parse_topic_url
from .wire import BODY, HEADERS, encode_body, encode_headers


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
        self.stream = spec.stream
        self.maxlen = spec.maxlen
        self._pool = pool
        self._link = pool.link(spec.stream, timeout, name="redistreams-pub")
        self._retry_for = retry_for
        self._timeout = timeout
        self._replicas = replicas
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
        if self._replicas:
            commands.append(("WAIT", self._replicas, max(1, int(self._timeout * 1000))))
        try:
            replies = await self._round_trip(commands)
            unreplicated = self._unreplicated(replies.pop()) if self._replicas else None
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
            if unreplicated and not errors:
                item.future.set_exception(PublishError(
                    f"publish to {self.stream}: stored, but {unreplicated}; a failover may lose them",
                    [r.decode() for r in mine]))
            elif errors:
                ids = [None if isinstance(r, ResponseError) else r.decode() for r in mine]
                item.future.set_exception(PublishError(
                    f"publish to {self.stream}: {len(errors)} of {len(mine)} messages not stored: {errors[0]}", ids))
            else:
                item.future.set_result([r.decode() for r in mine])

    def _unreplicated(self, reply: Any) -> str | None:
        """Why a WAIT reply falls short of ``replicas``; None when it does not."""
        if isinstance(reply, ResponseError):
            return f"WAIT was refused: {reply}"
        if int(reply) < self._replicas:
            return f"only {reply} of {self._replicas} replicas confirmed them within {self._timeout:g}s"
        return None

    async def _round_trip(self, commands: list[Command]) -> list[Any]:
        deadline = time.monotonic() + self._retry_for
        attempt = 0
        extra = self._timeout if self._replicas else 0.0
        while True:
            try:
                return await self._link.call(commands, extra_timeout=extra)
            except TRANSIENT as exc:
                if time.monotonic() >= deadline or self._closed:
                    raise
                log.warning("topic %s: %s; retrying", self.stream, exc)
                await backoff(attempt)
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


async def open_topic(url: str, *, redis_url: str | None = None,
                     client: aredis.Redis | aredis.RedisCluster | None = None, timeout: float = 10.0,
                     retry_for: float = 10.0, replicas: int = 0) -> Topic:
    """Open ``redis://<stream key>[?maxlen=N]`` on ``redis_url`` (default ``REDIS_URL``;
    ``redis+cluster://host:port,…`` or any node's URL for a Redis Cluster)."""
    spec = parse_topic_url(url)
    return Topic(spec, server_for(client, redis_url, "topic", url), timeout=timeout, retry_for=retry_for,
                 replicas=replicas)
