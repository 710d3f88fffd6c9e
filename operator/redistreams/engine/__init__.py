"""The engine: observe Redis, plan the differences, apply them.

Shared by the CLI and the operator; it knows nothing about Kubernetes. It is given a
redis-py client (whatever the topology) and intents (what should exist). A client made
by ``RedisTarget.client`` that may stand for a Redis Cluster (a redis+cluster:// URL, or
a node's redis:// URL) becomes a cluster client at first use (cluster.resolve); on a
cluster the ownership registry is split per hash slot (registry.py).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import redis
import redis.exceptions as rex

from .. import DEFAULT_REGISTRY_KEY
from ..cluster import resolve
from ..connection import SeedClient
from ..printable import wire
from .apply import DELETED, PRUNED, Applier, Result
from .claims import Claims, reach, read_claims
from .errors import CLUSTER_NODE, Failure, describe
from .intents import GroupIntent, Memory, Owner, RetentionPolicy, TopicIntent, intents_from
from .observe import ObservationError, Observer
from .ownership import OwnerRecord
from .pipeline import Pipeliner, Stats
from .plan import GroupPlan, Plan, TopicPlan, make_plan
from .prune import Orphans, find_orphans, scan_registry
from .registry import Registry, SlotRegistry
from .retention import TrimStep
from .state import GroupState, StreamState

__all__ = [
    "DEFAULT_REGISTRY_KEY",
    "Engine",
    "Failure",
    "GroupIntent",
    "GroupPlan",
    "GroupState",
    "Memory",
    "ObservationError",
    "Orphans",
    "Owner",
    "OwnerRecord",
    "Plan",
    "Result",
    "RetentionPolicy",
    "Stats",
    "StreamState",
    "TopicIntent",
    "TopicPlan",
    "TrimStep",
    "intents_from",
]


# A server that did not answer whether it is a cluster node is asked again after this long.
DISCOVERY_INTERVAL = 2.0


@contextmanager
def _collector_paused(size: int) -> Iterator[None]:
    """Big batches allocate many small, acyclic objects; Python's cyclic collector would
    rescan the whole heap several times per batch (a third of the time at 40,000
    resources). Pause it for the batch; it resumes, with nothing lost, afterwards."""
    if size < 1000 or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class Engine:
    def __init__(
        self,
        client: redis.Redis | redis.RedisCluster,
        *,
        target: str = "",
        registry_key: str = DEFAULT_REGISTRY_KEY,
        chunk_size: int = 500,
        trim_step: int = 1000,
    ) -> None:
        self.client = client
        self.target = target
        self.registry_key = registry_key
        self.stats = Stats()
        self.io = Pipeliner(client, self.stats, target)
        self.observer = Observer(self.io, registry_key, chunk_size)
        self.applier = Applier(self.io, registry_key, trim_step=trim_step)
        self._asked = -DISCOVERY_INTERVAL  # when a server was last asked whether it is a cluster node
        self._use(client)

    def close(self) -> None:
        """Closes every connection the engine holds, a Sentinel setup's too (used again,
        the client would connect anew)."""
        client = self.client
        client.close()
        if isinstance(client, redis.RedisCluster):
            return
        client.connection_pool.disconnect()
        manager = getattr(client.connection_pool, "sentinel_manager", None)
        for sentinel in getattr(manager, "sentinels", ()):
            sentinel.connection_pool.disconnect()

    # -- topology -------------------------------------------------------------------

    @property
    def cluster(self) -> bool:
        """Whether the engine talks to a Redis Cluster (known once connected)."""
        return isinstance(self.client, redis.RedisCluster)

    def _use(self, client: redis.Redis | redis.RedisCluster) -> None:
        self.client = self.io.client = client
        registry = SlotRegistry(self.registry_key) if isinstance(client, redis.RedisCluster) \
            else Registry(self.registry_key)
        self.observer.registry = self.applier.registry = registry

    def _connect(self) -> Failure | None:
        """Turns a client that may stand for a Redis Cluster into a cluster client, at the
        first use that reaches a server; a Failure when the server is a cluster node whose
        cluster cannot be read (the slot map refused, say)."""
        client = self.client
        if not isinstance(client, SeedClient) or client.cluster_mode is False:
            return None
        now = time.monotonic()
        if now - self._asked < DISCOVERY_INTERVAL:
            return None  # asked a moment ago (this same plan-then-apply): no answer yet
        self._asked = now
        try:
            resolved = resolve(client)
        except (rex.RedisError, rex.RedisClusterException) as exc:
            at = f" at {self.target}" if self.target else ""
            return Failure(CLUSTER_NODE, f"Redis{at} is a Redis Cluster node, but the cluster's slot map could "
                                         f"not be read: {describe(exc).message}")
        if resolved is not client:
            self._use(resolved)
        return None

    @property
    def trim_on_apply(self) -> bool:
        """Whether apply runs retention to the end (the CLI) or leaves it to trim_round
        steps (the operator's bounded observation pass)."""
        return self.applier.trim_on_apply

    @trim_on_apply.setter
    def trim_on_apply(self, value: bool) -> None:
        self.applier.trim_on_apply = value

    @property
    def db_label(self) -> str:
        """The database as redis_exporter labels it ("db0"; a Redis Cluster has only db0)."""
        if isinstance(self.client, redis.RedisCluster):
            return "db0"
        return f"db{self.client.connection_pool.connection_kwargs.get('db', 0)}"

    @property
    def consumers_skipped(self) -> int:
        """Groups the last observe left without per-consumer detail (too many consumers)."""
        return self.observer.consumers_skipped

    # -- observation --------------------------------------------------------------

    def observe(
        self,
        keys: Iterable[str],
        *,
        owner_groups: dict[str, list[str]] | None = None,
        detail_keys: Iterable[str] = (),
        exact_lag: bool = False,
        owners: bool = True,
        consumer_keys: Iterable[str] = (),
        reset_groups: dict[str, list[str]] | None = None,
        cleanup_groups: dict[str, list[str]] | None = None,
    ) -> dict[str, StreamState]:
        """State per stream key. Unreachable Redis gives states that carry the failure."""
        keys = list(dict.fromkeys(keys))
        failure = self._connect()
        if failure is not None:
            return {key: StreamState(key, type="unknown", failure=failure) for key in keys}
        try:
            return self.observer.observe(
                keys, owner_groups=owner_groups, detail_keys=detail_keys, exact_lag=exact_lag, owners=owners,
                consumer_keys=consumer_keys, reset_groups=reset_groups, cleanup_groups=cleanup_groups,
            )
        except ObservationError as exc:
            return {key: StreamState(key, type="unknown", failure=exc.failure) for key in keys}

    def observe_intents(
        self, topics: list[TopicIntent], groups: list[GroupIntent], *, details: bool = False, retention: bool = True,
        figures: bool = False, also: Iterable[str] = (),
    ) -> dict[str, StreamState]:
        """What planning these intents needs, in one read. ``figures``: also every group's
        oldest pending entry and consumers (the operator's metrics and recovery
        checkpoints), for these streams and the ``also`` ones, in the same round trips."""
        owner_groups: dict[str, list[str]] = {}
        reset_groups: dict[str, list[str]] = {}
        cleanup_groups: dict[str, list[str]] = {}
        for g in groups:
            owner_groups.setdefault(g.stream, []).append(g.group)
            if g.reset is not None:
                reset_groups.setdefault(g.stream, []).append(g.group)
            if g.cleanup_idle_ms is not None:
                cleanup_groups.setdefault(g.stream, []).append(g.group)
        keys = [t.stream for t in topics] + [g.stream for g in groups] + list(also)
        detail_keys = keys if details or figures else [t.stream for t in topics if t.retention and retention]
        return self.observe(keys, owner_groups=owner_groups, detail_keys=detail_keys, exact_lag=details,
                            consumer_keys=keys if figures else (), reset_groups=reset_groups,
                            cleanup_groups=cleanup_groups)

    def discover(self, match: str = "*", count: int = 1000) -> list[str]:
        """Stream keys matching a glob pattern (SCAN with TYPE stream; on a Redis Cluster,
        on every master)."""
        failure = self._connect()
        if failure is not None:
            raise ObservationError(failure)
        try:
            keys = {k for k in self.client.scan_iter(match=wire(match), count=count, _type="stream")}
            # at least; SCAN pages are not counted one by one
            cluster = isinstance(self.client, redis.RedisCluster)
            self.stats.round_trips += len(self.client.get_primaries()) if cluster else 1  # type: ignore[union-attr]
        except (rex.RedisError, rex.RedisClusterException, OSError) as exc:
            raise ObservationError(describe(exc, self.target)) from exc
        return sorted(keys)

    # -- changes ----------------------------------------------------------------

    def plan(self, topics: list[TopicIntent], groups: list[GroupIntent],
             observed: dict[str, StreamState] | None = None) -> Plan:
        """The plan for these intents, from ``observed`` (read by ``observe_intents`` for
        them, so one read serves more than planning) or from a read made now."""
        with _collector_paused(len(topics) + len(groups)):
            if observed is None:
                observed = self.observe_intents(topics, groups)
            return make_plan(topics, groups, observed)

    def apply(self, plan: Plan) -> list[Result]:
        self._connect()
        with _collector_paused(len(plan.topics) + len(plan.groups)):
            return self.applier.apply(plan)

    def reconcile(self, topics: list[TopicIntent], groups: list[GroupIntent]) -> list[Result]:
        """Observe, plan and apply in one go."""
        with _collector_paused(len(topics) + len(groups)):
            return self.apply(self.plan(topics, groups))

    def checkpoint(self, states: dict[str, StreamState], groups: Iterable[tuple[str, str, Owner]]) -> int:
        """Records, for groups these owners manage, a position from which re-creating the
        group loses nothing (see OwnerRecord). ``states`` must carry the groups' oldest
        pending entries (observed with details). Returns how many records moved."""
        positions = []
        for stream, group, owner in groups:
            state = states.get(stream)
            observed = state.groups.get(group) if state is not None else None
            record = state.group_owners.get(group) if state is not None else None
            if observed is None or record is None or record.owner != owner:
                continue
            position = observed.resume_position()
            if position is not None and position != record.at:
                positions.append((stream, group, owner, position))
        self._connect()
        return self.applier.checkpoint(positions) if positions else 0

    def trim_round(self, topics: list[TopicIntent], per_pipeline: int = 50) -> list[TrimStep]:
        """One bounded retention step per Topic (see Applier.trim_round)."""
        self._connect()
        return self.applier.trim_round(topics, per_pipeline)

    def remove_consumer(self, stream: str, group: str, consumer: str) -> bool:
        """Removes one consumer if it holds no pending entry (checked atomically, like
        spec.consumerCleanup). True when it was removed."""
        self._connect()
        return self.applier.remove_consumer(stream, group, consumer)

    def reach(self) -> Failure | None:
        """Whether Redis answers one PING, within one timeout and without retries (see
        claims.reach): the CLI fails a run once, not once per resource."""
        return reach(self.client, self.target)

    def claims(self, topics: set[Owner], groups: set[Owner]) -> Claims:
        """The streams and groups these Topic and ConsumerGroup owners hold records of, from
        the whole registry. Raises ObservationError when it cannot be read."""
        from .prune import scan_registry

        failure = self._connect()
        if failure is not None:
            raise ObservationError(failure)
        try:
            return read_claims(scan_registry(self.client, self.applier.registry), topics, groups)
        except (rex.RedisError, rex.RedisClusterException, OSError) as exc:
            raise ObservationError(describe(exc, self.target, self.registry_key)) from exc

    def delete(self, topics: list[TopicIntent], groups: list[GroupIntent], *, dry_run: bool = False) -> list[Result]:
        """Deletes (deletionPolicy Delete) or releases what these intents own; ``dry_run``:
        only says what that would do, sending no write."""
        with _collector_paused(len(topics) + len(groups)):
            states = self.observe_intents(topics, groups, retention=False)  # deleting trims nothing
            return self.applier.delete(topics, groups, states, dry_run=dry_run)

    def orphans(self, cluster: str, namespaces: set[str], topics: list[TopicIntent],
                groups: list[GroupIntent]) -> Orphans:
        """What ``cluster`` owns in ``namespaces`` (by the ownership registry) that these
        intents no longer declare. Raises ObservationError when the registry cannot be read."""
        failure = self._connect()
        if failure is not None:
            raise ObservationError(failure)
        try:
            return find_orphans(scan_registry(self.client, self.applier.registry), cluster, namespaces,
                                topics, groups)
        except (rex.RedisError, rex.RedisClusterException, OSError) as exc:
            raise ObservationError(describe(exc, self.target)) from exc

    def prune(self, orphans: Orphans, *, dry_run: bool = False) -> list[Result]:
        """Deletes or releases ``orphans`` as ``delete`` does, by their recorded deletionPolicy."""
        results = self.delete(orphans.topics, orphans.groups, dry_run=dry_run)
        for result in results:
            result.pruned = True
            if result.outcome == DELETED:
                result.outcome = PRUNED
        return results
