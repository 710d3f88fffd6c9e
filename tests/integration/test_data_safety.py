"""Nothing redistreams manages is lost: groups deleted behind its back or lost with Redis'
data never come back past an entry they could not have delivered; deleting a Topic never
takes a group that is not itself being deleted; a record says "created" only for what was
created. Real redis-server, engine and CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from redistreams.engine import Engine, GroupIntent, Memory, Owner, TopicIntent
from redistreams.engine.ownership import EPOCH_FIELD, decode_epoch, group_field, topic_field
from tests.support.manifests import group, topic, write
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration

REGISTRY = "redistreams:owners"
TOPIC = Owner("c", "ns", "orders")
BILLING = Owner("c", "ns", "billing")


def intents(policy: str = "Retain", memory: Memory | None = None, start: str = "$"):
    t = TopicIntent("topic/orders", TOPIC, "orders", deletion_policy=policy, memory=memory)
    g = GroupIntent("consumergroup/billing", BILLING, TOPIC, "orders", "billing", start_id=start,
                    deletion_policy=policy, memory=memory)
    return t, g


def publish(r, count: int, tag: str) -> list[str]:
    return [r.xadd("orders", {"headers": "null", "body": f"{tag}-{i}"}) for i in range(count)]


def consume(r, count: int, *, ack: int) -> list[str]:
    """Reads ``count`` entries as one consumer and acknowledges the first ``ack`` of them."""
    reply = r.xreadgroup("billing", "worker", {"orders": ">"}, count=count)
    ids = [entry_id for entry_id, _ in reply[0][1]] if reply else []
    if ack:
        r.xack("orders", "billing", *ids[:ack])
    return ids


def undelivered(r) -> list[str]:
    """Bodies the group still has to deliver (new entries), as a fresh consumer sees them."""
    reply = r.xreadgroup("billing", "checker", {"orders": ">"}, count=10_000)
    return [fields["body"] for _, fields in reply[0][1]] if reply else []


def stream_id(text: str) -> tuple[int, int]:
    ms, seq = text.split("-")
    return int(ms), int(seq)


def record(r, field: str) -> dict:
    return json.loads(r.hget(REGISTRY, field))


# -- 1. groups made before and now missing ------------------------------------------------


def test_group_destroyed_by_hand_comes_back_from_its_creation_point_not_the_end(redis_server: RedisServer) -> None:
    r = redis_server.client()
    engine = Engine(redis_server.client())
    t, g = intents()
    engine.reconcile([t], [g])
    assert record(r, group_field("orders", "billing"))["start"] == "0-0"
    publish(r, 10, "before")
    consume(r, 4, ack=4)
    r.xgroup_destroy("orders", "billing")
    publish(r, 5, "after")
    results = engine.reconcile([t], [g])
    assert results[1].outcome == "created"
    assert any("deleted outside redistreams" in d and "nothing is skipped" in d for d in results[1].details)
    # From its creation point: the 4 acknowledged come again (at least once), nothing is skipped.
    assert len(undelivered(r)) == 15


def test_checkpoint_moves_the_recovery_position_and_keeps_pending_entries(redis_server: RedisServer) -> None:
    r = redis_server.client()
    engine = Engine(redis_server.client())
    t, g = intents()
    engine.reconcile([t], [g])
    ids = publish(r, 10, "m")
    consume(r, 6, ack=4)  # 5th and 6th delivered, never acknowledged
    states = engine.observe(["orders"], owner_groups={"orders": ["billing"]}, detail_keys=["orders"])
    assert engine.checkpoint(states, [("orders", "billing", BILLING)]) == 1
    assert engine.checkpoint(states, [("orders", "billing", BILLING)]) == 0  # unchanged: no write
    # Just before the oldest pending entry: equal to ids[3] when both share a millisecond, else
    # "<ms-1>-<max seq>"; either way ids[3] <= at < ids[4] in stream order.
    at = stream_id(record(r, group_field("orders", "billing"))["at"])
    assert stream_id(ids[3]) <= at < stream_id(ids[4])
    # Another owner's record is never moved.
    assert engine.checkpoint(states, [("orders", "billing", Owner("c", "ns", "intruder"))]) == 0
    r.xgroup_destroy("orders", "billing")
    engine.reconcile([t], [g])
    assert undelivered(r) == [f"m-{i}" for i in range(4, 10)]


def test_stream_deleted_and_refilled_by_a_publisher_keeps_every_new_entry(redis_server: RedisServer) -> None:
    r = redis_server.client()
    engine = Engine(redis_server.client())
    t, g = intents()
    engine.reconcile([t], [g])
    publish(r, 3, "old")
    consume(r, 3, ack=3)
    states = engine.observe(["orders"], owner_groups={"orders": ["billing"]}, detail_keys=["orders"])
    engine.checkpoint(states, [("orders", "billing", BILLING)])
    r.delete("orders")  # the registry survives, the stream does not
    publish(r, 4, "new")  # the publisher is first
    engine.reconcile([t], [g])
    assert undelivered(r) == [f"new-{i}" for i in range(4)]


def test_stream_refilled_with_ids_below_the_checkpoint_is_read_from_0(redis_server: RedisServer) -> None:
    r = redis_server.client()
    engine = Engine(redis_server.client())
    t, g = intents()
    engine.reconcile([t], [g])
    r.xadd("orders", {"body": "late"}, id="9999999999999-0")
    consume(r, 1, ack=1)
    states = engine.observe(["orders"], owner_groups={"orders": ["billing"]}, detail_keys=["orders"])
    engine.checkpoint(states, [("orders", "billing", BILLING)])
    r.delete("orders")
    r.xadd("orders", {"body": "explicit-low-id"}, id="5-0")  # below the recorded position
    engine.reconcile([t], [g])
    assert undelivered(r) == ["explicit-low-id"]


@pytest.mark.parametrize("how", ["flushall", "restart"])
def test_redis_reset_with_the_publisher_first_loses_nothing(make_redis, how: str) -> None:
    server: RedisServer = make_redis()
    r = server.client()
    engine = Engine(server.client())
    t, g = intents()
    engine.reconcile([t], [g])
    epoch = decode_epoch(r.hget(REGISTRY, EPOCH_FIELD))
    memory = Memory(epoch=epoch)  # what the operator's status remembers
    if how == "flushall":
        r.flushall()
    else:
        server.stop()
        server.start()
    publish(r, 7, "after-reset")  # before anyone re-creates the group
    t, g = intents(memory=memory)
    plan = engine.plan([t], [g])
    assert plan.topics[0].lost and "the ownership registry is new" in plan.topics[0].lost
    assert plan.groups[0].create_at == "0"
    results = engine.apply(plan)
    assert results[1].outcome == "created" and "re-creating the group from 0" in " ".join(results[1].details)
    assert undelivered(r) == [f"after-reset-{i}" for i in range(7)]
    assert decode_epoch(r.hget(REGISTRY, EPOCH_FIELD)) not in (None, epoch)  # a new registry identity


def test_a_lost_record_is_a_reset_too(redis_server: RedisServer) -> None:
    """A failover that lost the last writes can keep the epoch and lose a record."""
    r = redis_server.client()
    engine = Engine(redis_server.client())
    t, g = intents()
    engine.reconcile([t], [g])
    memory = Memory(epoch=decode_epoch(r.hget(REGISTRY, EPOCH_FIELD)))
    r.xgroup_destroy("orders", "billing")
    r.hdel(REGISTRY, group_field("orders", "billing"))
    publish(r, 2, "m")
    t, g = intents(memory=memory)
    plan = engine.plan([t], [g])
    assert plan.groups[0].create_at == "0" and "ownership record is gone" in (plan.groups[0].lost or "")
    engine.apply(plan)
    assert undelivered(r) == ["m-0", "m-1"]


def test_a_new_group_without_memory_still_starts_at_its_start_id(redis_server: RedisServer) -> None:
    r = redis_server.client()
    publish(r, 3, "history")
    engine = Engine(redis_server.client())
    t, g = intents()
    engine.reconcile([t], [g])
    assert undelivered(r) == []  # "$": only what comes next, as declared
    assert record(r, group_field("orders", "billing"))["start"] == r.xinfo_stream("orders")["last-generated-id"]


def test_cli_recreates_a_destroyed_group_from_the_registry(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    r = redis_server.client()
    path = write(tmp_path, topic("orders") + group("billing", "orders"))
    assert cli("apply", "-f", path).returncode == 0
    publish(r, 3, "m")
    r.xgroup_destroy("orders", "billing")
    planned = cli("plan", "-f", path)
    assert planned.returncode == 1
    assert "re-creating it from 0-0, its last recorded position" in planned.stdout
    assert cli("apply", "-f", path).returncode == 0
    assert undelivered(r) == ["m-0", "m-1", "m-2"]


# -- 2. deleting a Topic takes only what is being deleted ----------------------------------


def test_delete_keeps_a_stream_with_a_group_that_is_not_being_deleted(cli, redis_server: RedisServer,
                                                                      tmp_path: Path) -> None:
    r = redis_server.client()
    manifests = (topic("orders", deletionPolicy="Delete")
                 + group("kept", "orders", deletionPolicy="Retain")
                 + group("dropped", "orders", deletionPolicy="Delete"))
    path = write(tmp_path, manifests)
    assert cli("apply", "-f", path).returncode == 0
    r.xgroup_create("orders", "by-hand", "0")
    publish(r, 2, "m")
    r.xreadgroup("by-hand", "w", {"orders": ">"})  # unacknowledged entries of a hand-made group
    result = cli("delete", "-f", path, "-o", "json")
    assert result.returncode == 0, result.stderr
    by_name = {x["name"]: x for x in json.loads(result.stdout)["results"]}
    assert by_name["dropped"]["outcome"] == "deleted"
    assert by_name["kept"]["outcome"] == "released"
    orders = by_name["orders"]
    assert orders["outcome"] == "released" and sorted(orders["keptBy"]) == ["by-hand", "kept"]
    assert any('"by-hand" (not managed by redistreams)' in d for d in orders["details"])
    assert sorted(g["name"] for g in r.xinfo_groups("orders")) == ["by-hand", "kept"]
    assert r.xpending("orders", "by-hand")["pending"] == 2
    assert not r.hexists(REGISTRY, topic_field("orders"))  # released


def test_delete_keeps_a_stream_with_an_adopted_group(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    r = redis_server.client()
    path = write(tmp_path, topic("orders", deletionPolicy="Delete"))
    assert cli("apply", "-f", path).returncode == 0
    r.xgroup_create("orders", "legacy", "0")
    adopt = write(tmp_path, group("legacy", "orders", deletionPolicy="Delete"), "group.yaml")
    both = [adopt, path]
    assert cli("apply", "-f", both[1], "-f", both[0]).returncode == 0  # adopts "legacy"
    result = cli("delete", "-f", path, "-f", adopt)
    assert "consumergroup/legacy released" in result.stdout  # adopted: never destroyed
    assert 'stream left in place' in result.stdout and '"legacy" (adopted by ConsumerGroup' in result.stdout
    assert r.exists("orders")


def test_delete_removes_the_stream_with_all_of_its_groups_deleted(cli, redis_server: RedisServer,
                                                                  tmp_path: Path) -> None:
    r = redis_server.client()
    path = write(tmp_path, topic("orders", deletionPolicy="Delete") + group("a", "orders", deletionPolicy="Delete")
                 + group("b", "orders", deletionPolicy="Delete"))
    assert cli("apply", "-f", path).returncode == 0
    publish(r, 2, "m")
    result = cli("delete", "-f", path)
    assert result.returncode == 0
    assert "topic/orders deleted: removed stream with 2 entries and 2 groups deleted with it (a, b)" in result.stdout
    assert not r.exists("orders")


def test_delete_keeps_a_stream_when_a_group_appears_after_it_was_observed(redis_server: RedisServer) -> None:
    r = redis_server.client()
    engine = Engine(redis_server.client())
    t, _ = intents("Delete")
    engine.reconcile([t], [])
    states = engine.observe(["orders"], owner_groups={"orders": []})
    r.xgroup_create("orders", "late-consumer", "$")  # a Go consumer starting meanwhile
    (result,) = engine.applier.delete([t], [], states)
    assert result.outcome == "released" and result.kept_by == ["late-consumer"]
    assert r.exists("orders")


# -- 3. "created" only for what was created ------------------------------------------------


@pytest.mark.parametrize("missing", ["xgroup|create", "hset"])
def test_a_failed_create_never_records_created(cli, redis_server: RedisServer, tmp_path: Path, missing: str) -> None:
    r = redis_server.client()
    r.execute_command("ACL", "SETUSER", "ops", "on", ">pw", "~*", "resetchannels", "+@all", f"-{missing}")
    url = f"redis://ops:pw@127.0.0.1:{redis_server.port}/0"
    path = write(tmp_path, topic("orders", deletionPolicy="Delete"))
    failed = cli("apply", "-f", path, url=url)
    assert failed.returncode == 1 and missing in failed.stderr, failed.stderr
    assert not r.hexists(REGISTRY, topic_field("orders"))
    r.delete("orders")
    publish(r, 3, "app")  # the application creates the stream by publishing
    assert cli("apply", "-f", path).returncode == 0  # now with every permission: adopted
    assert record(r, topic_field("orders"))["created"] is False
    deleted = cli("delete", "-f", path)
    assert "released" in deleted.stdout
    assert r.xlen("orders") == 3  # the application's data stays


def test_claim_and_create_are_one_step_for_groups(redis_server: RedisServer) -> None:
    r = redis_server.client()
    r.execute_command("ACL", "SETUSER", "ops", "on", ">pw", "~*", "resetchannels", "+@all", "-xgroup|create")
    engine = Engine(redis_server.client(username="ops", password="pw"))
    t, g = intents("Delete")
    r.xadd("orders", {"body": "x"})  # the stream exists; only the group needs creating
    rt, rg = engine.reconcile([t], [g])
    assert rt.ok and not rg.ok and rg.failure.reason == "PermissionDenied"
    assert not r.hexists(REGISTRY, group_field("orders", "billing"))
    r.xgroup_create("orders", "billing", "0")  # made by someone else
    Engine(redis_server.client()).reconcile([t], [g])
    assert record(r, group_field("orders", "billing"))["created"] is False
    Engine(redis_server.client()).delete([t], [g])
    assert [x["name"] for x in r.xinfo_groups("orders")] == ["billing"]


def test_a_group_recreated_at_the_end_after_a_reset_is_moved_back(redis_server: RedisServer) -> None:
    """The CLI (which cannot know) re-creates the group at "$" after a FLUSHALL, past what
    publishers wrote since; the operator, remembering the old epoch, moves it back."""
    r = redis_server.client()
    engine = Engine(redis_server.client())
    t, g = intents()
    engine.reconcile([t], [g])
    memory = Memory(epoch=decode_epoch(r.hget(REGISTRY, EPOCH_FIELD)))
    r.flushall()
    publish(r, 3, "first")  # before anyone looked
    engine.reconcile([t], [g])  # the CLI: a new Redis as far as it can tell
    publish(r, 2, "then")
    t, g = intents(memory=memory)
    plan = engine.plan([t], [g])
    assert plan.groups[0].reset is not None and "moving it back to 0" in (plan.groups[0].lost or "")
    results = engine.apply(plan)
    assert results[1].reset_applied
    assert undelivered(r) == [f"first-{i}" for i in range(3)] + ["then-0", "then-1"]
    again = engine.plan([t], [g])  # status not updated yet: still once
    assert again.groups[0].reset is not None
    engine.apply(again)
    assert undelivered(r) == []  # the token was recorded: not moved twice
