"""Retention never drops what a group has not received or acknowledged, unless allowed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.manifests import group, topic, write
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration


def fill(r, key: str, count: int, start_ms: int | None = None) -> list[str]:
    if start_ms is None:
        return [r.xadd(key, {"headers": "null", "body": str(i)}) for i in range(count)]
    return [r.xadd(key, {"headers": "null", "body": str(i)}, id=f"{start_ms + i}-0") for i in range(count)]


def test_max_length_without_groups_trims_exactly(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    r = redis_server.client()
    ids = fill(r, "logs", 50)
    result = cli("apply", "-f", write(tmp_path, topic("logs", retention={"maxLength": 10})))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("topic/logs configured: adopted existing stream (50 entries, 0 groups)")
    assert "trimmed 40 entries (maxLength 10)" in result.stdout
    assert [e[0] for e in r.xrange("logs")] == ids[40:]


def test_pending_entries_are_never_trimmed(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    r = redis_server.client()
    r.xadd("orders", {"body": "seed"})
    path = write(tmp_path, topic("orders", retention={"maxLength": 5}) + group("billing", "orders", startId="0"))
    cli("apply", "-f", path)
    ids = [e[0] for e in r.xrange("orders")] + fill(r, "orders", 29)
    # The consumer reads 20 entries and acknowledges only the first 12.
    read = r.xreadgroup("billing", "c1", {"orders": ">"}, count=20)
    delivered = [e[0] for e in read[0][1]]
    r.xack("orders", "billing", *delivered[:12])
    result = cli("apply", "-f", path)
    assert result.returncode == 0, result.stderr
    assert "trimmed 12 entries" in result.stdout
    assert 'retention blocked by group "billing": entries delivered but not acknowledged (8 pending)' in result.stdout
    remaining = [e[0] for e in r.xrange("orders")]
    assert remaining == ids[12:]
    pending = r.xpending_range("orders", "billing", "-", "+", 100)
    assert {p["message_id"] for p in pending} <= set(remaining)


def test_undelivered_entries_are_never_trimmed(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    r = redis_server.client()
    path = write(tmp_path, topic("orders", retention={"maxLength": 3}) + group("slow", "orders"))
    cli("apply", "-f", path)
    ids = fill(r, "orders", 10)
    plan = cli("plan", "-f", path)
    assert plan.returncode == 0  # nothing can be trimmed, so nothing to do
    assert 'retention blocked by group "slow": entries not yet delivered to it' in plan.stdout
    before = redis_server.dirty()
    result = cli("apply", "-f", path)
    assert result.returncode == 0
    assert "retention blocked" in result.stdout
    assert redis_server.dirty() == before
    assert [e[0] for e in r.xrange("orders")] == ids


def test_allow_trimming_unconsumed(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    r = redis_server.client()
    retention = {"maxLength": 3, "allowTrimmingUnconsumed": True}
    cli("apply", "-f", write(tmp_path, topic("orders", retention=retention) + group("slow", "orders")))
    ids = fill(r, "orders", 10)
    r.xreadgroup("slow", "c", {"orders": ">"}, count=2)
    result = cli("apply", "-f", str(tmp_path / "manifests.yaml"))
    assert "trimmed 7 entries" in result.stdout
    assert [e[0] for e in r.xrange("orders")] == ids[7:]


def test_max_age_trims_old_entries_only(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    r = redis_server.client()
    now_ms = int(time.time() * 1000)
    old = fill(r, "events", 30, start_ms=now_ms - 3 * 3600 * 1000)  # three hours old
    new = fill(r, "events", 5, start_ms=now_ms - 60 * 1000)  # a minute old
    result = cli("apply", "-f", write(tmp_path, topic("events", retention={"maxAge": "1h"})))
    assert result.returncode == 0, result.stderr
    assert "trimmed 30 entries (maxAge 1h)" in result.stdout
    assert [e[0] for e in r.xrange("events")] == new
    assert old[0] not in {e[0] for e in r.xrange("events")}


def test_length_and_age_together(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    r = redis_server.client()
    now_ms = int(time.time() * 1000)
    fill(r, "events", 4, start_ms=now_ms - 7200 * 1000)
    recent = fill(r, "events", 10, start_ms=now_ms - 1000)
    cli("apply", "-f", write(tmp_path, topic("events", retention={"maxAge": "1h", "maxLength": 6})))
    assert [e[0] for e in r.xrange("events")] == recent[4:]


def test_long_trims_go_in_bounded_steps(redis_server: RedisServer) -> None:
    from redistreams.engine import Engine, Owner, RetentionPolicy, TopicIntent

    r = redis_server.client()
    pipe = r.pipeline(transaction=False)
    for i in range(12_345):
        pipe.xadd("big", {"body": str(i)})
    pipe.execute()
    engine = Engine(redis_server.client(), trim_step=1000)
    intent = TopicIntent("topic/big", Owner("c", "ns", "big"), "big", RetentionPolicy(max_length=100))
    (result,) = engine.reconcile([intent], [])
    assert result.trimmed == 12_245
    assert r.xlen("big") == 100
    # Observe, claim, 13 trim calls of at most 1000 entries (one per round trip), and the
    # registry's identity (a new registry gets one).
    assert engine.stats.round_trips <= 1 + 1 + 13 + 1


def test_safe_point_arithmetic_at_the_sequence_limit(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    r = redis_server.client()
    top = 2**64 - 1
    for entry_id in (f"5-{top - 1}", f"5-{top}", "6-0", "6-1"):
        r.xadd("edge", {"body": entry_id}, id=entry_id)
    r.xgroup_create("edge", "g", f"5-{top}")  # delivered up to the last ID with sequence 2^64-1
    result = cli("apply", "-f", write(tmp_path, topic("edge", retention={"maxLength": 1})))
    assert result.returncode == 0, result.stderr
    assert "trimmed 2 entries" in result.stdout
    assert [e[0] for e in r.xrange("edge")] == ["6-0", "6-1"]
