"""The operator on Redis behind Sentinel: it follows a failover, and a failover that
lost a group it had made (asynchronous replication) is a Redis reset: the group comes
back from 0 with a RedisReset event, and nothing published since is missed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.controlplane import Cluster, wait_for
from tests.support.kube import create, events, get, new_namespace, reasons, run_operator, wait_ready
from tests.support.redis_sentinel import SentinelGroup

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def sentinel() -> Iterator[SentinelGroup]:
    group = SentinelGroup().start()
    yield group
    group.close()


@pytest.fixture(scope="module")
def operator(cluster: Cluster, sentinel: SentinelGroup, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    from redistreams.controller.runtime import OperatorConfig

    config = OperatorConfig(cluster_id="e2e-sentinel", redis_url=sentinel.url, resync_interval=2.0,
                            status_interval=1.0, retry_delay=1.0, observe_interval=1.0)
    yield from run_operator(cluster, tmp_path_factory, config)


@pytest.fixture
def ns(cluster: Cluster, operator: None) -> str:
    return new_namespace(cluster, "sn")


def epoch_in_status(cluster: Cluster, ns: str, kind: str, name: str) -> Any:
    return (get(cluster, ns, kind, name).get("status") or {}).get("registryEpoch")


def test_a_failover_that_lost_a_group_is_a_redis_reset(cluster: Cluster, ns: str, sentinel: SentinelGroup) -> None:
    key = f"{ns}/orders"
    create(cluster, ns, "Topic", "orders", {"streamName": key})
    create(cluster, ns, "ConsumerGroup", "billing", {"topicRef": {"name": "orders"}})
    wait_ready(cluster, ns, "ConsumerGroup", "billing")
    wait_for(lambda: epoch_in_status(cluster, ns, "ConsumerGroup", "billing"), "the registry epoch in status")
    sentinel.master().client().execute_command("WAIT", 2, 5000)  # all of that reached the replicas

    # The operator makes another group on a master cut off from its replicas, which then dies.
    def create_audit() -> None:
        create(cluster, ns, "ConsumerGroup", "audit", {"topicRef": {"name": "orders"}})
        wait_ready(cluster, ns, "ConsumerGroup", "audit", timeout=60)  # a loaded CI machine
        wait_for(lambda: epoch_in_status(cluster, ns, "ConsumerGroup", "audit"), "the epoch in audit's status", 60)
        assert any(g["name"] == "audit" for g in sentinel.master().client().xinfo_groups(key))

    _, new = sentinel.lose_writes(create_audit)
    r = new.client()
    # Publishers go on at once. The operator may already have re-created audit (it follows
    # the failover within a second), so the loss is proven by the RedisReset event below,
    # not by reading the new master before the operator does.
    ids = [r.xadd(key, {"headers": "null", "body": f"after-{i}"}) for i in range(3)]

    wait_for(lambda: any(g["name"] == "audit" for g in r.xinfo_groups(key)), "audit re-created", 60)
    wait_for(lambda: "RedisReset" in reasons(cluster, ns, "audit"), "a RedisReset event for audit", 60)
    message = next(e["message"] for e in events(cluster, ns, "audit") if e["reason"] == "RedisReset")
    assert "re-creating the group from 0" in message, message
    delivered = r.xreadgroup("audit", "app", {key: ">"})
    assert [entry_id for entry_id, _ in delivered[0][1]] == ids
    wait_ready(cluster, ns, "ConsumerGroup", "audit")
    wait_ready(cluster, ns, "ConsumerGroup", "billing")
