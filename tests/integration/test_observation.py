"""The operator's observation pass on a real Redis: metric samples match what Redis
reports, and stepwise retention never drops an entry a group still needs while
publishers and consumers are busy."""

from __future__ import annotations

import time

import pytest

from redistreams.controller.samples import stream_rows
from redistreams.engine import Engine, Owner, RetentionPolicy, TopicIntent
from tests.support.redis_server import RedisServer
from tests.support.workloads import BusyStream

pytestmark = pytest.mark.integration


def samples(rows: list, name: str) -> dict[tuple[str, ...], float]:
    return {labels: value for n, labels, value in rows if n == name}


def test_metric_rows_match_redis(redis_server: RedisServer) -> None:
    r = redis_server.client()
    key = "orders"
    r.xgroup_create(key, "billing", "$", mkstream=True)
    ids = [r.xadd(key, {"headers": "null", "body": str(i)}) for i in range(10)]
    r.xreadgroup("billing", "c1", {key: ">"}, count=4)
    r.xreadgroup("billing", "c2", {key: ">"}, count=2)
    r.xack(key, "billing", ids[0], ids[1])  # c1: 2 pending, c2: 2 pending; lag 4
    r.xgroup_create(key, "audit", ids[3])  # an arbitrary ID without ENTRIESREAD: Redis' lag is NULL
    time.sleep(0.05)

    engine = Engine(r, target="test")
    state = engine.observe([key], detail_keys=[key], consumer_keys=[key])[key]
    rows = stream_rows(state, "db0", "team-a", "orders-topic")
    s = ("db0", key, "team-a", "orders-topic")
    info = r.xinfo_stream(key)
    assert samples(rows, "redis_stream_length") == {s: 10}
    assert samples(rows, "redis_stream_groups") == {s: 2}
    assert samples(rows, "redis_stream_first_entry_id") == {s: int(ids[0].split("-")[0])}
    assert samples(rows, "redis_stream_last_generated_id") == {s: int(ids[-1].split("-")[0])}
    assert samples(rows, "redis_stream_entries_added") == {s: 10}
    assert samples(rows, "redis_stream_radix_tree_keys") == {s: info["radix-tree-keys"]}

    billing = ("db0", key, "billing", "team-a", "orders-topic")
    audit = ("db0", key, "audit", "team-a", "orders-topic")
    groups = {g["name"]: g for g in r.xinfo_groups(key)}
    assert groups["audit"]["lag"] is None and groups["billing"]["lag"] == 4
    assert samples(rows, "redis_stream_group_lag") == {billing: 4}  # no sample for NULL
    assert samples(rows, "redis_stream_group_lag_valid") == {billing: 1, audit: 0}
    assert samples(rows, "redis_stream_group_messages_pending") == {billing: 4, audit: 0}
    assert samples(rows, "redis_stream_group_consumers") == {billing: 2, audit: 0}
    assert samples(rows, "redis_stream_group_entries_read") == {billing: 6}
    assert samples(rows, "redis_stream_group_last_delivered_id")[billing] == int(ids[5].split("-")[0])
    oldest = samples(rows, "redistreams_stream_group_oldest_pending_seconds")
    assert list(oldest) == [billing] and 0 <= oldest[billing] < 10  # only groups with pending entries
    assert samples(rows, "redistreams_stream_group_pending_below_first_entry") == {billing: 0}

    consumers = {c["name"]: c for c in r.xinfo_consumers(key, "billing")}
    pending = samples(rows, "redis_stream_group_consumer_messages_pending")
    assert pending == {("db0", key, "billing", name, "team-a", "orders-topic"): c["pending"]
                       for name, c in consumers.items()}
    assert pending == {("db0", key, "billing", "c1", "team-a", "orders-topic"): 2,
                       ("db0", key, "billing", "c2", "team-a", "orders-topic"): 2}
    idle = samples(rows, "redis_stream_group_consumer_idle_seconds")
    assert set(idle) == set(pending) and all(0 <= v < 10 for v in idle.values())

    # A pending entry that a publisher's MAXLEN trimmed away is flagged.
    r.xtrim(key, maxlen=3, approximate=False)
    rows = stream_rows(engine.observe([key], detail_keys=[key])[key], "db0", "team-a", "orders-topic")
    assert samples(rows, "redistreams_stream_group_pending_below_first_entry") == {billing: 1}
    # Without consumer_keys there is no per-consumer sample; a missing stream has none at all.
    assert not samples(rows, "redis_stream_group_consumer_idle_seconds")
    assert stream_rows(engine.observe(["missing"])["missing"], "db0", "a", "b") == []


def test_consumer_detail_is_capped(redis_server: RedisServer) -> None:
    r = redis_server.client()
    r.xgroup_create("big", "g", "$", mkstream=True)
    r.xgroup_create("big", "small", "$")
    for i in range(5):
        r.xgroup_createconsumer("big", "g", f"c{i}")
    r.xgroup_createconsumer("big", "small", "only")
    engine = Engine(r)
    engine.observer.consumer_cap = 3
    state = engine.observe(["big"], consumer_keys=["big"])["big"]
    assert state.groups["g"].consumer_states is None and state.groups["g"].consumers == 5
    assert [c.name for c in state.groups["small"].consumer_states or []] == ["only"]
    assert engine.observer.consumers_skipped == 1


def test_stepwise_retention_on_a_busy_stream_never_drops_what_a_group_needs(redis_server: RedisServer) -> None:
    """A publisher and two consumers (one slow to acknowledge) run while retention steps
    of 50 entries run over and over; every published entry must reach a consumer with
    its body, and entries must actually be trimmed."""
    r = redis_server.client()
    key = "busy"
    r.xgroup_create(key, "workers", "$", mkstream=True)
    engine = Engine(redis_server.client(), trim_step=50)
    intent = TopicIntent("topic/busy", Owner("c", "ns", "busy"), key, RetentionPolicy(max_length=20))
    trimmed = rounds = 0
    blockers: set[str] = set()
    with BusyStream(redis_server.client, key, "workers", messages=6000, consumers={"fast": 0.0, "slow": 0.3},
                    read_count=37, quiet_rounds=20, pause_every=200, pause=0.01) as busy:
        while busy.running():
            step = engine.applier.trim_round([intent])[0]
            assert step.failure is None
            trimmed += step.removed
            rounds += 1
            if step.blocker:
                blockers.add(f"{step.blocker}:{step.reason}")
            time.sleep(0.002)
        busy.wait()
    published, delivered = busy.published, busy.delivered
    assert len(published) == 6000
    assert sorted(delivered) == sorted(published), "some entries were trimmed before a consumer got them"
    assert all(delivered[i] == f"m{n}" for n, i in enumerate(published))
    assert trimmed > 3000 and rounds > 10
    assert blockers <= {"workers:pending", "workers:undelivered"}
    # Once everything is acknowledged, retention reaches maxLength.
    while engine.applier.trim_round([intent])[0].more:
        pass
    assert r.xlen(key) == 20
