"""A real Redis Cluster for tests: six redis-server processes on loopback, 3 masters and
3 replicas, formed with ``redis-cli --cluster create``.

    cluster = RedisCluster().start()      # every node reports cluster_state:ok
    cluster.url                           # redis+cluster://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3
    cluster.plain_urls                    # redis://127.0.0.1:p/0 for each node
    cluster.client()                      # a redis.RedisCluster
    cluster.master_for(slot) / replicas_of(node)
    cluster.fail_over(master)             # kill it, wait for a replica's promotion
    cluster.migrate_slot(slot, target)    # SETSLOT IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE
    cluster.unassign_slot(slot)           # a slot without a master (others keep serving)
    cluster.heal()                        # everything running, every slot served, data flushed
    cluster.close()

Each node is a ``RedisServer`` (own temp dir, own nodes.conf, so a killed node restarts
with its identity and rejoins). The node timeout is small (1 s) so failovers take ~2 s.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import redis
from redis.crc import key_slot

from tests.support.net import ReservedPort
from tests.support.redis_server import RedisServer

REDIS_CLI = "redis-cli"
SLOTS = 16384
NODE_TIMEOUT_MS = 1000
BUS_PORT_OFFSET = 10000


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_port() -> list[ReservedPort]:
    """A free loopback port and its cluster bus port (port + 10000), both reserved."""
    for _ in range(200):
        main = ReservedPort()
        # Probed without SO_REUSEADDR first: a port another server holds reserved is not free.
        if main.port + BUS_PORT_OFFSET < 65536 and _port_free(main.port + BUS_PORT_OFFSET):
            try:
                return [main, ReservedPort(main.port + BUS_PORT_OFFSET)]
            except OSError:
                pass
        main.release()
    raise RuntimeError("no free port pair (port, port + 10000) on 127.0.0.1")


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (redis.RedisError, OSError):
            pass
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


class ClusterNode(RedisServer):
    """One cluster-enabled redis-server; ``kill()``/``stop()``/``start()`` as RedisServer."""

    def __init__(self, *extra_args: str, persistence: bool = False, password: str | None = None,
                 node_timeout_ms: int = NODE_TIMEOUT_MS) -> None:
        super().__init__(*extra_args, persistence=persistence, password=password)
        self.release_ports()
        self.reserved = cluster_port()
        self.port = self.reserved[0].port
        self.node_timeout_ms = node_timeout_ms

    def new_port(self) -> int:
        self.release_ports()
        self.reserved = cluster_port()
        return self.reserved[0].port

    def args(self) -> list[str]:
        return super().args() + [
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(self.dir / "nodes.conf"),
            "--cluster-node-timeout", str(self.node_timeout_ms),
            # a replica is always eligible for promotion, however old its data looks
            "--cluster-replica-validity-factor", "0",
            # no migration of replicas between masters: the topology stays what the tests set
            "--cluster-allow-replica-migration", "no",
        ]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def node_id(self) -> str:
        return str(self.client().execute_command("CLUSTER", "MYID"))

    def role(self) -> str:
        return str(self.client().execute_command("ROLE")[0])

    def cluster_info(self) -> dict[str, str]:
        text = self.client().execute_command("CLUSTER", "INFO")
        if isinstance(text, dict):
            return {str(k): str(v) for k, v in text.items()}
        pairs = (line.split(":", 1) for line in str(text).splitlines() if ":" in line)
        return {k: v.strip() for k, v in pairs}

    def state_ok(self) -> bool:
        return self.cluster_info().get("cluster_state") == "ok"


@dataclass(frozen=True)
class NodeView:
    """One line of CLUSTER NODES as some node sees it."""

    node_id: str
    address: str
    flags: frozenset[str]
    master_id: str | None
    slots: tuple[tuple[int, int], ...]

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def failed(self) -> bool:
        return bool({"fail", "fail?", "noaddr"} & self.flags)


def parse_nodes(text: str) -> list[NodeView]:
    views = []
    for line in text.strip().splitlines():
        parts = line.split()
        slots = []
        for item in parts[8:]:
            if item.startswith("["):  # a slot being migrated/imported
                continue
            low, _, high = item.partition("-")
            slots.append((int(low), int(high or low)))
        views.append(NodeView(
            node_id=parts[0], address=parts[1].split("@")[0], flags=frozenset(parts[2].split(",")),
            master_id=None if parts[3] == "-" else parts[3], slots=tuple(slots),
        ))
    return views


class RedisCluster:
    """Six nodes (``masters`` masters with ``replicas`` replicas each), formed on start()."""

    def __init__(self, masters: int = 3, replicas: int = 1, *extra_args: str, persistence: bool = False,
                 node_timeout_ms: int = NODE_TIMEOUT_MS) -> None:
        self.master_count = masters
        self.replica_count = replicas
        self.nodes = [
            ClusterNode(*extra_args, persistence=persistence, node_timeout_ms=node_timeout_ms)
            for _ in range(masters * (1 + replicas))
        ]
        self._ids: dict[str, ClusterNode] = {}

    # ----------------------------------------------------------------- addresses
    @property
    def url(self) -> str:
        """The cluster URL with three seeds (any one answering is enough)."""
        return "redis+cluster://" + ",".join(node.address for node in self.nodes[:3])

    @property
    def seed_urls(self) -> list[str]:
        return [f"redis+cluster://{node.address}" for node in self.nodes]

    @property
    def plain_urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def plain_url(self) -> str:
        """A plain redis:// URL of one node (discovery must find the cluster from it)."""
        return self.nodes[0].url

    # ----------------------------------------------------------------- lifecycle
    def start(self, timeout: float = 30.0) -> RedisCluster:
        try:
            for node in self.nodes:
                node.start()
            subprocess.run(
                [REDIS_CLI, "--cluster", "create", *(node.address for node in self.nodes),
                 "--cluster-replicas", str(self.replica_count), "--cluster-yes"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout,
            )
            self._ids = {node.node_id(): node for node in self.nodes}
            self.wait_healthy(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        for node in self.nodes:
            node.close()

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- topology
    def running_nodes(self) -> list[ClusterNode]:
        return [node for node in self.nodes if node.running]

    def node_by_id(self, node_id: str) -> ClusterNode:
        return self._ids[node_id]

    def views(self, seen_from: ClusterNode | None = None) -> list[NodeView]:
        node = seen_from or self.running_nodes()[0]
        return parse_nodes(str(node.client().execute_command("CLUSTER", "NODES")))

    def masters(self) -> list[ClusterNode]:
        """The live masters serving slots, as the first live node sees them."""
        return [self._ids[v.node_id] for v in self.views()
                if v.is_master and not v.failed and v.slots and self._ids[v.node_id].running]

    def replicas_of(self, master: ClusterNode) -> list[ClusterNode]:
        master_id = master.node_id() if master.running else self._id_of(master)
        return [self._ids[v.node_id] for v in self.views() if v.master_id == master_id]

    def master_for(self, slot_or_key: int | str | bytes) -> ClusterNode:
        slot = slot_or_key if isinstance(slot_or_key, int) else key_slot(
            slot_or_key.encode() if isinstance(slot_or_key, str) else slot_or_key)
        for view in self.views():
            if view.is_master and any(low <= slot <= high for low, high in view.slots):
                return self._ids[view.node_id]
        raise LookupError(f"slot {slot} has no master")

    def _id_of(self, node: ClusterNode) -> str:
        return next(node_id for node_id, known in self._ids.items() if known is node)

    def client(self, **kwargs: object) -> redis.RedisCluster:
        options: dict[str, object] = {"decode_responses": True, "socket_timeout": 5, "protocol": 2}
        options.update(kwargs)
        seeds = [redis.cluster.ClusterNode("127.0.0.1", node.port) for node in self.running_nodes()[:3]]
        return redis.RedisCluster(startup_nodes=seeds, **options)  # type: ignore[arg-type]

    # ----------------------------------------------------------------- health
    def covered(self, node: ClusterNode) -> bool:
        served = sum(high - low + 1 for v in self.views(node) if v.is_master and not v.failed for low, high in v.slots)
        return served == SLOTS

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Every live node: cluster_state ok, all slots served, every replica's link up,
        and all live nodes agree on who serves what."""

        def healthy() -> bool:
            live = self.running_nodes()
            if not all(node.state_ok() and self.covered(node) for node in live):
                return False
            tables = {tuple(sorted((v.node_id, v.slots) for v in self.views(node) if v.is_master and v.slots))
                      for node in live}
            if len(tables) != 1:
                return False
            for node in live:
                info = node.client().info("replication")
                if info["role"] == "slave" and info.get("master_link_status") != "up":
                    return False
            return True

        wait_for(healthy, timeout, "the cluster to be healthy")

    def wait_agreement(self, timeout: float = 30.0) -> None:
        """Every live node sees the same roles (who is a master, whose replica) and the same slots."""

        def table(node: ClusterNode) -> tuple[object, ...]:
            return tuple(sorted((v.node_id, v.is_master, v.master_id or "", v.slots)
                                for v in self.views(node) if not v.failed))

        wait_for(lambda: len({table(node) for node in self.running_nodes()}) == 1, timeout,
                 "the nodes to agree on the topology")

    def flush(self) -> None:
        for master in self.masters():
            master.client().flushall()

    def dirty(self) -> int:
        """Sum of the masters' writes since their last save (unchanged: nothing written)."""
        return sum(master.dirty() for master in self.masters())

    def keys(self, pattern: str = "*") -> list[str]:
        found: list[str] = []
        for master in self.masters():
            found.extend(master.client().scan_iter(match=pattern, count=1000))
        return found

    # ----------------------------------------------------------------- faults
    def fail_over(self, master: ClusterNode, timeout: float = 30.0, restart: bool = False) -> ClusterNode:
        """Kills ``master`` and waits until one of its replicas is promoted and the cluster
        is ok again; returns the new master. With ``restart``, the old master is started
        again and waits to rejoin as a replica."""
        replicas = self.replicas_of(master)
        if not replicas:
            raise LookupError(f"{master.address} has no replica")
        master.kill()
        promoted: list[ClusterNode] = []

        def promoted_one() -> bool:
            for replica in replicas:
                if replica.running and replica.role() == "master":
                    promoted[:] = [replica]
                    return True
            return False

        wait_for(promoted_one, timeout, f"a replica of {master.address} to be promoted")
        wait_for(lambda: all(n.state_ok() and self.covered(n) for n in self.running_nodes()), timeout,
                 "cluster_state:ok after the failover")
        if restart:
            self.restart(master, timeout)
        return promoted[0]

    def restart(self, node: ClusterNode, timeout: float = 30.0) -> None:
        """Starts a killed/stopped node again (same port and nodes.conf) and waits until the
        whole cluster is healthy (a former master rejoins as a replica)."""
        if not node.running:
            node.start()
        self.wait_healthy(timeout)

    def begin_migration(self, slot: int, target: ClusterNode) -> SlotMigration:
        return SlotMigration(self, slot, self.master_for(slot), target).begin()

    def migrate_slot(self, slot: int, target: ClusterNode) -> None:
        """Moves ``slot`` and its keys to ``target`` (a master), as redis-cli --cluster reshard does."""
        self.begin_migration(slot, target).move_keys().finish()

    def unassign_slot(self, slot: int) -> ClusterNode:
        """Leaves ``slot`` without a master (CLUSTER DELSLOTS everywhere; coverage no longer
        required, so the other slots keep serving). Keys in it stay on the old master, unreachable.
        Returns the old master, for ``assign_slot``."""
        owner = self.master_for(slot)
        for node in self.running_nodes():
            node.client().config_set("cluster-require-full-coverage", "no")
        for node in self.running_nodes():
            node.client().execute_command("CLUSTER", "DELSLOTS", slot)
        wait_for(lambda: all(n.state_ok() for n in self.running_nodes()), 30, "cluster_state:ok without the slot")
        return owner

    def assign_slot(self, slot: int, master: ClusterNode) -> None:
        master.client().execute_command("CLUSTER", "ADDSLOTS", slot)
        for node in self.running_nodes():
            node.client().execute_command("CLUSTER", "BUMPEPOCH")
        wait_for(lambda: all(self.covered(n) for n in self.running_nodes()), 30, f"slot {slot} to be served again")
        for node in self.running_nodes():
            node.client().config_set("cluster-require-full-coverage", "yes")

    def heal(self, timeout: float = 30.0) -> None:
        """Back to a clean state after a test: every node running, ``masters`` masters with
        their replicas serving every slot, no slot half-migrated, every master's data flushed.
        A topology a test left bent (a slot kept by a lone master…) is rebuilt from new
        nodes: read ``url``/``nodes`` again afterwards."""
        for node in self.nodes:
            if not node.running:
                node.start()
        try:
            self._clear_migrations()
            self.wait_agreement(10)
            self.wait_healthy(10)
            if not self.well_formed():
                raise TimeoutError("topology bent")
            for node in self.running_nodes():
                node.client().config_set("cluster-require-full-coverage", "yes")
        except (TimeoutError, redis.RedisError):
            self.rebuild(timeout)
        self.flush()

    def well_formed(self) -> bool:
        masters = self.masters()
        return (len(masters) == self.master_count
                and all(len(self.replicas_of(master)) == self.replica_count for master in masters))

    def rebuild(self, timeout: float = 30.0) -> None:
        """A new cluster from new nodes (new ports) with the same settings."""
        old = self.nodes
        self.nodes = [ClusterNode(*node.extra_args, persistence=node.persistence,
                                  node_timeout_ms=node.node_timeout_ms) for node in old]
        for node in old:
            node.close()
        self.start(timeout)

    def _clear_migrations(self) -> None:
        for node in self.running_nodes():
            text = str(node.client().execute_command("CLUSTER", "NODES"))
            for line in text.splitlines():
                if "myself" not in line.split()[2]:
                    continue
                for item in line.split()[8:]:
                    if item.startswith("["):
                        slot = int(item[1:].split("-", 1)[0])
                        node.client().execute_command("CLUSTER", "SETSLOT", slot, "STABLE")


class SlotMigration:
    """A slot's migration in steps, so a test can run apply between them:
    ``begin()`` (IMPORTING on the target, MIGRATING on the source: new keys get ASK),
    ``move_keys()`` (MIGRATE every key), ``finish()`` (SETSLOT NODE everywhere)."""

    def __init__(self, cluster: RedisCluster, slot: int, source: ClusterNode, target: ClusterNode) -> None:
        self.cluster, self.slot, self.source, self.target = cluster, slot, source, target

    def begin(self) -> SlotMigration:
        if self.source is self.target:
            raise ValueError(f"slot {self.slot} is already on {self.target.address}")
        self.target.client().execute_command("CLUSTER", "SETSLOT", self.slot, "IMPORTING", self.source.node_id())
        self.source.client().execute_command("CLUSTER", "SETSLOT", self.slot, "MIGRATING", self.target.node_id())
        return self

    def move_keys(self, batch: int = 100) -> SlotMigration:
        client = self.source.client()
        while True:
            keys = client.execute_command("CLUSTER", "GETKEYSINSLOT", self.slot, batch)
            if not keys:
                return self
            client.execute_command("MIGRATE", "127.0.0.1", self.target.port, "", 0, 5000, "KEYS", *keys)

    def finish(self) -> None:
        target_id = self.target.node_id()
        self.target.client().execute_command("CLUSTER", "SETSLOT", self.slot, "NODE", target_id)
        self.source.client().execute_command("CLUSTER", "SETSLOT", self.slot, "NODE", target_id)
        for node in self.cluster.masters():
            if node not in (self.source, self.target):
                node.client().execute_command("CLUSTER", "SETSLOT", self.slot, "NODE", target_id)
        def served_by_target(view: NodeView) -> bool:
            return (view.is_master and view.address == self.target.address
                    and any(low <= self.slot <= high for low, high in view.slots))

        def everyone_agrees() -> bool:  # each live node's own slot map, not one node's map six times
            return all(any(served_by_target(v) for v in self.cluster.views(node))
                       for node in self.cluster.running_nodes())

        wait_for(everyone_agrees, 30, f"every node to see slot {self.slot} on {self.target.address}")


def _ranges(slots: Iterable[int]) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    for slot in sorted(slots):
        if ranges and ranges[-1][1] == slot - 1:
            ranges[-1] = (ranges[-1][0], slot)
        else:
            ranges.append((slot, slot))
    return ranges
