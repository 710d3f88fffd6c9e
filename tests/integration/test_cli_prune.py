"""`apply --prune`, `delete --dry-run` and `plan --delete` on a real redis-server: pruning
takes only what this cluster id owns in these namespaces and no longer declares, by its
recorded deletionPolicy and every rule of delete; a preview changes nothing at all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from redistreams.engine.ownership import group_field, topic_field
from tests.support.manifests import group, topic, write
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration

REGISTRY = "redistreams:owners"


def snapshot(server: RedisServer) -> dict[bytes, object]:
    """Every key with its whole value: a hash's fields, a stream's entries, its IDs and
    counters, its groups with their positions, pending entries and consumers. (Not DUMP:
    a large hash's field order moves with Redis' rehashing, with no write.)"""
    raw = server.client(decode_responses=False)
    state: dict[bytes, object] = {}
    for key in raw.scan_iter(count=1000):
        kind = raw.type(key)
        if kind == b"hash":
            state[key] = sorted(raw.hgetall(key).items())
        elif kind == b"stream":
            info = raw.xinfo_stream(key)
            groups = []
            for g in raw.xinfo_groups(key):
                pending = raw.xpending_range(key, g["name"], "-", "+", 10_000)
                consumers = sorted((c["name"], c["pending"]) for c in raw.xinfo_consumers(key, g["name"]))
                groups.append((g["name"], g["last-delivered-id"], g["entries-read"], g["pending"],
                               [(p["message_id"], p["consumer"], p["times_delivered"]) for p in pending], consumers))
            state[key] = (raw.xrange(key), info["last-generated-id"], info["entries-added"],
                          info["max-deleted-entry-id"], sorted(groups))
        else:
            state[key] = (kind, raw.dump(key))
    return state


def results(stdout: str) -> dict[str, dict]:
    return {f'{x["kind"]}/{x["name"]}': x for x in json.loads(stdout)["results"]}


def declared_then_reduced(tmp_path: Path) -> tuple[str, str]:
    """Four resources declared; then a file that still declares only "keep"."""
    full = write(tmp_path, topic("keep", deletionPolicy="Delete") + topic("old", deletionPolicy="Delete")
                 + group("g1", "old", deletionPolicy="Delete") + topic("ret"), "full.yaml")
    reduced = write(tmp_path, topic("keep", deletionPolicy="Delete"), "reduced.yaml")
    return full, reduced


def test_prune_removes_what_the_manifests_no_longer_declare(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    r = redis_server.client()
    full, reduced = declared_then_reduced(tmp_path)
    assert cli("apply", "-f", full).returncode == 0
    r.xadd("old", {"body": "x"})
    r.xadd("ret", {"body": "y"})
    before = snapshot(redis_server)

    preview = cli("apply", "-f", reduced, "--prune", "--dry-run")
    assert preview.returncode == 1, preview.stderr  # plan's code: something would change
    assert "consumergroup/g1 pruned (dry run)" in preview.stdout
    assert "topic/old pruned (dry run): removed stream with 1 entry and 1 group deleted with it (g1)" in preview.stdout
    assert "topic/ret released (dry run): deletionPolicy Retain" in preview.stdout
    assert "topic/keep" not in preview.stdout
    assert snapshot(redis_server) == before

    pruned = cli("apply", "-f", reduced, "--prune", "-o", "json")
    assert pruned.returncode == 0, pruned.stderr
    by = results(pruned.stdout)
    assert by["Topic/keep"]["outcome"] == "unchanged" and "pruned" not in by["Topic/keep"]
    assert by["Topic/old"]["outcome"] == "pruned" and by["Topic/old"]["pruned"] is True
    assert by["ConsumerGroup/g1"]["outcome"] == "pruned"
    assert by["Topic/ret"]["outcome"] == "released" and by["Topic/ret"]["pruned"] is True
    assert not r.exists("old")
    assert r.xlen("ret") == 1 and not r.hexists(REGISTRY, topic_field("ret"))  # Retain: released only
    assert not r.hexists(REGISTRY, group_field("old", "g1"))
    assert r.exists("keep") and r.hexists(REGISTRY, topic_field("keep"))

    again = cli("apply", "-f", reduced, "--prune")
    assert again.returncode == 0 and again.stdout.strip() == "topic/keep unchanged"
    nothing = cli("apply", "-f", reduced, "--prune", "--dry-run")
    assert nothing.returncode == 0 and nothing.stdout == "" and "nothing to prune" in nothing.stderr


def test_previews_change_nothing(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    r = redis_server.client()
    full, _ = declared_then_reduced(tmp_path)
    assert cli("apply", "-f", full).returncode == 0
    r.xadd("old", {"body": "x"})
    r.xreadgroup("g1", "worker", {"old": ">"})  # a pending entry
    before = snapshot(redis_server)

    dry = cli("delete", "-f", full, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "consumergroup/g1 deleted (dry run): destroyed with 1 pending entries" in dry.stdout
    assert "topic/keep deleted (dry run): removed stream with 0 entries" in dry.stdout
    assert "topic/ret released (dry run)" in dry.stdout
    planned = cli("plan", "-f", full, "--delete", "-o", "json")
    assert planned.returncode == 1
    assert {x["outcome"] for x in json.loads(planned.stdout)["results"]} == {"deleted", "released"}
    assert all(x["dryRun"] for x in json.loads(planned.stdout)["results"])
    assert snapshot(redis_server) == before

    # What the preview said is what delete does.
    done = cli("delete", "-f", full)
    assert done.stdout == dry.stdout.replace(" (dry run)", "")
    assert cli("plan", "-f", full, "--delete").returncode == 0  # nothing left to delete


def test_prune_never_touches_other_cluster_ids_or_namespaces(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    r = redis_server.client()
    mine = write(tmp_path, topic("keep", deletionPolicy="Delete"), "mine.yaml")
    assert cli("apply", "-f", write(tmp_path, topic("theirs", deletionPolicy="Delete"), "theirs.yaml"),
               "--cluster-id", "other").returncode == 0
    elsewhere = json.dumps({"apiVersion": "redistreams.dev/v1alpha1", "kind": "Topic",
                            "metadata": {"name": "far", "namespace": "team-b"}, "spec": {"deletionPolicy": "Delete"}})
    assert cli("apply", "-f", write(tmp_path, elsewhere, "far.yaml")).returncode == 0
    assert cli("apply", "-f", mine).returncode == 0
    before = snapshot(redis_server)

    pruned = cli("apply", "-f", mine, "--prune")
    assert pruned.returncode == 0 and pruned.stdout.strip() == "topic/keep unchanged", pruned.stdout
    assert snapshot(redis_server) == before  # "theirs" (cluster "other") and "far" (team-b) untouched
    # Another cluster id pruning in the default namespace takes only its own.
    other = cli("apply", "-f", write(tmp_path, topic("anchor"), "anchor.yaml"), "--prune", "--cluster-id", "other")
    assert other.returncode == 0, other.stderr
    assert "topic/theirs pruned" in other.stdout and "keep" not in other.stdout
    assert not r.exists("theirs") and r.exists("keep") and r.exists("far")


def test_prune_keeps_a_stream_with_a_group_that_is_not_pruned(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    r = redis_server.client()
    full = write(tmp_path, topic("old", deletionPolicy="Delete") + group("stays", "old", deletionPolicy="Retain")
                 + group("goes", "old", deletionPolicy="Delete"), "full.yaml")
    assert cli("apply", "-f", full).returncode == 0
    r.xadd("old", {"body": "x"})
    r.xgroup_create("old", "by-hand", "0")
    pruned = cli("apply", "-f", write(tmp_path, topic("anchor"), "anchor.yaml"), "--prune", "-o", "json")
    assert pruned.returncode == 0, pruned.stderr
    by = results(pruned.stdout)
    assert by["ConsumerGroup/goes"]["outcome"] == "pruned"
    assert by["ConsumerGroup/stays"]["outcome"] == "released"
    assert by["Topic/old"]["outcome"] == "released" and sorted(by["Topic/old"]["keptBy"]) == ["by-hand", "stays"]
    assert r.xlen("old") == 1 and sorted(g["name"] for g in r.xinfo_groups("old")) == ["by-hand", "stays"]
    assert set(r.hkeys(REGISTRY)) == {'["epoch"]', topic_field("anchor")}


def test_records_from_before_the_policy_was_recorded_are_released(cli, redis_server: RedisServer,
                                                                  tmp_path: Path) -> None:
    r = redis_server.client()
    full = write(tmp_path, topic("old", deletionPolicy="Delete") + topic("older", deletionPolicy="Delete"))
    assert cli("apply", "-f", full).returncode == 0
    # "older" as an earlier version recorded it: no deletionPolicy in the record.
    r.hset(REGISTRY, topic_field("older"), json.dumps({"cluster": "default", "namespace": "default",
                                                      "name": "older", "created": True}))
    plan = cli("plan", "-f", full)
    assert plan.returncode == 1 and "topic/older: update the ownership record" in plan.stdout
    r.hset(REGISTRY, topic_field("older"), json.dumps({"cluster": "default", "namespace": "default",
                                                      "name": "older", "created": True}))
    pruned = cli("apply", "-f", write(tmp_path, topic("anchor"), "anchor.yaml"), "--prune")
    assert "topic/old pruned" in pruned.stdout and "topic/older released" in pruned.stdout
    assert not r.exists("old") and r.exists("older")


def test_hostile_registry_entries_are_reported_and_left_alone(cli, redis_server: RedisServer,
                                                              tmp_path: Path) -> None:
    raw = redis_server.client(decode_responses=False)
    path = write(tmp_path, topic("keep", deletionPolicy="Delete"))
    assert cli("apply", "-f", path).returncode == 0
    hostile = {
        b"\xff\xfe not json": b"x",
        b'["topic","junk"]': b"{not json",
        b'["topic","latin"]': b"caf\xe9",
        b'["group","short"]': b'{"cluster":"default","namespace":"default","name":"s","created":true}',
        b'["topic","nocreated"]': b'{"cluster":"default","namespace":"default","name":"n"}',
    }
    raw.hset(REGISTRY, mapping=hostile)
    before = snapshot(redis_server)
    for args in (("--prune",), ("--prune", "--dry-run")):
        result = cli("apply", "-f", path, *args)
        assert "Traceback" not in result.stderr, result.stderr
        assert result.returncode == 0, result.stderr
        assert result.stderr.count("notice: prune:") == len(hostile), result.stderr
        assert "\\xff\\xfe not json" in result.stderr and "left alone" in result.stderr
    assert snapshot(redis_server) == before


def test_dry_run_of_apply_needs_prune(cli, tmp_path: Path) -> None:
    result = cli("apply", "-f", write(tmp_path, topic("keep")), "--dry-run")
    assert result.returncode == 2 and "--dry-run previews --prune" in result.stderr


def test_prune_cannot_read_the_registry(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    redis_server.client().set(REGISTRY, "not a hash")
    result = cli("apply", "-f", write(tmp_path, topic("keep")), "--prune")
    assert "Traceback" not in result.stderr
    assert result.returncode == 1 and "prune: the ownership registry could not be read" in result.stderr


def test_snapshot_sees_a_change(redis_server: RedisServer) -> None:
    """The snapshot the previews are checked with notices a pending entry moving."""
    r = redis_server.client()
    r.xadd("s", {"b": "1"})
    r.xgroup_create("s", "g", "0")
    before = snapshot(redis_server)
    r.xreadgroup("g", "c", {"s": ">"})
    assert snapshot(redis_server) != before
    with pytest.raises(redis.ResponseError):
        r.xgroup_create("s", "g", "0")


@pytest.mark.slow
def test_prune_on_a_redis_cluster_reads_every_slots_registry(redis_cluster, tmp_path: Path) -> None:
    """On a Redis Cluster the records live in one registry key per slot, on every master:
    pruning finds them all, and the preview there writes nothing either."""
    from tests.support.cli import CLI

    cli = CLI(redis_cluster.url)
    docs = "".join(topic(f"t{i}", streamName=f"p/{i}", deletionPolicy="Delete")
                   + group(f"g{i}", f"t{i}", deletionPolicy="Delete") for i in range(40))
    full = write(tmp_path, docs, "full.yaml")
    kept = write(tmp_path, "".join(topic(f"t{i}", streamName=f"p/{i}", deletionPolicy="Delete")
                                   + group(f"g{i}", f"t{i}", deletionPolicy="Delete") for i in range(5)), "kept.yaml")
    assert cli("apply", "-f", full, timeout=180).returncode == 0
    client = redis_cluster.client()
    try:
        preview = cli("apply", "-f", kept, "--prune", "--dry-run", "-o", "json", timeout=180)
        assert preview.returncode == 1, preview.stderr[-2000:]
        assert sum(1 for x in json.loads(preview.stdout)["results"] if x["outcome"] == "pruned") == 70
        assert all(client.exists(f"p/{i}") for i in range(40))
        pruned = cli("apply", "-f", kept, "--prune", "-o", "json", timeout=180)
        assert pruned.returncode == 0, pruned.stderr[-2000:]
        outcomes = [x["outcome"] for x in json.loads(pruned.stdout)["results"]]
        assert outcomes.count("pruned") == 70 and outcomes.count("unchanged") == 10
        assert [i for i in range(40) if client.exists(f"p/{i}")] == list(range(5))
    finally:
        client.close()
