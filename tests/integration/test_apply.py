"""`redistreams apply` and `plan` against a real redis-server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.manifests import TOPICS, group, topic, write
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration


def test_apply_creates_empty_streams_and_groups(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    result = cli("apply", "-f", write(tmp_path, TOPICS))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("topic/orders created")
    assert lines[1].startswith("topic/topics-1 created")
    assert lines[2].startswith("consumergroup/billing created")
    assert lines[3].startswith("consumergroup/group1 created")
    r = redis_server.client()
    for key in ("orders", "topics/1"):
        info = r.xinfo_stream(key)
        assert info["length"] == 0
        assert info["entries-added"] == 0  # no entry was ever added, not even a temporary one
    assert [g["name"] for g in r.xinfo_groups("orders")] == ["billing"]
    assert [g["name"] for g in r.xinfo_groups("topics/1")] == ["group1"]


def test_reapply_is_a_noop_with_zero_writes(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    path = write(tmp_path, TOPICS + topic("logs", retention={"maxLength": 10}))
    assert cli("apply", "-f", path).returncode == 0
    before = redis_server.dirty()
    again = cli("apply", "-f", path)
    assert again.returncode == 0, again.stderr
    assert all(line.endswith("unchanged") for line in again.stdout.splitlines()), again.stdout
    assert redis_server.dirty() == before
    plan = cli("plan", "-f", path)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert redis_server.dirty() == before


def test_plan_exit_codes_and_no_writes(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    path = write(tmp_path, TOPICS)
    before = redis_server.dirty()
    plan = cli("plan", "-f", path)
    assert plan.returncode == 1
    assert '+ topic/orders: create stream "orders"' in plan.stdout
    assert '+ consumergroup/billing: create group "billing" on "orders"' in plan.stdout
    assert redis_server.dirty() == before
    assert redis_server.client().exists("orders") == 0
    as_json = json.loads(cli("plan", "-f", path, "-o", "json").stdout)
    assert as_json["inSync"] is False
    assert {p["action"] for p in as_json["plan"]} == {"create"}
    cli("apply", "-f", path)
    assert cli("plan", "-f", path).returncode == 0
    redis_server.client().set("not-a-stream", "x")
    conflict = cli("plan", "-f", write(tmp_path, topic("x", streamName="not-a-stream"), "x.yaml"))
    assert conflict.returncode == 2
    assert 'key "not-a-stream" holds a string' in conflict.stdout


def test_dollar_on_stream_with_history_keeps_lag_valid(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    r = redis_server.client()
    for i in range(5):
        r.xadd("orders", {"headers": "null", "body": f"old-{i}"})
    assert cli("apply", "-f", write(tmp_path, topic("orders") + group("billing", "orders"))).returncode == 0
    (g,) = r.xinfo_groups("orders")
    assert g["lag"] == 0 and g["entries-read"] == 5
    new_id = r.xadd("orders", {"headers": "null", "body": "new"})
    (g,) = r.xinfo_groups("orders")
    assert g["lag"] == 1  # Redis would report NULL here for a group created with a bare $
    read = r.xreadgroup("billing", "c1", {"orders": ">"})
    assert [entry[0] for entry in read[0][1]] == [new_id]


def test_start_ids(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    r = redis_server.client()
    ids = [r.xadd("orders", {"body": str(i)}) for i in range(4)]
    manifests = topic("orders") + group("all", "orders", startId="0") + group("from-2", "orders", startId=ids[1])
    assert cli("apply", "-f", write(tmp_path, manifests)).returncode == 0
    everything = r.xreadgroup("all", "c", {"orders": ">"})
    assert [e[0] for e in everything[0][1]] == ids
    later = r.xreadgroup("from-2", "c", {"orders": ">"})
    assert [e[0] for e in later[0][1]] == ids[2:]


def test_existing_group_is_never_moved(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    r = redis_server.client()
    ids = [r.xadd("orders", {"body": str(i)}) for i in range(3)]
    r.xgroup_create("orders", "billing", ids[0])
    r.xreadgroup("billing", "c1", {"orders": ">"}, count=1)  # one pending entry
    before = r.xinfo_groups("orders")
    path = write(tmp_path, topic("orders") + group("billing", "orders", startId="0"))
    plan = cli("plan", "-f", path)
    assert "startId 0 applies only when the group is created" in plan.stdout
    result = cli("apply", "-f", path)
    assert result.returncode == 0
    assert "consumergroup/billing configured" in result.stdout
    assert r.xinfo_groups("orders") == before
    assert r.xpending("orders", "billing")["pending"] == 1


def test_adoption_changes_nothing_and_is_never_deleted(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    r = redis_server.client()
    ids = [r.xadd("topics/1", {"headers": '{"a":"b"}', "body": str(i)}) for i in range(3)]
    r.xgroup_create("topics/1", "group1", "0")  # as the Go driver does on open
    r.xreadgroup("group1", "cons1", {"topics/1": ">"}, count=2)
    stream_before = r.xrange("topics/1")
    groups_before = r.xinfo_groups("topics/1")
    manifests = topic("topics-1", streamName="topics/1", deletionPolicy="Delete") + group(
        "group1", "topics-1", deletionPolicy="Delete"
    )
    path = write(tmp_path, manifests)
    result = cli("apply", "-f", path)
    assert result.returncode == 0, result.stderr
    assert "topic/topics-1 configured: adopted existing stream (3 entries, 1 group)" in result.stdout
    assert "consumergroup/group1 configured: adopted existing group" in result.stdout
    assert r.xrange("topics/1") == stream_before
    assert r.xinfo_groups("topics/1") == groups_before
    deleted = cli("delete", "-f", path)
    assert deleted.returncode == 0, deleted.stderr
    assert "topic/topics-1 released" in deleted.stdout
    assert "consumergroup/group1 released" in deleted.stdout
    assert [e[0] for e in r.xrange("topics/1")] == ids
    assert r.xinfo_groups("topics/1") == groups_before
    assert r.hkeys("redistreams:owners") == ['["epoch"]']  # the registry's identity stays


def test_wrong_type_is_reported_and_untouched_while_the_rest_applies(cli, redis_server: RedisServer,
                                                                     tmp_path: Path) -> None:
    r = redis_server.client()
    r.rpush("orders", "a", "b")
    manifests = topic("orders") + group("billing", "orders") + topic("payments") + group("audit", "payments")
    result = cli("apply", "-f", write(tmp_path, manifests))
    assert result.returncode == 1
    assert 'error: topic/orders: key "orders" holds a list, not a stream; it is left untouched' in result.stderr
    assert "error: consumergroup/billing: topic/orders:" in result.stderr
    assert "topic/payments created" in result.stdout
    assert "consumergroup/audit created" in result.stdout
    assert r.lrange("orders", 0, -1) == ["a", "b"]
    assert "Traceback" not in result.stderr


def test_invalid_input_writes_nothing(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    good = write(tmp_path, TOPICS, "good.yaml")
    bad = write(tmp_path, topic("broken", retention={"maxAge": "7days"}), "bad.yaml")
    before = redis_server.dirty()
    result = cli("apply", "-f", good, "-f", bad)
    assert result.returncode == 2
    assert f'error: {bad}: document 1: Topic "broken": spec.retention.maxAge: invalid duration "7days"' in result.stderr
    assert redis_server.dirty() == before
    assert redis_server.client().dbsize() == 0


def test_stdin_and_folders(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    write(tmp_path / "a", topic("one"), "one.yml")
    config_map = '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}'
    write(tmp_path / "a" / "b", topic("two") + config_map, "two.yaml")
    (tmp_path / "a" / "ignored.txt").write_text("not yaml")
    result = cli("apply", "-f", str(tmp_path / "a"), "-f", "-", input=topic("three"))
    assert result.returncode == 0, result.stderr
    assert 'notice: skipping ConfigMap "c" (v1)' in result.stderr
    assert sorted(redis_server.client().keys("*")) == ["one", "redistreams:owners", "three", "two"]


def test_ownership_conflicts_between_namespaces_and_clusters(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    path = write(tmp_path, topic("orders") + group("billing", "orders"))
    assert cli("apply", "-f", path).returncode == 0
    other_ns = cli("apply", "-f", path, "--namespace", "team-b")
    assert other_ns.returncode == 1
    assert 'stream "orders" is already managed by Topic "default/orders" (cluster "default")' in other_ns.stderr
    other_cluster = cli("--cluster-id", "eu-west", "apply", "-f", path)
    assert other_cluster.returncode == 1
    assert "Conflict" not in other_cluster.stdout
    assert "already managed by" in other_cluster.stderr
    as_json = json.loads(cli("apply", "-f", path, "-n", "team-b", "-o", "json").stdout)
    assert {r["reason"] for r in as_json["results"]} == {"Conflict"}
    # The owner is unaffected.
    assert cli("apply", "-f", path).returncode == 0


def test_group_conflict_on_adopted_stream(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    first = write(tmp_path, topic("orders") + group("billing", "orders"), "first.yaml")
    second = write(tmp_path, topic("orders") + group("billing-copy", "orders", groupName="billing"), "second.yaml")
    assert cli("apply", "-f", first).returncode == 0
    result = cli("apply", "-f", second)
    assert result.returncode == 1
    assert 'group "billing" on stream "orders" is already managed by ConsumerGroup "default/billing"' in result.stderr
    assert "topic/orders unchanged" in result.stdout


def test_drift_is_repaired_on_apply(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    path = write(tmp_path, TOPICS)
    cli("apply", "-f", path)
    r = redis_server.client()
    r.delete("orders")
    r.xgroup_destroy("topics/1", "group1")
    result = cli("apply", "-f", path)
    assert result.returncode == 0
    assert "topic/orders created" in result.stdout
    assert "stream was deleted outside redistreams; re-creating it" in result.stdout
    assert "consumergroup/group1 created" in result.stdout
    assert [g["name"] for g in r.xinfo_groups("orders")] == ["billing"]
    assert [g["name"] for g in r.xinfo_groups("topics/1")] == ["group1"]


def test_delete_honours_policy_and_ownership(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    r = redis_server.client()
    manifests = (
        topic("gone", deletionPolicy="Delete")
        + group("gone-group", "gone", deletionPolicy="Delete")
        + topic("kept")
        + group("kept-group", "kept")
        + group("kept-dropped", "kept", deletionPolicy="Delete")
    )
    path = write(tmp_path, manifests)
    assert cli("apply", "-f", path).returncode == 0
    r.xadd("gone", {"body": "x"})
    r.xadd("kept", {"body": "y"})
    r.xgroup_create("kept", "by-hand", "0")
    result = cli("delete", "-f", path)
    assert result.returncode == 0, result.stderr
    assert "topic/gone deleted" in result.stdout
    assert "consumergroup/gone-group deleted" in result.stdout
    assert "topic/kept released: deletionPolicy Retain" in result.stdout
    assert "consumergroup/kept-group released" in result.stdout
    assert "consumergroup/kept-dropped deleted" in result.stdout
    assert r.exists("gone") == 0
    assert r.xlen("kept") == 1
    assert sorted(g["name"] for g in r.xinfo_groups("kept")) == ["by-hand", "kept-group"]
    assert r.hkeys("redistreams:owners") == ['["epoch"]']  # the registry's identity stays
    again = cli("delete", "-f", path)
    assert again.returncode == 0
    assert "topic/gone not found" in again.stdout
    assert "topic/kept skipped: not managed by redistreams" in again.stdout


def test_delete_never_touches_other_owners_or_types(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    r = redis_server.client()
    owner = write(tmp_path, topic("orders", deletionPolicy="Delete"), "owner.yaml")
    assert cli("apply", "-f", owner).returncode == 0
    intruder = cli("delete", "-f", owner, "-n", "team-b")
    assert intruder.returncode == 1
    assert "managed by" in intruder.stderr
    assert r.exists("orders") == 1
    r.set("plain", "value")
    stranger = cli("delete", "-f", write(tmp_path, topic("plain", deletionPolicy="Delete"), "plain.yaml"))
    assert stranger.returncode == 0
    assert r.get("plain") == "value"
