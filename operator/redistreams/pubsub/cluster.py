"""The server behind a Topic or Subscription: one Redis, or a Redis Cluster.

``server_for`` reads the server URL: ``redis+cluster://[user:pw@]host:port[,host:port…]``
(``rediss+cluster://`` for TLS; parsed by ``redistreams.cluster``) names a cluster by
seeds; a Sentinel URL is one server (``link.make_pool``); a plain ``redis://`` URL may
name a cluster node too, found out at the first round trip (``INFO cluster``; a user not
allowed INFO is taken to be on a standalone server). Both give a ``Server``, and its
``link(key)`` an object used like ``link.Link``.

On a cluster, every command of a Topic's or Subscription's round trip concerns its one
stream (a dead-letter stream in another slot has a link of its own), so a trip goes to
the one master owning that slot, over one connection per node, packed as on a single
server. The slot
map (CLUSTER SLOTS) is shared by the links of a server and refreshed after MOVED, or when
a connection to a node fails (a master killed: its replica takes its slots). Only the
commands answered MOVED, ASK, TRYAGAIN or CLUSTERDOWN are sent again, in order: Redis
executed none of them, so none is applied twice. A connection failure raises as on one
server and the caller retries the trip (at least once). A slot no master serves raises
``SlotNotServedError``.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aredis
from redis.crc import key_slot
from redis.exceptions import AskError, ClusterDownError, MovedError, NoPermissionError, ResponseError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError

from ..cluster import cluster_seeds, is_cluster_url
from .link import SENTINEL_PREFIXES, TRANSIENT, Command, Link, make_pool, pool_like
from .messages import PubSubError, backoff, log, redis_url_for

Address = tuple[str, int]

_REDIRECTS = 16  # redirections followed for one trip before giving up
_RETRYABLE = (MovedError, AskError, TryAgainError, ClusterDownError)


class SlotNotServedError(PubSubError):
    """No master serves the hash slot of this stream (slots unassigned, or a master lost
    with no replica to take over). ``slot`` and ``key`` name it."""

    def __init__(self, message: str, slot: int, key: str) -> None:
        super().__init__(message)
        self.slot, self.key = slot, key


def server_for(client: aredis.Redis | aredis.RedisCluster | None, redis_url: str | None, what: str,
               url: str) -> Server:
    """The server of ``client`` (its connection settings; a ``redis.asyncio.RedisCluster``'s
    startup nodes), else of ``redis_url`` (default ``REDIS_URL``). ``what`` and ``url`` name
    the topic or subscription in errors."""
    if isinstance(client, aredis.RedisCluster):
        nodes = list(client.nodes_manager.startup_nodes.values())
        return Server(nodes[0].connection_class, dict(nodes[0].connection_kwargs),
                      [(node.host, int(node.port)) for node in nodes], cluster=True)
    if client is not None:
        pool = client.connection_pool
        return Server(pool.connection_class, pool.connection_kwargs, [("", 0)], cluster=False)
    redis_url = redis_url_for(redis_url, what, url)
    pool = make_pool(redis_url)  # the first seed's, the Sentinel master's, the server's
    kwargs = pool.connection_kwargs
    cluster: bool | None
    if is_cluster_url(redis_url):
        seeds, cluster = cluster_seeds(redis_url)[1], True
    elif redis_url.startswith(SENTINEL_PREFIXES) or "host" not in kwargs:  # Sentinel, a unix socket
        seeds, cluster = [("", 0)], False
    else:  # maybe a cluster node: the first round trip tells
        seeds, cluster = [(kwargs["host"], kwargs["port"])], None
    server = Server(pool.connection_class, kwargs, seeds, cluster=cluster)
    server.adopt(seeds[0], pool)
    return server


class Server:
    """One Redis or one cluster: connection settings, a pool per node, the slot map.
    ``cluster`` is None until the first round trip tells."""

    def __init__(self, connection_class: type, connection_kwargs: dict[str, Any], seeds: list[Address], *,
                 cluster: bool | None, max_connections: int = 16) -> None:
        self.cluster = cluster
        self.seeds = seeds
        self._class = connection_class
        self._kwargs = dict(connection_kwargs)
        self._max_connections = max_connections
        self._pools: dict[Address, aredis.ConnectionPool] = {}
        self._control: dict[Address, Link] = {}
        self._slots: SlotMap | None = None
        self._stale = True
        self._nodes: list[Address] = []  # every node of the last slot map, masters and replicas
        self._suspects: set[Address] = set()  # nodes whose connection failed: asked last
        self._generation = 0  # bumped by every refresh of the slot map
        self._lock = asyncio.Lock()

    def adopt(self, address: Address, pool: aredis.ConnectionPool) -> None:
        """Use ``pool`` as made (a Sentinel master's follows failovers) for ``address``."""
        self._pools[address] = pool

    def pool(self, address: Address) -> aredis.ConnectionPool:
        pool = self._pools.get(address)
        if pool is None:
            extra = {} if address == ("", 0) else {"host": address[0], "port": address[1]}
            pool = pool_like(self._class, {**self._kwargs, **extra}, max_connections=self._max_connections)
            self._pools[address] = pool
        return pool

    def link(self, key: str, timeout: float = 10.0, name: str | None = None) -> RoutedLink:
        """A link for commands on ``key`` (and keys in its hash slot)."""
        return RoutedLink(self, key, timeout, name)

    def slot_of(self, key: str) -> int:
        return key_slot(key.encode("utf-8", "surrogateescape"))

    # -- finding out -------------------------------------------------------------------

    async def resolve(self, link: Link) -> None:
        """Find out (over ``link``, to the first seed) whether this is a cluster, and load
        the slot map of one."""
        if self.cluster is None:
            async with self._lock:
                if self.cluster is None:
                    # A refusal while connecting (AUTH, SELECT) raises, as it would on one server.
                    (reply,) = await link.call([("INFO", "cluster")])
                    if isinstance(reply, NoPermissionError):
                        self.cluster = False  # an ACL without INFO: taken for one server, as before
                    elif not isinstance(reply, ResponseError):  # else (LOADING…) asked again next trip
                        self.cluster = b"cluster_enabled:1" in reply
                    if self.cluster:
                        log.debug("%s:%d is a cluster node: routing by hash slot", *self.seeds[0])
        if self.cluster and self._stale:
            await self.refresh(self._generation)

    def _control_link(self, address: Address) -> Link:
        link = self._control.get(address)
        if link is None:
            link = self._control[address] = Link(self.pool(address), 5.0, name="redistreams-cluster")
        return link

    def stale(self, failed: Address | None = None) -> None:
        """A node failed or redirected: refresh the slot map before the next trip."""
        self._stale = True
        if failed is not None:
            self._suspects.add(failed)

    async def refresh(self, seen: int) -> None:
        """Load the slot map from the first node that answers, unless it was refreshed
        since generation ``seen``."""
        async with self._lock:
            if self._generation != seen and self._slots is not None:
                return
            candidates = [a for a in dict.fromkeys([*self._nodes, *self.seeds, *self._pools]) if a != ("", 0)]
            failure: Exception | None = None
            for address in sorted(candidates, key=lambda a: a in self._suspects):  # stable: suspects last
                try:
                    (reply,) = await self._control_link(address).call([("CLUSTER", "SLOTS")])
                except TRANSIENT as exc:
                    failure = exc
                    continue
                if isinstance(reply, ResponseError):
                    failure = reply
                    continue
                self._slots, self._nodes = _slot_map(reply, address)
                self._suspects.clear()
                self._stale = False
                self._generation += 1
                return
            if isinstance(failure, ResponseError):
                raise PubSubError(f"cannot read the cluster's slot map (CLUSTER SLOTS): {failure}")
            raise RedisConnectionError(f"no cluster node answered CLUSTER SLOTS: {failure}")

    async def master_of(self, slot: int, key: str) -> Address:
        if self._slots is None or self._stale:
            await self.refresh(self._generation)
        assert self._slots is not None
        address = self._slots.get(slot)
        if address is None:
            await self.refresh(self._generation)  # it may have just been assigned
            address = self._slots.get(slot)
        if address is None:
            raise SlotNotServedError(f"hash slot {slot} of key {key!r} is served by no master of the cluster "
                                     f"(unassigned, or its master failed without a replica to take over)",
                                     slot, key)
        return address

    def known_master(self, slot: int) -> Address | None:
        """The master of ``slot`` by the slot map as it stands (read from any thread); None
        when this may be no cluster, or the map is to be loaded again first."""
        slots = self._slots
        if not self.cluster or self._stale or slots is None:
            return None
        return slots.get(slot)

    def moved(self, slot: int, address: Address) -> None:
        if self._slots is not None:
            self._slots.move(slot, address)
        self._stale = True  # a MOVED seldom comes alone: reload the rest too

    async def disconnect(self) -> None:
        for link in self._control.values():
            await link.close()
        for pool in self._pools.values():
            await pool.disconnect()


class SlotMap:
    """The master of each slot: CLUSTER SLOTS' ranges (a few per master, so a process with
    thousands of topics does not hold 16,384 entries for each), and slots MOVED since."""

    def __init__(self, ranges: list[tuple[int, int, Address]]) -> None:
        self._ranges = sorted(ranges)
        self._starts = [start for start, _, _ in self._ranges]
        self._moved: dict[int, Address] = {}

    def get(self, slot: int) -> Address | None:
        moved = self._moved.get(slot)
        if moved is not None:
            return moved
        index = bisect.bisect_right(self._starts, slot) - 1
        if index >= 0 and self._ranges[index][1] >= slot:
            return self._ranges[index][2]
        return None

    def move(self, slot: int, address: Address) -> None:
        self._moved[slot] = address


def _slot_map(reply: list[Any], asked: Address) -> tuple[SlotMap, list[Address]]:
    """CLUSTER SLOTS as a slot map, and every node's address (masters and replicas)."""
    ranges: list[tuple[int, int, Address]] = []
    nodes: dict[Address, None] = {}
    for start, end, master, *replicas in reply:
        address = _address(master, asked)
        ranges.append((int(start), int(end), address))
        nodes.update(dict.fromkeys([address, *(_address(replica, asked) for replica in replicas)]))
    return SlotMap(ranges), list(nodes)


def _address(node: list[Any], asked: Address) -> Address:
    host = node[0].decode() if isinstance(node[0], bytes) else str(node[0])
    return (host if host and host != "?" else asked[0]), int(node[1])


def to_send_again(commands: Sequence[Command], replies: list[Any]) -> list[int]:
    """The positions of the commands Redis did not execute (MOVED, ASK, TRYAGAIN,
    CLUSTERDOWN), and of any WAIT after the first of them: it counted the replicas of
    the wrong node. Empty when the trip is done."""
    again = [i for i, reply in enumerate(replies) if isinstance(reply, _RETRYABLE)]
    if again:
        again += [i for i in range(again[0] + 1, len(commands)) if commands[i][0] == "WAIT" and i not in again]
        again.sort()
    return again


class RoutedLink:
    """``link.Link`` for one key's commands, on one server or on the master owning the
    key's slot (see the module's docstring)."""

    def __init__(self, server: Server, key: str, timeout: float, name: str | None) -> None:
        self.server = server
        self.key = key
        self.slot = server.slot_of(key)
        self.timeout = timeout
        self.name = name
        self._links: dict[Address, Link] = {}

    def _link(self, address: Address) -> Link:
        link = self._links.get(address)
        if link is None:
            link = self._links[address] = Link(self.server.pool(address), self.timeout, self.name)
        return link

    async def call(self, commands: Sequence[Command], *, extra_timeout: float = 0.0) -> list[Any]:
        if not commands:
            return []
        server = self.server
        if server.cluster is not False:
            await server.resolve(self._link(server.seeds[0]))
        if not server.cluster:
            return await self._link(server.seeds[0]).call(commands, extra_timeout=extra_timeout)
        address = await server.master_of(self.slot, self.key)
        replies = await self._send(address, list(commands), extra_timeout, asking=False)
        deadline = time.monotonic() + self.timeout
        for attempt in range(_REDIRECTS):
            again = to_send_again(commands, replies)
            if not again:
                return replies
            first = replies[again[0]]
            asking = False
            if isinstance(first, MovedError):
                server.moved(first.slot_id, first.node_addr)
                address = first.node_addr
            elif isinstance(first, AskError):
                address, asking = first.node_addr, True
            else:  # TRYAGAIN (a migration under way) or CLUSTERDOWN (a failover under way)
                if time.monotonic() >= deadline:
                    break
                if isinstance(first, ClusterDownError):
                    server.stale()
                await backoff(attempt)
                address = await server.master_of(self.slot, self.key)
            redone = await self._send(address, [commands[i] for i in again], extra_timeout, asking=asking)
            for i, reply in zip(again, redone):
                replies[i] = reply
        stuck = next(reply for reply in replies if isinstance(reply, _RETRYABLE))
        server.stale()
        raise RedisConnectionError(f"hash slot {self.slot} of {self.key!r}: still redirected after "
                                   f"{_REDIRECTS} tries: {type(stuck).__name__} {stuck}")

    async def _send(self, address: Address, commands: list[Command], extra_timeout: float, *,
                    asking: bool) -> list[Any]:
        link = self._link(address)
        try:
            if not asking:
                return await link.call(commands, extra_timeout=extra_timeout)
            # ASK: the target accepts the next command only, so each one follows an ASKING.
            replies = await link.call([c for command in commands for c in (("ASKING",), command)],
                                      extra_timeout=extra_timeout)
            return replies[1::2]
        except TRANSIENT:
            self.server.stale(address)  # a master killed: its replica may own the slot by the next try
            raise

    async def call_one(self, *command: Any, extra_timeout: float = 0.0) -> Any:
        (reply,) = await self.call([command], extra_timeout=extra_timeout)
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    async def close(self) -> None:
        for link in self._links.values():
            await link.close()

