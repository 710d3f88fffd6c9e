"""One Redis connection used in round trips: many commands written at once, their
replies read back in order, one deadline for the whole trip.

redis-py's asyncio pipeline packs commands in pure Python and arms a timer for every
reply; packing with hiredis and timing the round trip as a whole more than doubles the
throughput of batched XADD/XACK, which is where a message client spends its time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

import hiredis
import redis.asyncio as aredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..connection import RedisTarget
from ..sentinel import SCHEMES as SENTINEL_SCHEMES
from ..sentinel import master_pool

Command = tuple[Any, ...]
SENTINEL_PREFIXES = tuple(f"{scheme}://" for scheme in SENTINEL_SCHEMES)


def make_pool(url: str, *, connect_timeout: float = 5.0, max_connections: int = 16) -> aredis.ConnectionPool:
    """An asyncio pool for ``url`` (go-redis-only options dropped, binary replies)."""
    if url.startswith(SENTINEL_PREFIXES):
        return master_pool(url, connect_timeout=connect_timeout, max_connections=max_connections)
    sync_pool = RedisTarget(url, connect_timeout=connect_timeout).client().connection_pool
    connection_class = {
        "Connection": aredis.Connection,
        "SSLConnection": aredis.SSLConnection,
        "UnixDomainSocketConnection": aredis.UnixDomainSocketConnection,
    }[sync_pool.connection_class.__name__]
    return pool_like(connection_class, sync_pool.connection_kwargs, max_connections=max_connections)


def pool_like(connection_class: type, connection_kwargs: dict[str, Any], **extra: Any) -> aredis.ConnectionPool:
    """A pool to the same server as these connection settings, set up for round trips:
    replies stay bytes (bodies are binary), deadlines are per round trip, not per read."""
    return aredis.ConnectionPool(connection_class=connection_class, **round_trip_settings(connection_kwargs), **extra)


def round_trip_settings(connection_kwargs: dict[str, Any], socket_timeout: float | None = None) -> dict[str, Any]:
    """Connection settings for round trips (asyncio here, blocking in ``blocking.py``): binary
    replies, RESP2, no retry of redis-py's own (the caller retries)."""
    kwargs = dict(connection_kwargs)
    kwargs.update(decode_responses=False, socket_timeout=socket_timeout, protocol=2, retry=None)
    # Server push (maintenance notifications) needs RESP3; these round trips speak RESP2.
    for key in ("encoding_errors", "maint_notifications_config", "maint_notifications_pool_handler",
                "orig_host_address", "orig_socket_timeout", "orig_socket_connect_timeout"):
        kwargs.pop(key, None)
    return kwargs


class RoundTrips(Protocol):
    """What publishers and subscribers need of a connection: a ``Link``, or a
    ``cluster.RoutedLink`` (the same, routed to the node owning a key's slot)."""

    async def call(self, commands: Sequence[Command], *, extra_timeout: float = 0.0) -> list[Any]: ...

    async def call_one(self, *command: Any, extra_timeout: float = 0.0) -> Any: ...

    async def close(self) -> None: ...


class Link:
    """A connection taken from a pool for the life of a publisher or subscriber.

    One round trip at a time; commands of a trip are pipelined. Error replies come back
    as ``ResponseError`` objects in the result list, in place, like a pipeline with
    ``raise_on_error=False``. Connection failures and deadlines raise and drop the
    connection (its state is unknown); the next trip reconnects.
    """

    def __init__(self, pool: aredis.ConnectionPool, timeout: float = 10.0, name: str | None = None) -> None:
        self.pool = pool
        self.timeout = timeout
        self.name = name
        self._connection: aredis.Connection | None = None
        self._lock = asyncio.Lock()
        self._moved = getattr(pool, "moved", None)  # a Sentinel master's pool (sentinel.py)

    async def call(self, commands: Sequence[Command], *, extra_timeout: float = 0.0) -> list[Any]:
        if not commands:
            return []
        payload = b"".join([hiredis.pack_command(command) for command in commands])
        async with self._lock:
            connection = await self._get()
            try:
                async with asyncio.timeout(self.timeout + extra_timeout):
                    await connection.send_packed_command(payload, check_health=False)
                    replies: list[Any] = []
                    for _ in commands:
                        try:
                            replies.append(await connection.read_response())
                        except ResponseError as error:
                            replies.append(error)
            except TimeoutError:
                await self._drop()
                raise RedisTimeoutError(f"no reply from Redis within {self.timeout + extra_timeout:g}s") from None
            except BaseException:
                await self._drop()
                raise
            return replies

    async def call_one(self, *command: Any, extra_timeout: float = 0.0) -> Any:
        (reply,) = await self.call([command], extra_timeout=extra_timeout)
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    async def _get(self) -> aredis.Connection:
        if self._connection is not None and self._moved is not None and await self._moved(self._connection):
            await self._drop()  # to the master the sentinels name now
        if self._connection is None:
            # untyped in redis-py's asyncio ConnectionPool
            connection: aredis.Connection = await self.pool.get_connection()  # type: ignore[no-untyped-call]
            try:
                if self.name:
                    await connection.send_command("CLIENT", "SETNAME", self.name, check_health=False)
                    await connection.read_response()
            except ResponseError:
                pass  # an ACL without client|setname is fine
            except BaseException:
                await self.pool.release(connection)
                raise
            self._connection = connection
        return self._connection

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.disconnect(nowait=True)
            await self.pool.release(connection)

    async def close(self) -> None:
        async with self._lock:
            await self._drop()


TRANSIENT = (RedisConnectionError, RedisTimeoutError, OSError)
