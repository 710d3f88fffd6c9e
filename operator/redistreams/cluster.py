"""Redis Cluster: ``redis+cluster://`` URLs, discovery from a node's URL, and clients.

    redis+cluster://[user:password@]host:port[,host:port…][/0][?options]
    rediss+cluster://…      TLS to every node

The hosts are seeds: any one that answers is enough, the others are asked when it does
not. ``user:password@`` and the options of a ``redis://`` URL (timeouts, ``ssl_*``…)
apply to every node; the database can only be 0. The URL is checked like a
``redis://`` URL to its first seed (connection.py), so it refuses exactly what a
standalone one would, and ``redact`` masks its password.

A plain ``redis://`` URL may name a cluster node too: ``RedisTarget.client`` returns a
``SeedClient`` (a standalone client), and ``resolve`` asks the server once
(``INFO cluster``) and gives a cluster client when it reports ``cluster_enabled:1``.
Resolution happens at first use, not when the client is made, so a server that starts
late is found out when it answers.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.connection as rconn
import redis.exceptions as rex
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from .connection import ConnectionConfigError, SeedClient, _checked

SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
# Attempts at a pipeline whose node went away (a failover takes the node timeout plus an
# election: about two seconds for a small cluster-node-timeout).
CLUSTER_RETRIES = 3

Address = tuple[str, int]


def is_cluster_url(url: object) -> bool:
    return isinstance(url, str) and url.partition("://")[0] in SCHEMES and "://" in url


def cluster_seeds(url: str) -> tuple[str, list[Address]]:
    """``redis+cluster://[user:pw@]h1:p1,h2:p2[/0][?opts]`` as the plain URL of its first
    seed (credentials, TLS, timeouts: checked like any ``redis://`` URL) and every seed's
    address. ``ConnectionConfigError`` (never quoting a secret) if unusable."""
    scheme, _, rest = url.partition("://")
    end = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    at = authority.rfind("@")
    userinfo, hosts = (authority[:at + 1], authority[at + 1:]) if at >= 0 else ("", authority)
    seeds = [_seed(item, url) for item in hosts.split(",")]
    path = tail.partition("?")[0].partition("#")[0].strip("/")
    if path not in ("", "0"):
        raise ConnectionConfigError("a Redis Cluster has only database 0 (leave the path out or use /0)", url)
    plain = f"{SCHEMES[scheme]}://{userinfo}{hosts.split(',')[0]}{tail}"
    try:
        checked = _checked(plain)
    except ConnectionConfigError as exc:
        raise ConnectionConfigError(exc.problem, url) from None
    if "db=" in tail and rconn.parse_url(checked).get("db", 0) != 0:  # type: ignore[no-untyped-call]
        raise ConnectionConfigError("a Redis Cluster has only database 0 (leave the path out or use /0)", url)
    return checked, seeds


def _seed(text: str, url: str) -> Address:
    text = text.strip()
    if text.startswith("["):
        host, close, port = text[1:].partition("]")
        if not close or not port.startswith(":"):
            raise ConnectionConfigError("a cluster seed's IPv6 address in brackets is malformed", url)
        port = port[1:]
    else:
        host, _, port = text.rpartition(":")
    if not host:
        raise ConnectionConfigError("a cluster seed is not host:port (redis+cluster://h1:p1,h2:p2)", url)
    if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ConnectionConfigError("a cluster seed's port is not a number from 1 to 65535", url)
    return host, int(port)


def cluster_client(seed: SeedClient, seeds: list[Address] | None = None) -> redis.RedisCluster:
    """A cluster client with the seed client's settings (credentials, TLS, timeouts,
    decoding). Connects now: ``rex.ConnectionError`` when no seed answers, or a
    ``rex.RedisError`` saying why the cluster's slot map cannot be read."""
    kwargs: dict[str, Any] = dict(seed.connection_pool.connection_kwargs)
    connection_class = seed.connection_pool.connection_class
    if kwargs.pop("path", None) is not None:
        raise ConnectionConfigError("a unix socket cannot name a Redis Cluster")
    for name in ("host", "port", "db", "retry", "redis_connect_func", "connection_class"):
        kwargs.pop(name, None)
    if issubclass(connection_class, rconn.SSLConnection):
        kwargs["ssl"] = True
    addresses = seeds or list(seed.seeds)
    retry = Retry(ExponentialWithJitterBackoff(base=0.1, cap=1.0), CLUSTER_RETRIES)
    try:
        return redis.RedisCluster(
            startup_nodes=[redis.cluster.ClusterNode(host, port)  # type: ignore[no-untyped-call]
                           for host, port in addresses],
            retry=retry,
            # a slot without a master fails the resources in it, not the whole client
            require_full_coverage=False,
            **kwargs,
        )
    except rex.RedisError:
        raise
    except rex.RedisClusterException as exc:  # not a RedisError: no seed answered, or none knew the slots
        refused = _response_error(exc)
        if refused is not None:  # a seed answered, refusing CLUSTER SLOTS (NOPERM…)
            raise refused from None
        raise rex.ConnectionError(f"no Redis Cluster node answered ({_cluster_problem(exc)})") from None


def _response_error(exc: BaseException) -> rex.ResponseError | None:
    """The server's refusal behind redis-py's wrapping, if any (redis-py words a refused
    CLUSTER SLOTS as "Cluster mode is not enabled on this node")."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, rex.ResponseError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _cluster_problem(exc: BaseException) -> str:
    text = str(exc)
    if "Redis Cluster cannot be connected" in text or "cannot be connected" in text:
        return "every seed refused the connection or timed out"
    return text.splitlines()[0][:200] if text else type(exc).__name__


def resolve(seed: SeedClient) -> redis.Redis | redis.RedisCluster:
    """The client to use for ``seed``: a cluster client once the URL or the server says
    cluster, else ``seed`` itself. While no server answers, ``seed`` is returned
    unresolved (its commands fail as unreachable; the next use asks again)."""
    if seed.cluster_mode is None:
        try:
            info = _ask_once(seed)
        except (rex.ConnectionError, rex.TimeoutError, OSError):
            return seed
        except rex.ResponseError:  # INFO refused (an ACL without it): a standalone server, as before
            seed.cluster_mode = False
            return seed
        seed.cluster_mode = "cluster_enabled:1" in info
        if not seed.cluster_mode:
            return seed
        kwargs = seed.connection_pool.connection_kwargs
        seed.seeds = ((str(kwargs["host"]), int(kwargs["port"])),)
    if not seed.cluster_mode:
        return seed
    try:
        return cluster_client(seed)
    except (rex.ConnectionError, rex.TimeoutError, OSError):
        return seed


def _ask_once(seed: SeedClient) -> str:
    """``INFO cluster`` on one connection, without the client's retries: a server that
    does not answer is asked again at the next use, and costs one timeout now."""
    pool = seed.connection_pool
    connection = pool.get_connection()
    try:
        connection.send_command("INFO", "cluster")  # type: ignore[no-untyped-call]
        reply = connection.read_response()
    except BaseException:
        connection.disconnect()  # type: ignore[no-untyped-call]  # a late reply must never reach another caller
        raise
    finally:
        pool.release(connection)
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
