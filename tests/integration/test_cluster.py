"""The engine and the CLI on a real Redis Cluster (3 masters, 3 replicas, tests/support/redis_cluster):
state on the node serving each slot, hash tags and non-ASCII names, a slot without a master,
a master killed and a slot migrated while applying, status/export over every master."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import redis

from redistreams import DEFAULT_REGISTRY_KEY
from redistreams.connection import RedisTarget
from redistreams.engine import Engine, GroupIntent, Memory, Owner, Result, RetentionPolicy, TopicIntent
from redistreams.engine.ids import StreamId
from redistreams.engine.ownership import EPOCH_FIELD, group_field, topic_field
from redistreams.engine.pipeline import ClusterSender
from redistreams.engine.registry import SlotRegistry, key_slot
from tests.support.cli import CLI
from tests.support.manifests import group, topic, write
from tests.support.redis_cluster import ClusterNode, RedisCluster

pytestmark = pytest.mark.integration

OK = {"created", "unchanged", "configured"}


def intents(streams: list[str], groups_per_topic: int = 3, prefix: str = "t",
            memory: dict[str, Result] | None = None) -> tuple[list[TopicIntent], list[GroupIntent]]:
    topics, groups = [], []
    memory = memory or {}

    def remembered(label: str) -> Memory | None:
        result = memory.get(label)
        if result is None or not result.ok:
            return None
        return Memory(epoch=result.epoch, position=result.created_at)

    for i, stream in enumerate(streams):
        owner = Owner("c", "ns", f"{prefix}{i}")
        label = f"topic/{prefix}{i}"
        topics.append(TopicIntent(label, owner, stream, memory=remembered(label)))
        for j in range(groups_per_topic):
            glabel = f"consumergroup/{prefix}{i}-{j}"
            groups.append(GroupIntent(glabel, Owner("c", "ns", f"{prefix}{i}-{j}"), owner, stream, f"g{j}",
                                      memory=remembered(glabel)))
    return topics, groups


def engine_for(cluster: RedisCluster, url: str | None = None) -> Engine:
    target = RedisTarget(url or cluster.url)
    return Engine(target.client(), target=target.display)


def assert_on_its_node(cluster: RedisCluster, stream: str, groups: int = 3, names: list[str] | None = None) -> None:
    """The stream, its groups and its records live on the master of its slot."""
    node = cluster.master_for(stream)
    client = node.client()
    assert client.type(stream) == "stream", stream
    assert len(client.xinfo_groups(stream)) == groups, stream
    registry = SlotRegistry(DEFAULT_REGISTRY_KEY).key_for(stream)
    assert key_slot(registry) == key_slot(stream)
    assert client.hexists(registry, topic_field(stream)), (stream, registry)
    assert client.hexists(registry, EPOCH_FIELD)
    for name in names or [f"g{j}" for j in range(groups)]:
        assert client.hexists(registry, group_field(stream, name))


def test_engine_applies_1000_topics_with_3_groups_each_on_the_nodes_of_their_slots(
        redis_cluster: RedisCluster) -> None:
    engine = engine_for(redis_cluster)
    streams = [f"orders/{i}" for i in range(1000)]
    topics, groups = intents(streams)
    results = engine.reconcile(topics, groups)
    assert Counter(r.outcome for r in results) == {"created": 4000}, [r.failure for r in results if r.failure][:3]
    assert engine.cluster and engine.db_label == "db0"
    masters = redis_cluster.masters()
    # observation (2 chunks), claims and changes, the epoch: a handful of round trips per master
    assert set(engine.stats.node_round_trips) == {m.address for m in masters}
    assert max(engine.stats.node_round_trips.values()) <= 6, engine.stats
    for stream in streams:
        assert_on_its_node(redis_cluster, stream)
    per_master = Counter(redis_cluster.master_for(s).address for s in streams)
    assert len(per_master) == 3 and min(per_master.values()) > 250  # spread over every master
    # One epoch per registry key, the same one for every result of that key.
    epochs = {SlotRegistry(DEFAULT_REGISTRY_KEY).key_for(r.stream): r.epoch for r in results}
    assert all(epochs.values())

    engine.stats.reset()
    before = redis_cluster.dirty()
    again = engine.reconcile(topics, groups)
    assert Counter(r.outcome for r in again) == {"unchanged": 4000}
    assert engine.stats.writes == 0 and redis_cluster.dirty() == before
    assert engine.stats.node_round_trips == {m.address: 2 for m in masters}  # observation only, 2 chunks
    assert sorted(engine.discover("orders/*")) == sorted(streams)


def test_delete_and_checkpoint_reach_each_slots_registry(redis_cluster: RedisCluster) -> None:
    engine = engine_for(redis_cluster)
    streams = [f"gone/{i}" for i in range(60)]
    topics, groups = intents(streams, groups_per_topic=2)
    topics = [TopicIntent(t.label, t.owner, t.stream, deletion_policy="Delete") for t in topics]
    groups = [GroupIntent(g.label, g.owner, g.topic, g.stream, g.group, deletion_policy="Delete") for g in groups]
    assert {r.outcome for r in engine.reconcile(topics, groups)} == {"created"}
    for stream in streams[:10]:
        client = redis_cluster.master_for(stream).client()
        client.xadd(stream, {"n": "1"})
        client.xreadgroup("g0", "c", {stream: ">"})
    states = engine.observe(streams, owner_groups={s: ["g0", "g1"] for s in streams}, detail_keys=streams)
    moved = engine.checkpoint(states, [(g.stream, g.group, g.owner) for g in groups])
    assert moved == 10  # g0 of the streams read from: its recovery position moved past the entry
    results = engine.delete(topics, groups)
    assert {r.outcome for r in results} == {"deleted"}, [r.failure for r in results if r.failure][:3]
    registry = SlotRegistry(DEFAULT_REGISTRY_KEY)
    for stream in streams:
        client = redis_cluster.master_for(stream).client()
        assert client.exists(stream) == 0
        assert not client.hexists(registry.key_for(stream), topic_field(stream))
        assert not client.hexists(registry.key_for(stream), group_field(stream, "g0"))


def test_retention_trims_on_every_master(redis_cluster: RedisCluster) -> None:
    engine = engine_for(redis_cluster)
    streams = [f"kept/{i}" for i in range(12)]
    policy = RetentionPolicy(max_length=5, allow_trimming_unconsumed=True)
    topics = [TopicIntent(f"topic/k{i}", Owner("c", "ns", f"k{i}"), s, retention=policy) for i, s in enumerate(streams)]
    assert {r.outcome for r in engine.reconcile(topics, [])} == {"created"}
    for stream in streams:
        client = redis_cluster.master_for(stream).client()
        for n in range(20):
            client.xadd(stream, {"n": str(n)})
    results = engine.reconcile(topics, [])
    assert all(r.trimmed == 15 for r in results), [(r.stream, r.trimmed, r.failure) for r in results]
    assert {redis_cluster.master_for(s).client().xlen(s) for s in streams} == {5}
    assert len({redis_cluster.master_for(s).address for s in streams}) == 3


def test_a_nodes_plain_url_finds_the_cluster(redis_cluster: RedisCluster) -> None:
    engine = engine_for(redis_cluster, redis_cluster.nodes[4].url)  # a replica's URL, even
    topics, groups = intents([f"s{i}" for i in range(50)])
    assert {r.outcome for r in engine.reconcile(topics, groups)} == {"created"}
    assert engine.cluster
    for i in range(50):
        assert_on_its_node(redis_cluster, f"s{i}")


def test_a_cluster_that_cannot_be_read_is_a_clear_error(redis_cluster: RedisCluster) -> None:
    """A node's URL for a user that may not read the slot map (no +cluster): every resource
    fails naming the cause, never MOVED noise, never the password."""
    for node in redis_cluster.nodes:  # ACL users are per node in a cluster
        node.client().execute_command("ACL", "SETUSER", "noslots", "on", ">Pw-noslots-9", "~*", "+@all", "-cluster")
    url = f"redis://noslots:Pw-noslots-9@127.0.0.1:{redis_cluster.nodes[0].port}/0"
    target = RedisTarget(url)
    engine = Engine(target.client(), target=target.display)
    results = engine.reconcile(*intents(["x", "y"], 1))
    assert {r.failure.reason for r in results if r.failure} == {"RedisClusterNode"} and len(results) == 4
    message = results[0].failure.message if results[0].failure else ""
    assert "is a Redis Cluster node, but the cluster's slot map could not be read" in message
    assert "cluster" in message.lower() and "Pw-noslots-9" not in message
    for node in redis_cluster.nodes:
        node.client().execute_command("ACL", "DELUSER", "noslots")


def test_a_user_that_may_not_load_scripts_fails_at_once_naming_it(redis_cluster: RedisCluster) -> None:
    for node in redis_cluster.nodes:
        node.client().execute_command("ACL", "SETUSER", "noload", "on", ">Pw-noload-9", "~*", "+@all",
                                      "-script|load")
    target = RedisTarget(f"redis+cluster://noload:Pw-noload-9@{redis_cluster.nodes[0].address}")
    engine = Engine(target.client(), target=target.display)
    started = time.monotonic()
    results = engine.reconcile(*intents(["p", "q"], 1))
    assert time.monotonic() - started < 3  # no NOSCRIPT rounds for a script that cannot be loaded
    assert {r.failure.reason for r in results if r.failure} == {"PermissionDenied"} and len(results) == 4
    assert all("script|load" in r.failure.message for r in results if r.failure)
    for node in redis_cluster.nodes:
        node.client().execute_command("ACL", "DELUSER", "noload")


def test_hash_tags_and_non_ascii_names(redis_cluster: RedisCluster) -> None:
    streams = ["{orders}.in", "{orders}.out", "{orders}", "ünïcødé/流/{ß}", "emoji/🚀", "a{}b{c}", "x{y"]
    engine = engine_for(redis_cluster)
    topics, groups = intents(streams, groups_per_topic=2)
    results = engine.reconcile(topics, groups)
    assert {r.outcome for r in results} == {"created"}, [r.failure for r in results if r.failure]
    for stream in streams:
        assert_on_its_node(redis_cluster, stream, groups=2)
    assert len({redis_cluster.master_for(s).address for s in streams[:3]}) == 1  # one tag, one slot
    assert key_slot("a{}b{c}") == redis.crc.key_slot(b"a{}b{c}")  # Redis' rules: an empty tag is no tag
    registry = SlotRegistry(DEFAULT_REGISTRY_KEY)
    assert registry.key_for("{orders}.in") == registry.key_for("{orders}.out")
    assert {r.outcome for r in engine.reconcile(topics, groups)} == {"unchanged"}


def test_a_slot_without_a_master_fails_only_its_resources(redis_cluster: RedisCluster) -> None:
    streams = [f"slotless/{i}" for i in range(30)]
    lost = streams[7]
    slot = key_slot(lost)
    owner = redis_cluster.unassign_slot(slot)
    try:
        engine = engine_for(redis_cluster)
        topics, groups = intents(streams, groups_per_topic=1)
        results = engine.reconcile(topics, groups)
        failed = [r for r in results if r.failure]
        assert {r.stream for r in failed} == {s for s in streams if key_slot(s) == slot}
        for r in failed:
            assert r.failure is not None and r.failure.reason == "ClusterSlotUnavailable"
            assert f"slot {slot}" in r.failure.message
        assert all(r.outcome == "created" for r in results if r.stream != lost)
    finally:
        redis_cluster.assign_slot(slot, owner)
    results = engine.reconcile(topics, groups)
    assert {r.outcome for r in results if r.stream == lost} == {"created"}
    assert {r.outcome for r in results if r.stream != lost} == {"unchanged"}


def _apply_in_batches(engine: Engine, streams: list[str], stop: threading.Event, out: list[Result],
                      batch: int = 50) -> None:
    """Like an operator under a burst: batch after batch until ``stop``, then once more."""
    i = 0
    while not stop.is_set() or i < len(streams):
        chunk = streams[i % len(streams): i % len(streams) + batch]
        topics, groups = intents(chunk, prefix=f"b{i}-")
        out.extend(engine.reconcile(topics, groups))
        i += batch
        if i >= len(streams) and stop.is_set():
            break


def _publisher(client: redis.RedisCluster, streams: list[str], stop: threading.Event,
               published: dict[str, list[str]]) -> None:
    while not stop.is_set():
        for stream in streams:
            try:
                published.setdefault(stream, []).append(client.xadd(stream, {"n": "1"}))
            except (redis.RedisError, redis.exceptions.RedisClusterException):
                time.sleep(0.05)  # the slot is failing over: this entry was not acknowledged


def _assert_nothing_skipped(cluster: RedisCluster, published: dict[str, list[str]], groups: int = 3) -> None:
    """Every acknowledged entry still in its stream comes after each group's position."""
    for stream, ids in published.items():
        client = cluster.master_for(stream).client()
        present = {entry_id for entry_id, _ in client.xrange(stream)}
        kept = [i for i in ids if i in present]
        info = client.xinfo_groups(stream)
        assert len(info) == groups, stream
        for g in info:
            if kept:
                assert StreamId.parse(g["last-delivered-id"]) < StreamId.parse(kept[0]), (stream, g, kept[0])


@pytest.mark.slow
def test_a_master_killed_mid_apply(redis_cluster: RedisCluster) -> None:
    """Apply, then a burst of batches while a master dies and its replica takes over, with a
    publisher on the first streams: re-applying ends with everything in place, no group
    past an acknowledged entry."""
    engine = engine_for(redis_cluster)
    first = [f"before/{i}" for i in range(300)]
    topics, groups = intents(first)
    results = {r.label: r for r in engine.reconcile(topics, groups)}
    assert {r.outcome for r in results.values()} == {"created"}

    stop, published, burst = threading.Event(), {}, []  # type: ignore[var-annotated]
    pub_client = redis_cluster.client()
    publisher = threading.Thread(target=_publisher, args=(pub_client, first[:60], stop, published))
    later = [f"during/{i}" for i in range(600)]
    applier = threading.Thread(target=_apply_in_batches, args=(engine_for(redis_cluster), later, stop, burst))
    publisher.start()
    applier.start()
    time.sleep(0.3)
    victim = redis_cluster.master_for(first[0])
    redis_cluster.fail_over(victim)
    time.sleep(0.5)
    stop.set()
    applier.join(60)
    publisher.join(30)
    assert not applier.is_alive() and not publisher.is_alive()
    assert burst, "the burst applied nothing"

    # The operator's next pass: its memory is what the first apply reported.
    engine = engine_for(redis_cluster)
    topics, groups = intents(first, memory=results)
    again = engine.reconcile(topics, groups)
    assert not [r.failure for r in again if r.failure]
    assert {r.outcome for r in again} <= OK
    topics, groups = intents(later, prefix="later")
    adopted = engine.reconcile(topics, groups)
    failures = [r.failure for r in adopted if r.failure]
    # streams of the burst are claimed by its owners (b<i>-…): a conflict is the right answer there
    assert {f.reason for f in failures} <= {"Conflict"}
    for stream in first:
        assert_on_its_node(redis_cluster, stream)
    _assert_nothing_skipped(redis_cluster, published)
    redis_cluster.restart(victim)


@pytest.mark.slow
def test_a_slot_migrated_during_apply(redis_cluster: RedisCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """Applies at each step of a slot's migration: MIGRATING with every key still on the
    source, every key moved (ASK), new keys next to moved ones (TRYAGAIN until SETSLOT
    NODE), and after it with a stale slot map (MOVED)."""
    engine = engine_for(redis_cluster)
    tagged = [f"{{mig}}/{i}" for i in range(40)]
    topics, groups = intents(tagged)
    assert {r.outcome for r in engine.reconcile(topics, groups)} == {"created"}
    slot = key_slot("{mig}")
    source = redis_cluster.master_for(slot)
    target = next(m for m in redis_cluster.masters() if m is not source)

    migration = redis_cluster.begin_migration(slot, target)
    topics, groups = intents(tagged, groups_per_topic=4)  # a group more on each stream
    results = engine.reconcile(topics, groups)
    assert Counter(r.outcome for r in results) == {"unchanged": 160, "created": 40}

    migration.move_keys(batch=7)
    topics, groups = intents(tagged, groups_per_topic=5)  # every key on the target: ASK
    results = engine.reconcile(topics, groups)
    assert Counter(r.outcome for r in results) == {"unchanged": 200, "created": 40}, \
        [r.failure for r in results if r.failure][:3]

    # A migration that outlasts the engine's patience fails those resources only, naming the slot.
    monkeypatch.setattr(ClusterSender, "retry_seconds", 0.3)
    late = engine.reconcile(*intents(["{mig}/late", "elsewhere/late"], 1, "late"))
    assert {r.failure.reason for r in late if r.failure and r.stream == "{mig}/late"} == {"ClusterSlotUnavailable"}
    assert all(f"slot {slot} is being migrated" in r.failure.message for r in late if r.failure)
    assert {r.outcome for r in late if r.stream == "elsewhere/late"} == {"created"}
    monkeypatch.undo()

    # New keys next to moved ones: TRYAGAIN (a script's keys split over two nodes) until
    # the migration ends, within the engine's retry time.
    new = [f"{{mig}}/new/{i}" for i in range(20)]
    out: list[Result] = []
    applier = threading.Thread(target=lambda: out.extend(engine_for(redis_cluster).reconcile(*intents(new, 3, "n"))))
    applier.start()
    time.sleep(0.5)
    migration.finish()
    applier.join(30)
    assert {r.outcome for r in out} == {"created"}, [r.failure for r in out if r.failure][:3]
    results = engine.reconcile(topics, groups)  # the engine's slot map is stale: MOVED
    assert {r.outcome for r in results} == {"unchanged"}, [r.failure for r in results if r.failure][:3]

    assert redis_cluster.master_for(slot) is target
    assert source.client().execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
    for stream in tagged:
        assert_on_its_node(redis_cluster, stream, groups=5)
    for stream in new:
        assert_on_its_node(redis_cluster, stream)


def test_cli_apply_plan_status_export_on_the_cluster(redis_cluster: RedisCluster, tmp_path: Path) -> None:
    docs = []
    for i in range(1000):
        docs.append(topic(f"t{i}", streamName=f"cli/{i}"))
        docs.extend(group(f"g{i}-{j}", f"t{i}") for j in range(3))
    path = write(tmp_path, "".join(docs))
    cli = CLI(redis_cluster.url)
    result = cli("apply", "-f", path, "-o", "json", timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    outcomes = Counter(r["outcome"] for r in json.loads(result.stdout)["results"])
    assert outcomes == {"created": 4000}
    for i in range(0, 1000, 37):
        assert_on_its_node(redis_cluster, f"cli/{i}", names=[f"g{i}-{j}" for j in range(3)])

    plan = cli("plan", "-f", path)
    assert plan.returncode == 0, plan.stdout[-2000:] + plan.stderr[-2000:]

    status = cli("status", "--match", "cli/*", "-o", "json", timeout=180)
    assert status.returncode == 0, status.stderr[-2000:]
    names = {entry["stream"] for entry in json.loads(status.stdout)["streams"]}
    assert names == {f"cli/{i}" for i in range(1000)}  # every master's streams

    export = cli("export", "--match", "cli/*", timeout=180)
    assert export.returncode == 0, export.stderr[-2000:]
    assert export.stdout.count("kind: Topic") == 1000
    assert export.stdout.count("kind: ConsumerGroup") == 3000


def test_an_unreachable_cluster_is_a_failure_per_resource(tmp_path: Path) -> None:
    node = ClusterNode()  # never started: nothing listens on its port
    engine = Engine(RedisTarget(f"redis+cluster://{node.address}").client())
    topics, groups = intents(["a", "b"], groups_per_topic=1)
    results = engine.reconcile(topics, groups)
    assert {r.failure.reason for r in results if r.failure} == {"RedisUnavailable"}
    assert len(results) == 4 and not engine.cluster
    node.close()
