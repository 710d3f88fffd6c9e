"""Engine guarantees the operator will rely on: bounded round trips, races, ownership records."""

from __future__ import annotations

import json

import pytest

from redistreams.engine import Engine, GroupIntent, Owner, TopicIntent
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration


def intents(count: int, groups_per_topic: int, cluster: str = "c") -> tuple[list[TopicIntent], list[GroupIntent]]:
    topics, groups = [], []
    for i in range(count):
        owner = Owner(cluster, "ns", f"t{i}")
        topics.append(TopicIntent(f"topic/t{i}", owner, f"stream:{i}"))
        for j in range(groups_per_topic):
            groups.append(GroupIntent(f"consumergroup/g{i}-{j}", Owner(cluster, "ns", f"g{i}-{j}"), owner,
                                      f"stream:{i}", f"g{j}"))
    return topics, groups


def test_round_trips_are_bounded_and_noop_writes_nothing(redis_server: RedisServer) -> None:
    engine = Engine(redis_server.client(), chunk_size=500)
    topics, groups = intents(1200, 2)
    results = engine.reconcile(topics, groups)
    assert {r.outcome for r in results} == {"created"}
    # 3 observation chunks, 1 claim pipeline, 1-2 action pipelines of at most 5000 commands.
    assert engine.stats.round_trips <= 3 + 1 + 2, engine.stats
    engine.stats.reset()
    before = redis_server.dirty()
    results = engine.reconcile(topics, groups)
    assert {r.outcome for r in results} == {"unchanged"}
    assert engine.stats.writes == 0
    assert engine.stats.round_trips == 3  # observation only
    assert redis_server.dirty() == before


def test_concurrent_claims_only_one_owner_wins(redis_server: RedisServer) -> None:
    a = Engine(redis_server.client())
    b = Engine(redis_server.client())
    topic_a = TopicIntent("topic/orders", Owner("east", "ns", "orders"), "orders")
    topic_b = TopicIntent("topic/orders", Owner("west", "ns", "orders"), "orders")
    group_b = GroupIntent("consumergroup/b", Owner("west", "ns", "b"), topic_b.owner, "orders", "b-group")
    plan_a = a.plan([topic_a], [])
    plan_b = b.plan([topic_b], [group_b])  # both saw the stream missing and unowned
    (ra,) = a.apply(plan_a)
    rb_topic, rb_group = b.apply(plan_b)
    assert ra.outcome == "created"
    assert rb_topic.failure is not None and rb_topic.failure.reason == "Conflict"
    assert "claimed concurrently" in rb_topic.failure.message
    assert rb_group.failure is not None
    r = redis_server.client()
    assert r.xinfo_groups("orders") == []  # the loser created nothing
    record = json.loads(r.hget("redistreams:owners", '["topic","orders"]'))
    assert record == {"cluster": "east", "namespace": "ns", "name": "orders", "created": True}


def test_stream_and_group_appearing_meanwhile_are_adopted_not_owned(redis_server: RedisServer) -> None:
    engine = Engine(redis_server.client())
    topic = TopicIntent("topic/orders", Owner("c", "ns", "orders"), "orders", deletion_policy="Delete")
    group = GroupIntent("consumergroup/billing", Owner("c", "ns", "billing"), topic.owner, "orders", "billing")
    plan = engine.plan([topic], [group])
    r = redis_server.client()
    r.xadd("orders", {"body": "publisher was first"})
    r.xgroup_create("orders", "billing", "0")
    rt, rg = engine.apply(plan)
    assert rt.outcome == "configured" and "stream appeared meanwhile" in rt.details[-1]
    assert rg.outcome == "configured" and "group appeared meanwhile" in rg.details[-1]
    records = {k: json.loads(v) for k, v in r.hgetall("redistreams:owners").items()}
    assert records['["topic","orders"]']["created"] is False
    assert records['["group","orders","billing"]']["created"] is False
    # So even deletionPolicy Delete leaves them alone.
    results = engine.delete([topic], [group])
    assert [res.outcome for res in results] == ["released", "released"]
    assert r.xlen("orders") == 1


def test_other_types_are_never_touched(redis_server: RedisServer) -> None:
    r = redis_server.client()
    r.hset("h", "f", "v")
    r.sadd("s", "m")
    engine = Engine(redis_server.client())
    topics = [TopicIntent(f"topic/{k}", Owner("c", "ns", k), k, deletion_policy="Delete") for k in ("h", "s")]
    results = engine.reconcile(topics, [])
    assert [res.failure.reason for res in results if res.failure] == ["WrongType", "WrongType"]
    assert "holds a hash" in results[0].failure.message
    assert r.hgetall("h") == {"f": "v"} and r.smembers("s") == {"m"}
    assert not r.exists("redistreams:owners")
