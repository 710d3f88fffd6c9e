"""spec.reset and spec.consumerCleanup on a real redis-server: through the engine, and
through the CLI in separate processes."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from redistreams.engine import Engine, GroupIntent, Owner, TopicIntent
from redistreams.engine.intents import ResetIntent
from redistreams.engine.ownership import reset_field
from redistreams.model import PositionReset
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration

TOPIC = Owner("c", "ns", "orders")
GROUP = Owner("c", "ns", "billing")
T = TopicIntent("topic/orders", TOPIC, "orders")
IDS = ["1000-0", "1000-1", "2000-0", "3000-0", "3000-1"]


def group(**kwargs: object) -> GroupIntent:
    return GroupIntent("consumergroup/billing", GROUP, TOPIC, "orders", "billing", "$", **kwargs)  # type: ignore[arg-type]


def reset(token: str, to: str) -> ResetIntent:
    return ResetIntent.from_spec(PositionReset(token=token, to=to))


def seeded(server: RedisServer) -> Engine:
    r = server.client()
    for entry_id in IDS:
        r.xadd("orders", {"body": entry_id}, id=entry_id)
    engine = Engine(r)
    assert all(res.ok for res in engine.reconcile([T], [group()]))  # the group starts at the end
    return engine


def group_info(server: RedisServer) -> dict:
    (info,) = server.client().xinfo_groups("orders")
    return info


def deliverable(server: RedisServer, consumer: str = "reader") -> list[str]:
    got = server.client().xreadgroup("billing", consumer, {"orders": ">"})
    return [entry_id for entry_id, _ in got[0][1]] if got else []


# -- reset -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("to", "position", "expected"),
    [
        ("0", "0-0", IDS),
        ("$", "3000-1", []),
        ("1000-1", "1000-1", IDS[2:]),
        # A time: entries added at or after it, the one at exactly 2000-0 included.
        ("1970-01-01T00:00:02Z", "1999-18446744073709551615", IDS[2:]),
        ("1970-01-01T00:00:02.5+00:00", "2499-18446744073709551615", IDS[3:]),
    ],
)
def test_each_reset_target_with_a_valid_lag(redis_server: RedisServer, to: str, position: str,
                                            expected: list[str]) -> None:
    engine = seeded(redis_server)
    (_, result) = engine.reconcile([T], [group(reset=reset("t1", to))])
    assert result.ok and result.reset_applied and result.outcome == "configured", result
    assert result.reset is not None and result.reset.id == position
    info = group_info(redis_server)
    assert info["last-delivered-id"] == position
    assert info["lag"] == len(expected)  # Redis itself reports the right lag at once
    assert deliverable(redis_server) == expected
    assert group_info(redis_server)["lag"] == 0


def test_reset_to_zero_after_trimming_counts_only_what_is_left(redis_server: RedisServer) -> None:
    engine = seeded(redis_server)
    redis_server.client().xtrim("orders", maxlen=2, approximate=False)
    engine.reconcile([T], [group(reset=reset("t1", "0"))])
    assert group_info(redis_server)["lag"] == 2
    assert deliverable(redis_server) == IDS[3:]


def test_reset_applies_once_per_token(redis_server: RedisServer) -> None:
    engine = seeded(redis_server)
    intent = group(reset=reset("replay-1", "0"))
    assert engine.reconcile([T], [intent])[1].reset_applied
    assert deliverable(redis_server) == IDS
    # Applying the same again (here, and in a fresh engine) never moves the group back.
    for again in (engine, Engine(redis_server.client())):
        plan = again.plan([T], [intent])
        assert not plan.changes
        (_, result) = again.apply(plan)
        assert not result.reset_applied and result.outcome == "unchanged"
        assert result.reset is not None and result.reset.token == "replay-1"
    assert group_info(redis_server)["last-delivered-id"] == "3000-1"
    # A new token is a new reset.
    assert engine.reconcile([T], [group(reset=reset("replay-2", "1000-1"))])[1].reset_applied
    assert deliverable(redis_server) == IDS[2:]


def test_concurrent_appliers_reset_once(redis_server: RedisServer) -> None:
    """The CLI and the operator planning at the same moment: the script lets one apply it."""
    seeded(redis_server)
    first, second = Engine(redis_server.client()), Engine(redis_server.client())
    intent = group(reset=reset("once", "0"))
    plans = [first.plan([T], [intent]), second.plan([T], [intent])]
    assert all(p.groups[0].reset is not None for p in plans)
    (_, a) = first.apply(plans[0])
    assert deliverable(redis_server) == IDS  # consumed before the second applier goes
    (_, b) = second.apply(plans[1])
    assert a.reset_applied and not b.reset_applied
    assert any("applied meanwhile" in d for d in b.details)
    assert deliverable(redis_server) == []


def test_new_group_with_a_reset_starts_at_start_id_and_records_the_token(redis_server: RedisServer) -> None:
    r = redis_server.client()
    for entry_id in IDS:
        r.xadd("orders", {"body": entry_id}, id=entry_id)
    engine = Engine(r)
    intent = group(reset=reset("t1", "0"))
    (_, result) = engine.reconcile([T], [intent])
    assert result.outcome == "created" and not result.reset_applied
    assert group_info(redis_server)["last-delivered-id"] == "3000-1"  # startId $, not the reset's 0
    assert json.loads(r.hget("redistreams:owners", reset_field("orders", "billing")))["token"] == "t1"
    assert not engine.plan([T], [intent]).changes


def test_deleting_a_group_forgets_its_reset(redis_server: RedisServer) -> None:
    engine = Engine(redis_server.client())
    intent = group(reset=reset("t1", "0"), deletion_policy="Delete")
    engine.reconcile([T], [intent])
    r = redis_server.client()
    assert r.hexists("redistreams:owners", reset_field("orders", "billing"))
    assert engine.delete([], [intent])[0].outcome == "deleted"
    assert not r.hexists("redistreams:owners", reset_field("orders", "billing"))


# -- consumer cleanup --------------------------------------------------------------


def with_consumers(server: RedisServer) -> Engine:
    """'holding' has an entry pending, 'done' read and acknowledged, 'never' never read."""
    engine = seeded(server)
    engine.reconcile([T], [group(reset=reset("from-start", "0"))])
    r = server.client()
    assert r.xreadgroup("billing", "holding", {"orders": ">"}, count=1)
    got = r.xreadgroup("billing", "done", {"orders": ">"}, count=1)
    r.xack("orders", "billing", got[0][1][0][0])
    r.xgroup_createconsumer("orders", "billing", "never")
    return engine


def test_cleanup_removes_idle_consumers_and_never_one_with_pending_entries(redis_server: RedisServer) -> None:
    engine = with_consumers(redis_server)
    r = redis_server.client()
    intent = group(cleanup_idle_ms=400)
    time.sleep(0.5)
    plan = engine.plan([T], [intent])
    gp = plan.groups[0]
    assert sorted(c.name for c in gp.remove_consumers) == ["done", "never"]
    assert [c.name for c in gp.keep_consumers] == ["holding"]
    (_, result) = engine.apply(plan)
    assert sorted(result.consumers_removed) == ["done", "never"]
    assert [c.name for c in result.consumers_kept] == ["holding"]
    assert [c["name"] for c in r.xinfo_consumers("orders", "billing")] == ["holding"]
    assert r.xpending("orders", "billing")["pending"] == 1  # its entry is still pending, still claimable
    # Nothing left to remove: the next apply writes nothing.
    before = redis_server.dirty()
    again = engine.plan([T], [intent])
    assert not again.changes and again.groups[0].keep_consumers
    engine.apply(again)
    assert redis_server.dirty() == before


def test_cleanup_keeps_a_consumer_that_got_entries_after_the_plan(redis_server: RedisServer) -> None:
    engine = with_consumers(redis_server)
    r = redis_server.client()
    time.sleep(0.5)
    plan = engine.plan([T], [group(cleanup_idle_ms=400)])
    assert "never" in [c.name for c in plan.groups[0].remove_consumers]
    r.xadd("orders", {"body": "late"}, id="4000-0")
    got = r.xreadgroup("billing", "never", {"orders": ">"}, count=1)  # between observe and apply
    assert got
    r.xgroup_createconsumer("orders", "billing", "idle-again")  # brand new: not idle, not planned
    (_, result) = engine.apply(plan)
    assert "never" not in result.consumers_removed
    assert any(d.startswith('kept consumer "never"') for d in result.details), result.details
    names = {c["name"]: c["pending"] for c in r.xinfo_consumers("orders", "billing")}
    assert names.get("never") == 1 and "idle-again" in names
    assert r.xpending_range("orders", "billing", "-", "+", 10, "never")[0]["message_id"] == got[0][1][0][0]


def test_no_cleanup_without_the_field(redis_server: RedisServer) -> None:
    engine = with_consumers(redis_server)
    time.sleep(0.5)
    assert not engine.plan([T], [group()]).changes
    assert len(redis_server.client().xinfo_consumers("orders", "billing")) == 3


# -- the CLI, process after process ------------------------------------------------


MANIFEST = """
apiVersion: redistreams.dev/v1alpha1
kind: Topic
metadata: {name: orders}
---
apiVersion: redistreams.dev/v1alpha1
kind: ConsumerGroup
metadata: {name: billing}
spec:
  topicRef: {name: orders}
  consumerCleanup: {idleAfter: 1s}
"""


def test_cli_plan_and_apply_show_reset_and_cleanup_once(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(MANIFEST)
    assert cli("apply", "-f", str(path)).returncode == 0
    r = redis_server.client()
    for entry_id in IDS:
        r.xadd("orders", {"body": entry_id}, id=entry_id)
    r.xreadgroup("billing", "holding", {"orders": ">"}, count=1)
    r.xgroup_createconsumer("orders", "billing", "stale")
    time.sleep(1.1)
    path.write_text(MANIFEST + "  reset: {token: 2026-11-27-replay, to: '0'}\n")

    plan = cli("plan", "-f", str(path))
    assert plan.returncode == 1, plan.stderr
    line = next(x for x in plan.stdout.splitlines() if "consumergroup/billing" in x)
    assert 'reset group "billing" to 0 (token "2026-11-27-replay")' in line
    # Idle is at least the 1.1 s slept; a slow CLI start on a loaded machine adds seconds.
    assert re.search(r'remove consumer "stale" \(idle [1-9]\d*s, 0 pending\)', line), line
    assert 'keep consumer "holding"' in line and "1 pending" in line
    as_json = json.loads(cli("plan", "-f", str(path), "-o", "json").stdout)
    item = next(p for p in as_json["plan"] if p["resource"] == "consumergroup/billing")
    assert item["reset"] == {"token": "2026-11-27-replay", "to": "0", "target": "0"}
    assert [c["name"] for c in item["consumerCleanup"]["remove"]] == ["stale"]
    assert [(c["name"], c["pending"]) for c in item["consumerCleanup"]["keep"]] == [("holding", 1)]

    applied = cli("apply", "-f", str(path), "-o", "json")
    assert applied.returncode == 0, applied.stderr
    result = next(x for x in json.loads(applied.stdout)["results"] if x["kind"] == "ConsumerGroup")
    assert result["outcome"] == "configured"
    assert result["lastReset"]["token"] == "2026-11-27-replay" and result["lastReset"]["appliedNow"]
    assert result["consumersRemoved"] == ["stale"]
    assert [c["name"] for c in result["consumersKept"]] == ["holding"]
    assert r.xinfo_groups("orders")[0]["lag"] == 5
    assert len(r.xreadgroup("billing", "reader", {"orders": ">"})[0][1]) == 5

    # Another process, the same manifest: no second reset.
    # ('holding' lost its entry to 'reader', which re-read it from 0, so it may go now.)
    again = cli("apply", "-f", str(path))
    assert again.returncode == 0 and "moved group" not in again.stdout, again.stdout
    assert r.xinfo_groups("orders")[0]["last-delivered-id"] == "3000-1"
    assert cli("plan", "-f", str(path)).returncode in (0, 1)  # 'reader' may be idle by now; never a reset
    assert "reset group" not in cli("plan", "-f", str(path)).stdout


def test_an_older_token_never_moves_the_group_back(redis_server: RedisServer) -> None:
    """The operator still at token A after the CLI applied B (a lagging GitOps sync)."""
    engine = seeded(redis_server)
    older, newer = group(reset=reset("a", "0")), group(reset=reset("b", "1000-1"))
    assert engine.reconcile([T], [older])[1].reset_applied
    assert engine.reconcile([T], [newer])[1].reset_applied
    assert deliverable(redis_server) == IDS[2:]
    plan = engine.plan([T], [older])
    assert not plan.changes
    assert 'reset token "a" was applied before "b"; not moved again' in plan.groups[0].notes
    engine.apply(plan)
    assert group_info(redis_server)["last-delivered-id"] == "3000-1"
    record = json.loads(redis_server.client().hget("redistreams:owners", reset_field("orders", "billing")))
    assert record["token"] == "b" and record["earlier"] == ["a"]
