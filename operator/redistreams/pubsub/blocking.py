"""Round trips made in the caller's thread: the blocking counterpart of ``link.Link``.

A hop to the facade's event loop costs two thread switches per call, more than a whole
XADD round trip on loopback. The blocking ``Topic`` (``sync.py``) therefore sends over
connections of its own, with redis-py's blocking connection classes (TLS, unix sockets,
ACL users, Sentinel: what ``connection.py`` builds for the URL) and hiredis packing;
what to send and what the replies mean stays in ``publisher.Publishing``.

Each thread takes an idle connection for its round trip and puts it back after, so
threads never share a connection mid-trip and one thread reuses the same connection.
A connection failure or timeout drops the connection (its state is unknown) and raises
as ``link.Link`` does; the caller retries with a new one.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

import hiredis
import redis.asyncio as aredis
import redis.connection as rconn
from redis.exceptions import ResponseError

from ..connection import RedisTarget
from .link import SENTINEL_PREFIXES, Command, round_trip_settings
from .messages import redis_url_for

Connection = Any  # a redis-py blocking connection (untyped in redis-py)
_BLOCKING_CLASSES: dict[type, Callable[..., Connection]] = {
    aredis.Connection: rconn.Connection,
    aredis.SSLConnection: rconn.SSLConnection,
    aredis.UnixDomainSocketConnection: rconn.UnixDomainSocketConnection,
}


class BlockingLink:
    """Blocking round trips to one server; any number of threads at once.

    Error replies come back in place as ``ResponseError`` objects, as from ``link.Link``.
    ``timeout`` bounds each read of a reply (``extra_timeout`` more for a trip that waits,
    like WAIT); redis-py raises its ``TimeoutError`` past it.
    """

    def __init__(self, connect: Callable[[], Connection], timeout: float, name: str | None,
                 pool: Any = None, *, settings: tuple[Callable[..., Connection], dict[str, Any]] | None = None) -> None:
        self._connect = connect
        self._settings = settings  # (connection class, settings): for ``at``
        self.timeout = timeout
        self.name = name
        # A Sentinel master's pool: connections are taken from it for each trip, so that
        # after a failover it closes them (sentinel.RECHECK_SECONDS) instead of this link
        # writing on to a demoted master whose writes would be lost when it rejoins.
        self._pool = pool
        self._named: weakref.WeakSet[Connection] = weakref.WeakSet()
        self._idle: list[Connection] = []  # list.pop/append are atomic: no lock needed
        self._closed = False

    def call(self, commands: Sequence[Command], *, extra_timeout: float = 0.0) -> list[Any]:
        if not commands:
            return []
        payload = b"".join([hiredis.pack_command(command) for command in commands])
        connection = self._take()
        replies: list[Any] = []
        try:
            connection.send_packed_command([payload], check_health=False)
            for _ in commands:
                try:
                    if extra_timeout:
                        replies.append(connection.read_response(timeout=self.timeout + extra_timeout))
                    else:
                        replies.append(connection.read_response())
                except ResponseError as error:
                    replies.append(error)
        except BaseException:
            connection.disconnect()
            if self._pool is not None:
                self._pool.release(connection)
            raise
        if self._pool is not None:
            self._pool.release(connection)
            if self._closed:
                connection.disconnect()
            return replies
        self._idle.append(connection)
        if self._closed:  # closed meanwhile: close() may have missed this one
            self._disconnect_idle()
        return replies

    def _take(self) -> Connection:
        if self._pool is not None:
            connection = self._pool.get_connection()
            if connection not in self._named:  # named again whenever the pool reconnects it
                self._named.add(connection)
                connection.register_connect_callback(self._set_name)
                try:
                    self._set_name(connection)
                except BaseException:
                    connection.disconnect()
                    self._pool.release(connection)
                    raise
            return connection
        try:
            return self._idle.pop()
        except IndexError:
            pass
        connection = self._connect()
        try:
            connection.connect()
            self._set_name(connection)
        except BaseException:
            connection.disconnect()
            raise
        return connection

    def at(self, address: tuple[str, int]) -> BlockingLink:
        """A link with these settings to another node of a Redis Cluster."""
        assert self._settings is not None, "a TCP server's link"
        connection_class, settings = self._settings
        node = {**settings, "host": address[0], "port": address[1]}
        return BlockingLink(lambda: connection_class(**node), self.timeout, self.name, settings=self._settings)

    def _set_name(self, connection: Connection) -> None:
        if self.name:
            connection.send_command("CLIENT", "SETNAME", self.name, check_health=False)
            try:
                connection.read_response()
            except ResponseError:
                pass  # an ACL without client|setname is fine

    def _disconnect_idle(self) -> None:
        while True:
            try:
                self._idle.pop().disconnect()
            except IndexError:
                return

    def close(self) -> None:
        """Close the idle connections now, the busy ones when their trip ends."""
        self._closed = True
        self._disconnect_idle()
        if self._pool is not None:
            self._pool.disconnect(inuse_connections=False)


def blocking_link(redis_url: str | None, client: object, what: str, url: str, *, timeout: float,
                  name: str | None) -> BlockingLink | None:
    """A blocking link to the server that ``client``, else ``redis_url`` (default ``REDIS_URL``)
    names, with the connection settings the asyncio client uses (on a Redis Cluster: its
    first seed's, ``at`` another node); None for a client of a kind not known here (an
    application's ``RedisCluster``)."""
    if client is not None:
        if not isinstance(client, aredis.Redis):
            return None
        pool = client.connection_pool
        blocking_class = _BLOCKING_CLASSES.get(pool.connection_class)
        if blocking_class is None:
            return None
        settings = round_trip_settings(pool.connection_kwargs, timeout)
        return BlockingLink(lambda: blocking_class(**settings), timeout, name)
    redis_url = redis_url_for(redis_url, what, url)
    target = RedisTarget(redis_url, socket_timeout=timeout).client(decode_responses=False).connection_pool
    if redis_url.startswith(SENTINEL_PREFIXES):
        # The Sentinel pool's connections ask it where the master is, after a failover too.
        target.connection_kwargs = round_trip_settings(target.connection_kwargs, timeout)
        return BlockingLink(target.make_connection, timeout, name, pool=target)
    connection_class = target.connection_class  # a cluster URL's: its first seed's
    settings = round_trip_settings(target.connection_kwargs, timeout)
    return BlockingLink(lambda: connection_class(**settings), timeout, name, settings=(connection_class, settings))
