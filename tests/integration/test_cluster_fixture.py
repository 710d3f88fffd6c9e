"""The Redis Cluster fixture itself: formed, failed over, resharded, healed."""

from __future__ import annotations

from redis.crc import key_slot

from tests.support.redis_cluster import RedisCluster


def test_cluster_fixture_forms_fails_over_migrates_and_heals(redis_cluster: RedisCluster) -> None:
    assert len(redis_cluster.masters()) == 3
    assert redis_cluster.url.startswith("redis+cluster://127.0.0.1:")
    client = redis_cluster.client()
    client.set("{k}a", "1")
    slot = key_slot(b"k")
    source = redis_cluster.master_for(slot)
    target = next(m for m in redis_cluster.masters() if m is not source)
    redis_cluster.migrate_slot(slot, target)
    assert redis_cluster.master_for(slot) is target
    assert target.client().get("{k}a") == "1"
    promoted = redis_cluster.fail_over(target)
    assert redis_cluster.master_for(slot) is promoted
    assert client.get("{k}a") == "1"
    redis_cluster.heal()
    assert redis_cluster.well_formed() and redis_cluster.keys() == []
