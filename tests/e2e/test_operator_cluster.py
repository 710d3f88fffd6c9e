"""The operator on a Redis Cluster (3 masters, 3 replicas): Topics and groups spread over
the slots become Ready with their state on each slot's master; a slot without a master
holds back only its resources (ClusterSlotUnavailable) until it is served again; after a
master is killed, what is created next becomes Ready too."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from redistreams.engine.registry import key_slot
from tests.support.controlplane import Cluster, wait_for
from tests.support.kube import condition, create, get, new_namespace, run_operator, wait_ready
from tests.support.redis_cluster import RedisCluster

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def redis_nodes() -> Iterator[RedisCluster]:
    nodes = RedisCluster().start()
    yield nodes
    nodes.close()


@pytest.fixture(scope="module")
def operator(cluster: Cluster, redis_nodes: RedisCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    from redistreams.controller.runtime import OperatorConfig

    # One node's plain URL: the operator finds the cluster (INFO cluster) at first use.
    config = OperatorConfig(cluster_id="e2e-cluster", redis_url=redis_nodes.plain_url, resync_interval=2.0,
                            status_interval=1.0, retry_delay=1.0)
    yield from run_operator(cluster, tmp_path_factory, config)


@pytest.fixture
def ns(cluster: Cluster, operator: None) -> str:
    return new_namespace(cluster, "cl")


def declare(cluster: Cluster, ns: str, count: int, prefix: str = "t") -> list[str]:
    streams = []
    for i in range(count):
        stream = f"{ns}/{prefix}{i}"
        streams.append(stream)
        create(cluster, ns, "Topic", f"{prefix}{i}", {"streamName": stream})
        for j in range(2):
            create(cluster, ns, "ConsumerGroup", f"{prefix}{i}-g{j}", {"topicRef": {"name": f"{prefix}{i}"}})
    return streams


def test_topics_and_groups_over_the_slots_become_ready(cluster: Cluster, ns: str, redis_nodes: RedisCluster) -> None:
    streams = declare(cluster, ns, 30)
    for i in range(30):
        wait_ready(cluster, ns, "Topic", f"t{i}", timeout=60)
        for j in range(2):
            wait_ready(cluster, ns, "ConsumerGroup", f"t{i}-g{j}", timeout=60)
    assert len({redis_nodes.master_for(s).address for s in streams}) == 3
    for i, stream in enumerate(streams):
        groups = redis_nodes.master_for(stream).client().xinfo_groups(stream)
        assert sorted(g["name"] for g in groups) == [f"t{i}-g0", f"t{i}-g1"]


def test_a_slot_without_a_master_holds_back_only_its_resources(cluster: Cluster, ns: str,
                                                                redis_nodes: RedisCluster) -> None:
    lost, kept = f"{ns}/{{held}}", f"{ns}/free"
    slot = key_slot(lost)
    assert key_slot(kept) != slot
    owner = redis_nodes.unassign_slot(slot)
    try:
        create(cluster, ns, "Topic", "held", {"streamName": lost})
        create(cluster, ns, "Topic", "free", {"streamName": kept})
        wait_ready(cluster, ns, "Topic", "free", timeout=60)
        body = wait_ready(cluster, ns, "Topic", "held", status="False", reason="ClusterSlotUnavailable", timeout=60)
        assert f"slot {slot}" in condition(body).get("message", "")
    finally:
        redis_nodes.assign_slot(slot, owner)
    wait_ready(cluster, ns, "Topic", "held", timeout=60)
    assert redis_nodes.master_for(lost).client().exists(lost) == 1


def test_after_a_master_is_killed_new_resources_become_ready(cluster: Cluster, ns: str,
                                                              redis_nodes: RedisCluster) -> None:
    first = declare(cluster, ns, 10, "a")
    for i in range(10):  # all of it, so no write of the operator's is in flight at the kill
        wait_ready(cluster, ns, "Topic", f"a{i}", timeout=60)
        for j in range(2):
            wait_ready(cluster, ns, "ConsumerGroup", f"a{i}-g{j}", timeout=60)
    victim = redis_nodes.master_for(first[0])
    if victim is redis_nodes.nodes[0]:  # keep the operator's seed URL alive
        victim = next(m for m in redis_nodes.masters() if m is not redis_nodes.nodes[0])
    redis_nodes.fail_over(victim)
    later = declare(cluster, ns, 10, "b")
    for i in range(10):
        wait_ready(cluster, ns, "Topic", f"b{i}", timeout=90)
        wait_ready(cluster, ns, "ConsumerGroup", f"b{i}-g1", timeout=90)
    # Replication is asynchronous: a group the killed master had not passed on yet comes
    # back with the operator's next pass, so this is waited for.
    for stream in first + later:
        wait_for(lambda stream=stream: len(redis_nodes.master_for(stream).client().xinfo_groups(stream)) == 2,
                 f"both groups of {stream}", 60)
    for i in range(10):  # nothing regressed on the streams made before
        assert condition(get(cluster, ns, "Topic", f"a{i}")).get("status") == "True"
    redis_nodes.restart(victim)
