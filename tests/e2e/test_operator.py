"""The operator against a real kube-apiserver and a real redis-server (the ``operator``
and ``ns`` fixtures: tests/e2e/conftest.py)."""

from __future__ import annotations

import time

import pytest

from tests.support.controlplane import Cluster, wait_for
from tests.support.kube import API, condition, create, events, get, kstatus, wait_ready
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.e2e

def test_kstatus_progress_current_and_failed(cluster: Cluster, ns: str, redis: RedisServer) -> None:
    fresh = create(cluster, ns, "Topic", "k", {"streamName": f"{ns}/k"})
    assert kstatus(fresh) == "InProgress"  # observedGeneration defaults to -1
    assert kstatus(wait_ready(cluster, ns, "Topic", "k")) == "Current"
    waiting = create(cluster, ns, "ConsumerGroup", "orphan", {"topicRef": {"name": "missing"}})
    assert kstatus(waiting) == "InProgress"
    orphan = wait_ready(cluster, ns, "ConsumerGroup", "orphan", status="False", reason="TopicNotFound")
    assert kstatus(orphan) == "InProgress"
    create(cluster, ns, "Topic", "k2", {"streamName": f"{ns}/k"})
    assert kstatus(wait_ready(cluster, ns, "Topic", "k2", status="False", reason="Conflict")) == "Failed"


def test_topic_and_group_become_ready_before_any_publisher(cluster: Cluster, ns: str, redis: RedisServer) -> None:
    create(cluster, ns, "Topic", "orders", {"streamName": f"{ns}/orders"})
    create(cluster, ns, "ConsumerGroup", "billing", {"topicRef": {"name": "orders"}})
    topic = wait_ready(cluster, ns, "Topic", "orders")
    group = wait_ready(cluster, ns, "ConsumerGroup", "billing")
    r = redis.client()
    assert r.xlen(f"{ns}/orders") == 0
    assert [g["name"] for g in r.xinfo_groups(f"{ns}/orders")] == ["billing"]
    assert topic["status"]["observedGeneration"] == topic["metadata"]["generation"]
    assert topic["status"]["streamName"] == f"{ns}/orders"
    assert condition(topic, "Stalled")["status"] == "False"
    assert condition(topic, "Reconciling")["status"] == "False"
    assert group["status"]["groupName"] == "billing" and group["status"]["lag"] == 0
    assert not topic["metadata"].get("finalizers")  # Retain needs no finalizer: nothing to clean up
    # The seed scenario: publish first, consume later, nothing missed.
    ids = [r.xadd(f"{ns}/orders", {"headers": "null", "body": str(i)}) for i in range(3)]
    got = r.xreadgroup("billing", "c1", {f"{ns}/orders": ">"})
    assert [e[0] for e in got[0][1]] == ids
    # Figures reach status without a spec change.
    wait_for(lambda: get(cluster, ns, "Topic", "orders")["status"].get("length") == 3, "length in status")


def test_group_before_topic_waits_then_becomes_ready(cluster: Cluster, ns: str, redis: RedisServer) -> None:
    create(cluster, ns, "ConsumerGroup", "early", {"topicRef": {"name": "late"}})
    body = wait_ready(cluster, ns, "ConsumerGroup", "early", status="False", reason="TopicNotFound")
    assert condition(body, "Reconciling")["status"] == "True"
    assert condition(body, "Stalled")["status"] == "False"
    create(cluster, ns, "Topic", "late", {"streamName": f"{ns}/late"})
    wait_ready(cluster, ns, "ConsumerGroup", "early", timeout=60)
    assert [g["name"] for g in redis.client().xinfo_groups(f"{ns}/late")] == ["early"]


def test_drift_is_repaired(cluster: Cluster, ns: str, redis: RedisServer) -> None:
    create(cluster, ns, "Topic", "t", {"streamName": f"{ns}/t"})
    create(cluster, ns, "ConsumerGroup", "g", {"topicRef": {"name": "t"}})
    wait_ready(cluster, ns, "ConsumerGroup", "g")
    r = redis.client()
    r.delete(f"{ns}/t")
    wait_for(lambda: r.exists(f"{ns}/t") and r.xinfo_groups(f"{ns}/t"), "stream and group re-created", 60)

    def reasons(name: str) -> set[str]:
        events = cluster.get(f"/api/v1/namespaces/{ns}/events").json["items"]
        return {e["reason"] for e in events if e["involvedObject"]["name"] == name}

    wait_for(lambda: {"Created", "DriftRepaired"} <= reasons("t"), "Created and DriftRepaired events", 60)
    wait_for(lambda: "DriftRepaired" in reasons("g"), "DriftRepaired event for the group", 60)


def test_redis_reset_recreates_groups_from_zero(cluster: Cluster, ns: str, redis: RedisServer) -> None:
    key = f"{ns}/reset"
    create(cluster, ns, "Topic", "reset", {"streamName": key})
    create(cluster, ns, "ConsumerGroup", "g", {"topicRef": {"name": "reset"}})
    wait_ready(cluster, ns, "ConsumerGroup", "g")
    r = redis.client()
    for i in range(3):
        r.xadd(key, {"body": f"before-{i}"})
    wait_for(lambda: get(cluster, ns, "Topic", "reset")["status"].get("entriesAdded") == 3, "entriesAdded recorded")
    r.delete(key)  # what a restart without persistence looks like to this stream
    after = [r.xadd(key, {"body": f"after-{i}"}) for i in range(2)]  # publishers go on
    wait_for(lambda: r.xinfo_groups(key), "group re-created", 60)
    got = r.xreadgroup("g", "c", {key: ">"})
    assert [e[0] for e in got[0][1]] == after  # from 0: nothing published after the reset is lost


def test_conflict_and_wrong_type_stall(cluster: Cluster, ns: str, redis: RedisServer) -> None:
    create(cluster, ns, "Topic", "first", {"streamName": f"{ns}/shared"})
    wait_ready(cluster, ns, "Topic", "first")
    create(cluster, ns, "Topic", "second", {"streamName": f"{ns}/shared"})
    body = wait_ready(cluster, ns, "Topic", "second", status="False", reason="Conflict")
    assert condition(body, "Stalled")["status"] == "True"
    wait_for(lambda: any(e["type"] == "Warning" for e in events(cluster, ns, "second", "Conflict")), "Conflict event")
    assert f'Topic "{ns}/first"' in condition(body)["message"]
    redis.client().rpush(f"{ns}/list", "x")
    create(cluster, ns, "Topic", "listy", {"streamName": f"{ns}/list"})
    body = wait_ready(cluster, ns, "Topic", "listy", status="False", reason="WrongType")
    assert condition(body, "Stalled")["status"] == "True"
    assert redis.client().lrange(f"{ns}/list", 0, -1) == ["x"]


def test_deletion_policies(cluster: Cluster, ns: str, redis: RedisServer) -> None:
    r = redis.client()
    create(cluster, ns, "Topic", "gone", {"streamName": f"{ns}/gone", "deletionPolicy": "Delete"})
    create(cluster, ns, "Topic", "kept", {"streamName": f"{ns}/kept"})
    gone = wait_ready(cluster, ns, "Topic", "gone")
    wait_ready(cluster, ns, "Topic", "kept")
    assert "redistreams.dev/finalizer" in gone["metadata"]["finalizers"]
    assert r.hget("redistreams:owners", f'["topic","{ns}/kept"]') is not None
    cluster.delete(f"{API}/namespaces/{ns}/topics/gone").raise_for_status()
    cluster.delete(f"{API}/namespaces/{ns}/topics/kept").raise_for_status()
    wait_for(lambda: not get(cluster, ns, "Topic", "gone") and not get(cluster, ns, "Topic", "kept"), "objects gone")
    assert r.exists(f"{ns}/gone") == 0
    assert r.exists(f"{ns}/kept") == 1
    # Retain: the data stays and the ownership record is released, so another resource may adopt it.
    wait_for(lambda: r.hget("redistreams:owners", f'["topic","{ns}/kept"]') is None, "ownership released")
    assert r.hget("redistreams:owners", f'["topic","{ns}/gone"]') is None


def test_delete_objects_keep_their_finalizer_while_redis_is_unreachable(cluster: Cluster, ns: str) -> None:
    import base64

    server = RedisServer().start()
    cluster.post(f"/api/v1/namespaces/{ns}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "redis-away"},
        "data": {"url": base64.b64encode(server.url.encode()).decode()},
    }).raise_for_status()
    try:
        create(cluster, ns, "Topic", "t", {"streamName": f"{ns}/t", "deletionPolicy": "Delete",
                                           "connection": {"secretRef": {"name": "redis-away"}}})
        create(cluster, ns, "ConsumerGroup", "g", {"topicRef": {"name": "t"}, "deletionPolicy": "Delete"})
        wait_ready(cluster, ns, "Topic", "t")
        wait_ready(cluster, ns, "ConsumerGroup", "g")
        server.stop()  # stopped, its port kept (reserved): the restart below is on the Secret's URL
        for plural, name in (("consumergroups", "g"), ("topics", "t")):
            cluster.delete(f"{API}/namespaces/{ns}/{plural}/{name}").raise_for_status()
        time.sleep(6)  # several retries of the cleanup (retry_delay 1 s, delete retries every 2 s)
        for kind, name in (("Topic", "t"), ("ConsumerGroup", "g")):
            body = get(cluster, ns, kind, name)
            assert body["metadata"].get("deletionTimestamp") and body["metadata"]["finalizers"] == \
                ["redistreams.dev/finalizer"], f"{kind}/{name}"
        server.start()
        wait_for(lambda: not get(cluster, ns, "Topic", "t") and not get(cluster, ns, "ConsumerGroup", "g"),
                 "both gone once Redis answers", 60)
    finally:
        server.close()


def test_paused_resources_are_left_alone(cluster: Cluster, ns: str, redis: RedisServer) -> None:
    create(cluster, ns, "Topic", "p", {"streamName": f"{ns}/p"})
    wait_ready(cluster, ns, "Topic", "p")
    cluster.request("PATCH", f"{API}/namespaces/{ns}/topics/p",
                    {"metadata": {"annotations": {"redistreams.dev/paused": "true"}}},
                    content_type="application/merge-patch+json").raise_for_status()
    # A Topic created after the pause comes after it on the operator's watch: once it is Ready,
    # the pause has been seen (a fixed second was not always enough on a loaded machine, and
    # a resync before it re-created the stream).
    create(cluster, ns, "Topic", "canary", {"streamName": f"{ns}/canary"})
    wait_ready(cluster, ns, "Topic", "canary")
    r = redis.client()
    r.delete(f"{ns}/p", f"{ns}/canary")
    # The pass that repairs the canary read p as well (and posts the Event after its repairs):
    # p stays gone, however slow or fast that pass came.
    wait_for(lambda: events(cluster, ns, "canary", "DriftRepaired"), "the canary repaired by a resync", 60)
    assert r.exists(f"{ns}/canary") == 1
    assert r.exists(f"{ns}/p") == 0


def test_connection_from_a_secret(cluster: Cluster, ns: str, redis: RedisServer) -> None:
    import base64

    other = RedisServer().start()
    try:
        create(cluster, ns, "Topic", "elsewhere",
               {"streamName": "elsewhere", "connection": {"secretRef": {"name": "redis-b"}}})
        body = wait_ready(cluster, ns, "Topic", "elsewhere", status="False", reason="SecretNotFound")
        assert condition(body, "Stalled")["status"] == "True"
        cluster.post(f"/api/v1/namespaces/{ns}/secrets", {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "redis-b"},
            "data": {"url": base64.b64encode(other.url.encode()).decode()},
        }).raise_for_status()
        wait_ready(cluster, ns, "Topic", "elsewhere", timeout=60)
        assert other.client().exists("elsewhere") == 1
        assert redis.client().exists("elsewhere") == 0
        create(cluster, ns, "ConsumerGroup", "g", {"topicRef": {"name": "elsewhere"}})
        wait_ready(cluster, ns, "ConsumerGroup", "g")
        assert [g["name"] for g in other.client().xinfo_groups("elsewhere")] == ["g"]
    finally:
        other.close()


def test_redis_down_then_up(cluster: Cluster, ns: str) -> None:
    import base64

    server = RedisServer()  # not started yet: its port is reserved, nothing listens there
    try:
        cluster.post(f"/api/v1/namespaces/{ns}/secrets", {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "redis-later"},
            "data": {"url": base64.b64encode(server.admin_url.encode()).decode()},
        }).raise_for_status()
        create(cluster, ns, "Topic", "later", {"connection": {"secretRef": {"name": "redis-later"}}})
        body = wait_ready(cluster, ns, "Topic", "later", status="False", reason="RedisUnavailable")
        assert condition(body, "Reconciling")["status"] == "True"
        assert condition(body, "Stalled")["status"] == "False"
        server.start()
        wait_ready(cluster, ns, "Topic", "later", timeout=60)
        assert server.client().exists("later") == 1
    finally:
        server.close()

