"""redistreams.pubsub on a real 3-master/3-replica Redis Cluster: routing by slot, autoclaim,
dead-letter, a slot without a master, a master killed and a slot migrated under load, the CLI."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from typing import Any

import pytest
import redis

from redistreams.pubsub import DeadLetter, Message, PublishError, PubSubError, open_subscription, open_topic
from redistreams.pubsub.cluster import SlotNotServedError
from tests.support.aio import run
from tests.support.cli import CLI
from tests.support.redis_cluster import RedisCluster

STREAMS = [f"orders/{i}" for i in range(32)]


def _masters_of(cluster: RedisCluster, keys: list[str]) -> set[str]:
    return {cluster.master_for(key).address for key in keys}


def _pending(client: redis.RedisCluster, stream: str, group: str = "g") -> int:
    return int(client.xpending(stream, group)["pending"])


@pytest.mark.parametrize("which", ["cluster URL", "one node's URL"])
def test_publish_consume_ack_across_slots(redis_cluster: RedisCluster, which: str) -> None:
    """32 streams over the 3 masters, one Topic and one Subscription each; a plain URL of
    one node finds the cluster."""
    server = redis_cluster.url if which == "cluster URL" else redis_cluster.plain_url
    assert len(_masters_of(redis_cluster, STREAMS)) == 3

    async def scenario() -> dict[str, list[bytes]]:
        subs = [await open_subscription(f"redis://g?topic={s}&consumer=c", redis_url=server) for s in STREAMS]
        topics = [await open_topic(f"redis://{s}", redis_url=server) for s in STREAMS]
        await asyncio.gather(*(t.send_batch([Message(f"{t.stream}#{n}".encode(), {"n": str(n)})
                                             for n in range(50)]) for t in topics))
        got: dict[str, list[bytes]] = {}
        for sub in subs:
            received: list[bytes] = []
            while len(received) < 50:
                batch = await sub.receive_batch(100, timeout=5)
                assert batch, f"{sub.stream}: only {len(received)} received"
                received += [m.body for m in batch]
                sub.ack(*batch)
            await sub.flush()
            got[sub.stream] = received
        for sub in subs:
            await sub.shutdown()
        for topic in topics:
            await topic.shutdown()
        return got

    got = run(scenario)
    client = redis_cluster.client()
    for stream in STREAMS:
        assert got[stream] == [f"{stream}#{n}".encode() for n in range(50)]
        assert client.xlen(stream) == 50 and _pending(client, stream) == 0


def test_autoclaim_takes_another_consumers_pending_entries(redis_cluster: RedisCluster) -> None:
    streams = STREAMS[:6]
    url = redis_cluster.url

    async def scenario() -> Counter[str]:
        for stream in streams:
            async with await open_topic(f"redis://{stream}", redis_url=url) as topic:
                await topic.send_batch([b"a", b"b", b"c"])
        # A consumer that takes everything and dies without acknowledging.
        for stream in streams:
            dead = await open_subscription(f"redis://g?topic={stream}&consumer=dead", redis_url=url)
            assert len(await dead.receive_batch(10, timeout=5)) == 3
            await dead.shutdown()
        reclaimed: Counter[str] = Counter()
        for stream in streams:
            alive = await open_subscription(f"redis://g?topic={stream}&consumer=alive&autoclaim=200ms",
                                            redis_url=url, reclaim_interval=0.1)
            while reclaimed[stream] < 3:
                batch = await alive.receive_batch(10, timeout=5)
                assert batch and all(m.redelivered for m in batch)
                reclaimed[stream] += len(batch)
                alive.ack(*batch)
            await alive.flush()
            await alive.shutdown()
        return reclaimed

    assert run(scenario) == dict.fromkeys(streams, 3)
    client = redis_cluster.client()
    assert all(_pending(client, stream) == 0 for stream in streams)


def test_dead_letter_in_the_topics_slot_and_a_clear_error_otherwise(redis_cluster: RedisCluster) -> None:
    url = redis_cluster.url

    async def scenario() -> None:
        async with await open_topic("redis://{billing}.in", redis_url=url) as topic:
            await topic.send_batch([Message(b"poison"), Message(b"fine")])
        sub = await open_subscription("redis://g?topic={billing}.in&consumer=c&autoclaim=100ms", redis_url=url,
                                      dead_letter=DeadLetter("{billing}.dead", max_deliveries=2),
                                      reclaim_interval=0.05)
        seen = 0
        for _ in range(100):
            batch = await sub.receive_batch(10, timeout=0.2)
            for message in batch:
                if message.body == b"poison":
                    seen += 1
                    message.nack()
                else:
                    message.ack()
            await sub.flush()
            if sub.stats["dead_lettered"]:
                break
        await sub.shutdown()
        assert seen == 2

    run(scenario)
    client = redis_cluster.client(decode_responses=False)
    (entry,) = client.xrange("{billing}.dead")
    assert entry[1][b"body"] == b"poison" and entry[1][b"dead-letter-stream"] == b"{billing}.in"
    assert _pending(client, "{billing}.in") == 0


def test_dead_letter_stream_in_another_slot(redis_cluster: RedisCluster) -> None:
    """Claimed and handed over by the script, copied to the other node, then acknowledged;
    malformed entries too. A copy refused (the key holds another type) leaves it pending."""
    url, topic_key, dead_key = redis_cluster.url, "payments", "dead/payments"
    assert redis_cluster.master_for(topic_key) is not redis_cluster.master_for(dead_key)
    client = redis_cluster.client(decode_responses=False)

    async def scenario(dead_letter: str) -> dict[str, int]:
        sub = await open_subscription(f"redis://g?topic={topic_key}&consumer=c&autoclaim=100ms", redis_url=url,
                                      dead_letter=DeadLetter(dead_letter, max_deliveries=2), reclaim_interval=0.05)
        async with await open_topic(f"redis://{topic_key}", redis_url=url) as topic:
            await topic.send(Message(b"poison"))
        client.xadd(topic_key, {b"not": b"the driver's format"})
        for _ in range(100):
            for message in await sub.receive_batch(10, timeout=0.2):
                message.nack()
            await sub.flush()
            if sub.stats["dead_lettered"] == 2 or sub.stats["dead_letter_failed"] >= 2:
                break
        await sub.shutdown()
        return dict(sub.stats)

    stats = run(lambda: scenario(dead_key))
    assert stats["dead_lettered"] == 2, stats
    copies = client.xrange(dead_key)
    assert sorted(e[1].get(b"body", b"") for e in copies) == [b"", b"poison"]
    assert {e[1][b"dead-letter-stream"] for e in copies} == {topic_key.encode()}
    assert _pending(client, topic_key) == 0

    client.delete(topic_key)
    client.set("dead/other", "a string")
    stats = run(lambda: scenario("dead/other"))
    assert stats["dead_letter_failed"] >= 1 and not stats.get("dead_lettered"), stats
    assert _pending(client, topic_key) >= 1  # still pending: nothing lost


def test_a_slot_without_a_master_is_a_clear_error(redis_cluster: RedisCluster) -> None:
    stream = "unserved"
    slot = redis.crc.key_slot(stream.encode())

    async def scenario() -> None:
        topic = await open_topic(f"redis://{stream}", redis_url=redis_cluster.url, retry_for=1)
        await topic.send(b"before")
        await asyncio.to_thread(redis_cluster.unassign_slot, slot)
        with pytest.raises(SlotNotServedError, match=f"hash slot {slot} of key 'unserved'"):
            await topic.send(b"after")
        await topic.shutdown()

    run(scenario)


async def _consume_all(url: str, stream: str, consumer: str, got: Counter[bytes], stop: asyncio.Event) -> None:
    sub = await open_subscription(f"redis://g?topic={stream}&consumer={consumer}&autoclaim=2s", redis_url=url,
                                  block=0.2, timeout=3)
    try:
        while not stop.is_set():
            batch = await sub.receive_batch(200, timeout=0.5)
            got.update(m.body for m in batch)
            sub.ack(*batch)
    finally:
        await sub.shutdown()


async def _publish_until(url: str, stream: str, acknowledged: list[bytes], stop: asyncio.Event,
                         failures: list[str], replicas: int = 1) -> None:
    topic = await open_topic(f"redis://{stream}", redis_url=url, replicas=replicas, timeout=3, retry_for=15)
    n = 0
    try:
        while not stop.is_set():
            bodies = [f"{stream}#{n + i}".encode() for i in range(20)]
            n += 20
            try:
                await topic.send_batch(bodies)
            except (PublishError, PubSubError, redis.RedisError, OSError) as exc:
                failures.append(f"{type(exc).__name__}: {exc}")  # not acknowledged: may or may not be stored
                continue
            acknowledged.extend(bodies)
            await asyncio.sleep(0.005)
    finally:
        await topic.shutdown()


def _under_load(cluster: RedisCluster, streams: list[str], fault: Any, *, replicas: int = 1) -> dict[str, Any]:
    """Publishers and consumers on ``streams`` for ~1 s, ``fault()`` in a thread, ~2 s more;
    then consumers go on until every acknowledged publish arrived (or 30 s passed)."""
    url = cluster.url

    async def scenario() -> dict[str, Any]:
        admin = cluster.client()
        for stream in streams:
            admin.xgroup_create(stream, "g", "0", mkstream=True)
        acknowledged: dict[str, list[bytes]] = {s: [] for s in streams}
        got: Counter[bytes] = Counter()
        failures: list[str] = []
        stop_publishing, stop_consuming = asyncio.Event(), asyncio.Event()
        publishers = [asyncio.create_task(_publish_until(url, s, acknowledged[s], stop_publishing, failures,
                                                         replicas)) for s in streams]
        consumers = [asyncio.create_task(_consume_all(url, s, f"c{i}", got, stop_consuming))
                     for s in streams for i in range(2)]
        await asyncio.sleep(1.0)
        before = sum(map(len, acknowledged.values()))
        await asyncio.to_thread(fault)
        await asyncio.sleep(2.0)
        stop_publishing.set()
        await asyncio.gather(*publishers)
        after = sum(map(len, acknowledged.values())) - before
        wanted = {body for bodies in acknowledged.values() for body in bodies}
        for _ in range(300):
            if wanted <= set(got):
                break
            await asyncio.sleep(0.1)
        stop_consuming.set()
        await asyncio.gather(*consumers)
        return {"missing": sorted(wanted - set(got))[:10], "acknowledged": len(wanted), "after": after,
                "duplicates": sum(c - 1 for c in got.values()), "failures": failures}

    result: dict[str, Any] = run(scenario, within=90)
    return result


@pytest.mark.slow
def test_a_master_killed_during_publishing_and_consuming_loses_no_acknowledged_message(
        redis_cluster: RedisCluster) -> None:
    streams = STREAMS[:9]
    victim = redis_cluster.master_for(streams[0])
    on_victim = [s for s in streams if redis_cluster.master_for(s) is victim]
    result = _under_load(redis_cluster, streams, lambda: redis_cluster.fail_over(victim, restart=True))
    assert not result["missing"], result
    assert result["acknowledged"] > 500 and result["after"] > 0, result
    assert redis_cluster.master_for(on_victim[0]) is not victim


def test_a_slot_migrated_during_publishing_and_consuming(redis_cluster: RedisCluster) -> None:
    streams = STREAMS[:3]
    source = redis_cluster.master_for(streams[0])
    target = next(m for m in redis_cluster.masters() if m is not source)
    slot = redis.crc.key_slot(streams[0].encode())
    steps = threading.Event()

    def migrate() -> None:
        migration = redis_cluster.begin_migration(slot, target)
        steps.wait(0.3)  # publishing with the slot MIGRATING (ASK for keys not there yet)
        migration.move_keys()
        steps.wait(0.3)  # the key IMPORTED on the target: ASK
        migration.finish()  # MOVED from then on

    result = _under_load(redis_cluster, streams, migrate, replicas=0)
    assert not result["missing"] and not result["failures"], result
    assert result["after"] > 0
    assert redis_cluster.master_for(streams[0]) is target


def test_cli_pub_on_the_cluster(redis_cluster: RedisCluster) -> None:
    client = redis_cluster.client()
    for server in (redis_cluster.url, redis_cluster.plain_url):
        for stream in STREAMS[:3]:
            result = CLI(server)("pub", stream, "one", "two", "-o", "json")
            assert result.returncode == 0, result.stderr
            assert json.loads(result.stdout)["ids"] == [e[0] for e in client.xrange(stream)][-2:]
    assert [client.xlen(stream) for stream in STREAMS[:3]] == [4, 4, 4]


def test_cli_sub_on_the_cluster(redis_cluster: RedisCluster) -> None:
    """A subscription URL (the group checked by the engine first, then consumed and
    acknowledged by the client), and peeking (XREAD on the cluster client)."""
    cli = CLI(redis_cluster.url)
    client = redis_cluster.client()
    for stream in STREAMS[:3]:
        client.xgroup_create(stream, "workers", "$", mkstream=True)
        assert cli("pub", stream, "one", "two").returncode == 0
        sub = cli("sub", f"redis://workers?topic={stream}&consumer=cli", "--count", "2", "-o", "json")
        assert sub.returncode == 0, sub.stderr
        assert [json.loads(line)["body"] for line in sub.stdout.splitlines()] == ["one", "two"]
        assert _pending(client, stream, "workers") == 0
        peeked = cli("sub", stream, "--from", "0", "--count", "2")
        assert peeked.returncode == 0, peeked.stderr
        assert [line.split()[-1] for line in peeked.stdout.splitlines()] == ["one", "two"]


def test_replicas_waits_for_replication_and_says_when_it_falls_short(url: str, redis_cluster: RedisCluster) -> None:
    """``replicas=1``: on the cluster every master has a replica and sends return; on one
    server without replicas the messages are stored but the send raises, naming the shortfall."""

    async def scenario() -> None:
        async with await open_topic("redis://durable", redis_url=redis_cluster.url, replicas=1) as topic:
            assert len(await topic.send_batch([b"a", b"b"])) == 2
        async with await open_topic("redis://durable", redis_url=url, replicas=1, timeout=0.3) as topic:
            with pytest.raises(PublishError, match="only 0 of 1 replicas") as raised:
                await topic.send(b"c")
            assert raised.value.ids[0] is not None  # stored on the master

    run(scenario)
    assert redis_cluster.client().xlen("durable") == 2


def test_an_applications_own_asyncio_cluster_client_names_the_cluster(redis_cluster: RedisCluster) -> None:
    from redis.asyncio.cluster import ClusterNode
    from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

    async def scenario() -> list[bytes]:
        host, port = redis_cluster.nodes[0].address.split(":")
        client = AsyncRedisCluster(startup_nodes=[ClusterNode(host, int(port))], decode_responses=True)
        try:
            async with await open_topic("redis://own-client", client=client) as topic:
                await topic.send_batch([f"m{i}".encode() for i in range(3)] + [b"x"])
            sub = await open_subscription("redis://g?topic=own-client&consumer=c", client=client)
            got = await sub.receive_batch(10, timeout=5)
            sub.ack(*got)
            await sub.shutdown()
            return [m.body for m in got]
        finally:
            await client.aclose()

    assert run(scenario) == [b"m0", b"m1", b"m2", b"x"]
