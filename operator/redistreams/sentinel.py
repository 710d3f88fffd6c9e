"""Redis behind Sentinel: ``redis+sentinel://`` URLs and clients that follow failovers.

    redis+sentinel://[user:password@]host[:port][,host[:port]…]/<master>[/<db>][?options]
    rediss+sentinel://…      TLS to the sentinels and to the master

The hosts are sentinels (port 26379 when left out); ``<master>`` is the name they
monitor. ``user:password@`` and the options of a ``redis://`` URL (``db``,
``socket_timeout``, ``ssl_ca_certs``…) apply to the master; ``sentinel_username`` and
``sentinel_password`` are the sentinels' own credentials (Sentinel's ``requirepass``),
none by default. The master's address is asked of the sentinels at every new
connection, and a connection to a master that became a replica (``READONLY``) is
dropped, so the next attempt reaches the promoted one.

The URL is checked like a ``redis://`` URL to its first sentinel (connection.py), so a
Sentinel URL refuses exactly what a standalone one would and ``redact`` masks both
passwords (the userinfo, and ``sentinel_password`` by its name).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

import redis
import redis.asyncio as aredis
import redis.asyncio.sentinel as asentinel
import redis.sentinel as rsentinel
from redis.asyncio.retry import Retry as ARetry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.retry import Retry

from .connection import ConnectionConfigError, _checked, _parse_url

SCHEMES = ("redis+sentinel", "rediss+sentinel")
DEFAULT_PORT = 26379
SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")
# A failover takes Sentinel's down-after-milliseconds plus an election: a few seconds.
# Connection attempts are retried for about this long before an error is reported.
FAILOVER_RETRIES = 8
# How often a pool asks the sentinels where the master is when handing out a connection:
# after a failover, idle connections to the old master are closed within this time
# instead of at their first write refused as READONLY (writes the old master accepted
# meanwhile would be lost when it rejoins as a replica).
RECHECK_SECONDS = 0.5


def is_sentinel_url(url: object) -> bool:
    return isinstance(url, str) and url.startswith(tuple(f"{s}://" for s in SCHEMES))


@dataclass(frozen=True)
class SentinelURL:
    sentinels: tuple[tuple[str, int], ...]
    service: str
    tls: bool
    master: dict[str, Any] = field(repr=False)  # redis-py keyword arguments for the master's connections
    sentinel: dict[str, Any] = field(repr=False)  # … and for the sentinels'

    @classmethod
    def parse(cls, url: str) -> SentinelURL:
        """``ConnectionConfigError`` (naming the problem, never quoting a secret) if unusable."""
        scheme, _, rest = url.partition("://")
        tls = scheme == "rediss+sentinel"
        base, qsep, query = rest.partition("#")[0].partition("?")
        at = base.rfind("@")
        userinfo, hostpath = (base[:at + 1], base[at + 1:]) if at >= 0 else ("", base)
        hosts_text, _, path = hostpath.partition("/")
        segments = [s for s in path.split("/") if s] if path else []
        if not segments:
            raise ConnectionConfigError(f"the master name is missing ({scheme}://host:port/<master>)", url)
        if len(segments) > 2:
            raise ConnectionConfigError(f"the path must be /<master> or /<master>/<db> in a {scheme}:// URL", url)
        service = unquote(segments[0])
        db = segments[1] if len(segments) == 2 else ""
        sentinels = tuple(_host(h, url) for h in hosts_text.split(","))

        params = parse_qsl(query, keep_blank_values=True)
        own = {name: value for name, value in params if name in SENTINEL_OPTIONS}
        kept = "&".join(p for p in query.split("&") if p and unquote(p.partition("=")[0]) not in SENTINEL_OPTIONS)
        # The same URL with the first sentinel as its host: checked and read like any redis:// URL.
        first = hosts_text.split(",")[0] or "localhost"
        standalone = f"{'rediss' if tls else 'redis'}://{userinfo}{first}/{db}" + (f"?{kept}" if qsep and kept else "")
        try:
            checked = _checked(standalone)
        except ConnectionConfigError as exc:
            raise ConnectionConfigError(exc.problem, url) from None
        master = {k: v for k, v in _parse_url(checked).items() if k not in ("host", "port", "connection_class")}
        master.pop("max_connections", None)
        if tls:
            master["ssl"] = True
        sentinel: dict[str, Any] = {k: v for k, v in master.items()
                                    if k.startswith(("socket_", "ssl")) or k in ("client_name",)}
        sentinel.pop("ssl", None)
        if tls:
            sentinel["ssl"] = True
        if own.get("sentinel_username"):
            sentinel["username"] = own["sentinel_username"]
        if own.get("sentinel_password"):
            sentinel["password"] = own["sentinel_password"]
        return cls(sentinels, service, tls, master, sentinel)


def _host(text: str, url: str) -> tuple[str, int]:
    if not text:
        raise ConnectionConfigError("a sentinel address is empty (host:port,host:port)", url)
    try:
        _checked(f"redis://{text}/0")  # the host and port checks of any redis:// URL
    except ConnectionConfigError as exc:
        raise ConnectionConfigError(f"a sentinel address: {exc.problem}", url) from None
    if text.startswith("["):
        host, close, port = text[1:].partition("]")
        if not close or (port and not port.startswith(":")):
            raise ConnectionConfigError("the IPv6 address in brackets is malformed", url)
        port = port[1:]
    else:
        host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    if not host:
        raise ConnectionConfigError("a sentinel address has no host", url)
    if not port:
        return host, DEFAULT_PORT
    if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ConnectionConfigError("a sentinel port is not a number from 1 to 65535", url)
    return host, int(port)


class _FollowingPool(rsentinel.SentinelConnectionPool):
    """redis-py's Sentinel pool, asking where the master is at most every RECHECK_SECONDS."""

    _asked = 0.0

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if self.is_master and time.monotonic() - self._asked >= RECHECK_SECONDS:
            self._asked = time.monotonic()
            try:
                self.get_master_address()  # type: ignore[no-untyped-call]  # closes idle connections if it moved
            except (redis.ConnectionError, redis.TimeoutError):
                pass  # connecting asks again, and reports it
        return super().get_connection(*args, **kwargs)


class _AsyncFollowingPool(asentinel.SentinelConnectionPool):
    """The same for asyncio."""

    _asked = 0.0

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if self.is_master and time.monotonic() - self._asked >= RECHECK_SECONDS:
            self._asked = time.monotonic()
            try:
                await self.get_master_address()  # type: ignore[no-untyped-call]  # untyped in redis-py
            except (redis.ConnectionError, redis.TimeoutError):
                pass
        return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]  # untyped in redis-py

    async def moved(self, connection: Any) -> bool:
        """Whether the sentinels now name another master than ``connection``'s (asked at
        most every RECHECK_SECONDS). A connection held for long (a publisher's, a
        subscriber's) must leave at once: the old master takes writes until the sentinels
        reconfigure it, seconds later, and then drops them."""
        if self.is_master and time.monotonic() - self._asked >= RECHECK_SECONDS:
            self._asked = time.monotonic()
            try:
                await self.get_master_address()  # type: ignore[no-untyped-call]  # untyped in redis-py
            except (redis.ConnectionError, redis.TimeoutError):
                return False  # no sentinel answers: the connection fails by itself if it must
        address = self.master_address
        return address is not None and (connection.host, connection.port) != tuple(address)


def _retry(retries: int) -> Retry:
    return Retry(ExponentialWithJitterBackoff(base=0.1, cap=1.0), max(retries, FAILOVER_RETRIES))


def master_client(url: str, *, decode_responses: bool, socket_timeout: float, connect_timeout: float,
                  retries: int) -> redis.Redis:
    """A client for the master the sentinels name, found again after a failover."""
    spec = SentinelURL.parse(url)
    timeouts = {"socket_timeout": socket_timeout, "socket_connect_timeout": connect_timeout}
    # One attempt per sentinel and question: the master's connection retries the round.
    sentinel_kwargs = {**timeouts, **spec.sentinel, "retry": Retry(NoBackoff(), 0)}
    options: dict[str, Any] = {**timeouts, **spec.master}
    options.update(decode_responses=decode_responses, encoding_errors="surrogateescape",
                   retry=_retry(retries), protocol=2)
    try:
        manager = rsentinel.Sentinel(list(spec.sentinels), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]  # untyped in redis-py
        client: redis.Redis = manager.master_for(  # type: ignore[no-untyped-call]  # untyped in redis-py
            spec.service, redis_class=redis.Redis, connection_pool_class=_FollowingPool, **options)
    except Exception:  # noqa: BLE001 - redis-py's text may quote the URL
        raise ConnectionConfigError("redis-py refused the connection settings", url) from None
    return client


def master_pool(url: str, *, connect_timeout: float, max_connections: int) -> aredis.ConnectionPool:
    """An asyncio pool whose connections go to the current master (pubsub's round trips:
    binary replies, no per-read deadline, no retry of its own: the caller retries)."""
    spec = SentinelURL.parse(url)
    sentinel_kwargs = {"socket_timeout": connect_timeout, "socket_connect_timeout": connect_timeout, **spec.sentinel,
                       "retry": ARetry(NoBackoff(), 0)}
    manager = asentinel.Sentinel(list(spec.sentinels), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]  # untyped in redis-py
    options: dict[str, Any] = {"socket_connect_timeout": connect_timeout, **spec.master}
    options.update(decode_responses=False, socket_timeout=None, protocol=2, retry=None,
                   max_connections=max_connections)
    pool: aredis.ConnectionPool = _AsyncFollowingPool(spec.service, manager, **options)  # type: ignore[no-untyped-call]  # untyped in redis-py
    # Connections find the master through the pool that made their settings; a strong
    # reference (redis-py keeps a weak one) lets a copy of the settings outlive it: the
    # client builds its own pools from a pool's class and settings.
    pool.connection_kwargs["connection_pool"] = pool
    return pool
