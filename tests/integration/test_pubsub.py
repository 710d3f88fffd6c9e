"""redistreams.pubsub against a real redis-server: formats, delivery, failures."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
import redis

from redistreams.pubsub import (
    ConsumerInUseError,
    DeadLetter,
    Message,
    PublishError,
    PubSubError,
    URLError,
    open_subscription,
    open_topic,
    sync,
)
from tests.support.aio import run
from tests.support.redis_server import RedisServer


def test_entries_are_written_as_the_go_driver_writes_them(url: str, raw: redis.Redis) -> None:
    async def scenario() -> list[str]:
        async with await open_topic("redis://Orders/EU") as topic:
            first = await topic.send(Message(b"\x00\xffbinary", {"b": "2", "a": "<&>"}))
            rest = await topic.send_batch([Message(b"no metadata"), Message(b"", {}), "text body"])
            return [first, *rest]

    ids = run(scenario)
    entries = raw.xrange("Orders/EU")
    assert [e[0].decode() for e in entries] == ids
    assert [e[1] for e in entries] == [
        {b"headers": b'{"a":"\\u003c\\u0026\\u003e","b":"2"}', b"body": b"\x00\xffbinary"},
        {b"headers": b"null", b"body": b"no metadata"},
        {b"headers": b"null", b"body": b""},
        {b"headers": b"null", b"body": b"text body"},
    ]


def test_metadata_and_bodies_round_trip(url: str) -> None:
    cases = [
        Message(b"", {}),
        Message(bytes(range(256)), {"unicode": "café 日本 😀", "html": "<a href='x'>&</a>", "empty": ""}),
        Message(b"\r\n\x00", {"sep": "\u2028\u2029", "ctrl": "\x01\t\n"}),
        Message(b"x" * 1_000_000, {"k" * 100: "v" * 10_000}),
    ]

    async def scenario() -> list[tuple[bytes, dict[str, str]]]:
        sub = await open_subscription("redis://g?topic=round&consumer=c1")
        async with await open_topic("redis://round") as topic:
            await topic.send_batch(cases)
        got = []
        while len(got) < len(cases):
            batch = await sub.receive_batch(10, timeout=5)
            sub.ack(*batch)
            got += [(m.body, m.metadata) for m in batch]
        await sub.shutdown()
        return got

    assert run(scenario) == [(m.body, m.metadata) for m in cases]


def test_concurrent_sends_share_round_trips_and_keep_ids(url: str, raw: redis.Redis) -> None:
    async def scenario() -> list[str]:
        async with await open_topic("redis://busy") as topic:
            return await asyncio.gather(*(topic.send(str(i)) for i in range(2000)))

    ids = run(scenario)
    assert len(set(ids)) == 2000
    bodies = {e[0].decode(): e[1][b"body"] for e in raw.xrange("busy")}
    assert all(bodies[entry_id] == str(i).encode() for i, entry_id in enumerate(ids))
    # Coalesced: far fewer XADD round trips than sends (the command count stays per message).
    assert raw.info("commandstats")["cmdstat_xadd"]["calls"] == 2000


def test_redis_url_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    with pytest.raises(PubSubError, match="open topic redis://t: REDIS_URL environment variable not set"):
        run(lambda: open_topic("redis://t"))
    with pytest.raises(PubSubError, match="open subscription .*REDIS_URL environment variable not set"):
        run(lambda: open_subscription("redis://g?topic=t&consumer=c"))


@pytest.mark.parametrize("bad", [
    "redis://app:s3cret@orders?maxlen=ten",  # user:pw@ (Go ignores it: the server is REDIS_URL)
    "redis://orders?password=s3cret&maxlen=-1",
    "redis://app:s3cret@or%zzders",
    "rediss://app:s3cret@orders",
    "redis://billing?topic=t&consumer=c&password=s3cret",
    "redis://:s3cret@billing?topic=t&consumer=c&autoclaim=soon",
    "redis://billing?topic=t&password=s3cret",
])
def test_url_errors_never_show_a_credential(bad: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # never reached: the URL is refused first
    opener = open_subscription if "topic=" in bad else open_topic
    with pytest.raises(URLError) as caught:
        run(lambda: opener(bad))
    assert "s3cret" not in str(caught.value) and "***" in str(caught.value)


def test_go_redis_options_in_redis_url_are_accepted(redis_server: RedisServer, raw: redis.Redis) -> None:
    shared = f"{redis_server.url}?dial_timeout=3s&pool_size=10&max_retries=2"

    async def scenario() -> None:
        async with await open_topic("redis://shared", redis_url=shared) as topic:
            await topic.send(b"x")

    run(scenario)
    assert raw.xlen("shared") == 1


def test_subscription_creates_group_at_from_and_tolerates_an_existing_one(url: str, raw: redis.Redis) -> None:
    raw.xadd("hist", {"headers": "null", "body": "old"})

    async def scenario() -> tuple[list[bytes], list[bytes]]:
        from_start = await open_subscription("redis://all?topic=hist&consumer=c")
        from_now = await open_subscription("redis://new?topic=hist&consumer=c&from=$")
        async with await open_topic("redis://hist") as topic:
            await topic.send(b"new")
        a = [m.body for m in await from_start.receive_batch(10, timeout=2)]
        b = [m.body for m in await from_now.receive_batch(10, timeout=2)]
        await from_start.shutdown()
        await from_now.shutdown()
        # Re-opening an existing group (as the operator created it) is fine and moves nothing.
        again = await open_subscription("redis://all?topic=hist&consumer=c2&from=$")
        await again.shutdown()
        return a, b

    a, b = run(scenario)
    assert a == [b"old", b"new"] and b == [b"new"]
    groups = {g["name"]: g for g in raw.xinfo_groups("hist")}
    assert groups[b"all"]["last-delivered-id"] == raw.xinfo_stream("hist")["last-generated-id"]
    assert {c["name"] for c in raw.xinfo_consumers("hist", "all")} == {b"c", b"c2"}  # visible at once


def test_wrong_key_type_is_a_clear_error(url: str, raw: redis.Redis) -> None:
    raw.set("plain", "v")
    with pytest.raises(PubSubError, match="key 'plain' exists and is not a stream"):
        run(lambda: open_subscription("redis://g?topic=plain&consumer=c"))

    async def publish() -> None:
        async with await open_topic("redis://plain") as topic:
            await topic.send_batch([b"a", b"b"])

    with pytest.raises(PublishError, match="2 of 2 messages not stored: WRONGTYPE") as info:
        run(publish)
    assert info.value.ids == [None, None]
    assert raw.get("plain") == b"v"


def test_consumer_names_must_be_unique_in_a_process(url: str) -> None:
    async def scenario() -> None:
        first = await open_subscription("redis://g?topic=t&consumer=same")
        try:
            with pytest.raises(ConsumerInUseError, match='consumer "same" .* must be unique'):
                await open_subscription("redis://g?topic=t&consumer=same")
            other = await open_subscription("redis://g?topic=t&consumer=other")
            await other.shutdown()
        finally:
            await first.shutdown()
        reopened = await open_subscription("redis://g?topic=t&consumer=same")
        await reopened.shutdown()

    run(scenario)


def test_a_restarted_consumer_gets_its_unacknowledged_messages_first(url: str, raw: redis.Redis) -> None:
    async def scenario() -> tuple[list[bytes], list[bool]]:
        async with await open_topic("redis://work") as topic:
            await topic.send_batch([b"1", b"2", b"3"])
        crashed = await open_subscription("redis://g?topic=work&consumer=pod-a")
        got = await crashed.receive_batch(2, timeout=2)
        got[0].ack()
        await crashed.flush()
        # Dies without acknowledging "2"; its buffered "3" stays unread here, as after a crash.
        crashed._closed = True
        await crashed._read.close()
        await crashed._control.close()
        from redistreams.pubsub import subscriber as aio
        aio._in_use.discard(crashed._key)
        async with await open_topic("redis://work") as topic:
            await topic.send(b"4")
        restarted = await open_subscription("redis://g?topic=work&consumer=pod-a")
        again = []
        while len(again) < 3:
            again += await restarted.receive_batch(10, timeout=3)
        restarted.ack(*again)
        await restarted.shutdown()
        return [m.body for m in again], [m.redelivered for m in again]

    bodies, redelivered = run(scenario)
    assert bodies == [b"2", b"3", b"4"]
    assert redelivered == [True, True, False]
    assert raw.xpending("work", "g")["pending"] == 0


def test_idle_messages_of_a_dead_consumer_are_reclaimed_by_another(url: str, raw: redis.Redis) -> None:
    # 30 entries owned by a dead consumer behind 15 fresh ones: a cursor reaches them all
    # (the Go driver restarts XAUTOCLAIM at 0-0 with COUNT 1 and can starve such entries).
    for i in range(45):
        raw.xadd("jobs", {"headers": "null", "body": str(i)})
    raw.xgroup_create("jobs", "g", "0")
    taken = raw.xreadgroup("g", "dead", {"jobs": ">"}, count=30)[0][1]
    # Idle for an hour (not a sleep past autoclaim: on a loaded machine the fresh ones
    # could pass autoclaim too before the cursor is through, and be reclaimed with them).
    raw.xclaim("jobs", "g", "dead", 0, [entry_id for entry_id, _ in taken], idle=3_600_000, justid=True)
    raw.xreadgroup("g", "busy", {"jobs": ">"}, count=15)

    async def scenario() -> list[int]:
        sub = await open_subscription("redis://g?topic=jobs&consumer=alive&autoclaim=1m", batch_size=4)
        got: list[int] = []
        while len(got) < 30:
            batch = await sub.receive_batch(4, timeout=5)
            assert batch, f"only {len(got)} reclaimed"
            sub.ack(*batch)
            got += [int(m.body) for m in batch]
        await sub.shutdown()
        return got

    assert sorted(run(scenario)) == list(range(30))
    consumers = {c["name"]: c["pending"] for c in raw.xinfo_consumers("jobs", "g")}
    assert consumers[b"dead"] == 0 and consumers[b"busy"] == 15


def test_nack_makes_the_message_available_again_promptly(url: str, raw: redis.Redis) -> None:
    async def scenario() -> tuple[float, bytes, bool]:
        # Default autoclaim (30 minutes): a nacked message must still come back at once.
        first = await open_subscription("redis://g?topic=n&consumer=a")
        second = await open_subscription("redis://g?topic=n&consumer=b", reclaim_interval=0.2)
        async with await open_topic("redis://n") as topic:
            await topic.send(b"retry me")
        message = await first.receive(timeout=2)
        started = time.monotonic()
        message.nack()
        await first.flush()
        again = await second.receive(timeout=10)
        elapsed = time.monotonic() - started
        again.ack()
        await first.shutdown()
        await second.shutdown()
        return elapsed, again.body, again.redelivered

    elapsed, body, redelivered = run(scenario)
    assert body == b"retry me" and redelivered
    assert elapsed < 5
    assert raw.xpending("n", "g")["pending"] == 0


def test_dead_letter_after_max_deliveries(url: str, raw: redis.Redis) -> None:
    async def scenario() -> list[bytes]:
        async with await open_topic("redis://pay") as topic:
            await topic.send_batch([Message(b"poison", {"k": "v"}), Message(b"fine")])
        sub = await open_subscription("redis://g?topic=pay&consumer=c", dead_letter=DeadLetter("pay.dead", 3))
        handled = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and sub.stats["dead_lettered"] == 0:
            for message in await sub.receive_batch(10, timeout=0.5):
                handled.append(message.body)
                if message.body == b"poison":
                    message.nack()
                else:
                    message.ack()
        await sub.shutdown()
        return handled

    handled = run(scenario)
    assert handled.count(b"poison") == 3 and handled.count(b"fine") == 1
    (dead,) = raw.xrange("pay.dead")
    fields = dead[1]
    original = raw.xrange("pay")[0]
    assert fields[b"headers"] == b'{"k":"v"}' and fields[b"body"] == b"poison"  # readable by Go and Python
    assert fields[b"dead-letter-stream"] == b"pay" and fields[b"dead-letter-group"] == b"g"
    assert fields[b"dead-letter-id"] == original[0] and fields[b"dead-letter-deliveries"] == b"3"
    assert raw.xpending("pay", "g")["pending"] == 0


def test_malformed_entries_go_to_the_dead_letter_stream_or_are_delivered_flagged(url: str, raw: redis.Redis) -> None:
    raw.xadd("mixed", {"headers": "not json", "body": "a"})
    raw.xadd("mixed", {"other": "field"})
    raw.xadd("mixed", {"headers": "null", "body": "ok"})

    async def scenario() -> tuple[list[tuple[bytes, str | None]], int]:
        flagged = await open_subscription("redis://plain?topic=mixed&consumer=c")
        seen = [(m.body, m.problem) for m in await flagged.receive_batch(10, timeout=2)]
        await flagged.shutdown()
        strict = await open_subscription("redis://strict?topic=mixed&consumer=c", dead_letter="mixed.dead")
        good = await strict.receive_batch(10, timeout=2)
        strict.ack(*good)
        await strict.shutdown()
        return seen, len(good)

    seen, good = run(scenario)
    assert [s[0] for s in seen] == [b"a", b"", b"ok"]
    assert "not JSON" in (seen[0][1] or "") and "no 'body'" in (seen[1][1] or "") and seen[2][1] is None
    assert good == 1
    assert [e[1][b"dead-letter-reason"] for e in raw.xrange("mixed.dead")] == [
        b"entry is not in the driver's format (headers/body)"] * 2
    assert raw.xpending("mixed", "strict")["pending"] == 0


def test_entries_deleted_while_pending_are_acknowledged_and_reported(
        url: str, raw: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    for i in range(4):
        raw.xadd("gone", {"headers": "null", "body": str(i)})
    raw.xgroup_create("gone", "g", "0")
    raw.xreadgroup("g", "me", {"gone": ">"})
    raw.xreadgroup("g", "dead", {"gone": ">"})  # nothing left for "dead"
    ids = [e[0] for e in raw.xrange("gone")]
    raw.xdel("gone", ids[0], ids[1])

    async def scenario() -> tuple[list[bytes], dict[str, int]]:
        sub = await open_subscription("redis://g?topic=gone&consumer=me")
        got = await sub.receive_batch(10, timeout=2)
        sub.ack(*got)
        await sub.shutdown()
        return [m.body for m in got], dict(sub.stats)

    with caplog.at_level(logging.WARNING, logger="redistreams.pubsub"):
        bodies, stats = run(scenario)
    assert bodies == [b"2", b"3"]
    assert stats["deleted"] == 2
    assert "were deleted from the stream before they were acknowledged" in caplog.text
    assert raw.xpending("gone", "g")["pending"] == 0


def test_shutdown_sends_queued_acks_and_gives_back_unread_messages(url: str, raw: redis.Redis) -> None:
    async def scenario() -> tuple[int, list[bytes]]:
        async with await open_topic("redis://s") as topic:
            await topic.send_batch([str(i).encode() for i in range(10)])
        sub = await open_subscription("redis://g?topic=s&consumer=a", batch_size=10)
        first = await sub.receive_batch(3, timeout=2)  # 7 more are buffered
        sub.ack(*first)
        await sub.shutdown()  # no flush() before: shutdown sends them
        after = raw.xpending("s", "g")["pending"]
        other = await open_subscription("redis://g?topic=s&consumer=b", reclaim_interval=0)
        rest = []
        while len(rest) < 7:
            rest += await other.receive_batch(10, timeout=3)
        other.ack(*rest)
        await other.shutdown()
        return after, [m.body for m in rest]

    pending_after_shutdown, rest = run(scenario)
    assert pending_after_shutdown == 7
    assert sorted(rest) == sorted(str(i).encode() for i in range(3, 10))


def test_receive_after_shutdown_and_iteration_end(url: str) -> None:
    async def scenario() -> list[bytes]:
        async with await open_topic("redis://it") as topic:
            await topic.send_batch([b"a", b"b"])
        sub = await open_subscription("redis://g?topic=it&consumer=c")
        got = []
        async for message in sub:
            got.append(message.body)
            message.ack()
            if len(got) == 2:
                asyncio.get_running_loop().create_task(sub.shutdown())
        return got

    assert run(scenario) == [b"a", b"b"]


def test_slow_handlers_keep_their_messages(url: str, raw: redis.Redis) -> None:
    async def scenario() -> tuple[int, int]:
        async with await open_topic("redis://slow") as topic:
            await topic.send(b"long job")
        worker = await open_subscription("redis://g?topic=slow&consumer=worker&autoclaim=900ms")
        thief = await open_subscription("redis://g?topic=slow&consumer=thief&autoclaim=900ms", reclaim_interval=0.1)
        message = await worker.receive(timeout=2)
        stolen = await thief.receive_batch(1, timeout=3)  # 3 s of work: leases are renewed meanwhile
        message.ack()
        await worker.shutdown()
        await thief.shutdown()
        return len(stolen), worker.stats["leases_renewed"]

    stolen, renewed = run(scenario)
    assert stolen == 0 and renewed >= 2
    assert raw.xpending("slow", "g")["pending"] == 0


def test_noack_subscription(url: str, raw: redis.Redis) -> None:
    async def scenario() -> list[bytes]:
        sub = await open_subscription("redis://g?topic=na&consumer=c&noack")
        async with await open_topic("redis://na") as topic:
            await topic.send_batch([b"1", b"2"])
        got = await sub.receive_batch(10, timeout=2)
        await sub.shutdown()
        return [m.body for m in got]

    assert run(scenario) == [b"1", b"2"]
    assert raw.xpending("na", "g")["pending"] == 0


def test_maxlen_trims_exactly_like_go_and_warns(url: str, raw: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with await open_topic("redis://capped?maxlen=3") as topic:
            await topic.send_batch([str(i).encode() for i in range(10)])

    with caplog.at_level(logging.WARNING, logger="redistreams.pubsub"):
        run(scenario)
    assert [e[1][b"body"] for e in raw.xrange("capped")] == [b"7", b"8", b"9"]
    assert "can drop entries consumer groups have not read" in caplog.text


def test_group_lost_with_the_stream_is_recreated_from_the_start(url: str, raw: redis.Redis) -> None:
    async def scenario() -> list[bytes]:
        sub = await open_subscription("redis://g?topic=reset&consumer=c&from=$", block=0.2)
        raw.flushall()  # Redis reset: stream and group gone
        async with await open_topic("redis://reset") as topic:
            await topic.send(b"after reset")  # XADD re-creates a group-less stream
        got = await sub.receive_batch(10, timeout=5)
        sub.ack(*got)
        await sub.shutdown()
        return [m.body for m in got]

    assert run(scenario) == [b"after reset"]


def test_subscriber_and_publisher_survive_a_redis_restart(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Any) -> None:
    monkeypatch.setenv("REDIS_URL", redis_server.url)

    async def scenario() -> list[bytes]:
        sub = await open_subscription("redis://g?topic=up&consumer=c", block=0.3)
        topic = await open_topic("redis://up", retry_for=20)
        await topic.send(b"before")
        first = await sub.receive_batch(10, timeout=2)
        sub.ack(*first)
        await sub.flush()
        got = [m.body for m in first]
        redis_server.stop()
        later = asyncio.get_running_loop().create_task(topic.send(b"during"))
        receiving = asyncio.get_running_loop().create_task(sub.receive_batch(10, timeout=20))
        await asyncio.sleep(1.0)
        redis_server.start()
        await later
        got += [m.body for m in await receiving]
        await sub.shutdown()
        await topic.shutdown()
        return got

    assert run(scenario) == [b"before", b"during"]


def test_sync_facade(url: str, raw: redis.Redis) -> None:
    with sync.open_subscription("redis://g?topic=sy&consumer=c") as sub:
        with sync.open_topic("redis://sy") as topic:
            first = topic.send(Message(b"one", {"a": "b"}))
            rest = topic.send_batch([b"two", b"three"])
        got = []
        for message in sub:
            got.append((message.id, message.body))
            message.ack()
            if len(got) == 3:
                break
        sub.flush()
        assert [g[0] for g in got] == [first, *rest]
        assert raw.xpending("sy", "g")["pending"] == 0
        assert sub.stats["acked"] == 3


def test_a_cancelled_sender_does_not_strand_the_others(url: str, raw: redis.Redis) -> None:
    async def scenario() -> tuple[int, int]:
        async with await open_topic("redis://cancel") as topic:
            leader = asyncio.get_running_loop().create_task(topic.send(b"leader"))
            await asyncio.sleep(0)  # the leader's round trip is in flight
            others = [asyncio.get_running_loop().create_task(topic.send(str(i))) for i in range(50)]
            leader.cancel()
            done = await asyncio.wait_for(asyncio.gather(*others, return_exceptions=True), 10)
            after = await topic.send(b"after")
        return sum(isinstance(d, str) for d in done), len(after)

    stored, after = run(scenario)
    assert stored == 50 and after > 0  # queued behind the cancelled trip, then sent


def test_an_application_client_can_be_reused(redis_server: RedisServer, raw: redis.Redis,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """client=: the app's own redis.asyncio client (decoding text, RESP3) names the server."""
    import redis.asyncio as aredis

    monkeypatch.delenv("REDIS_URL", raising=False)

    async def scenario() -> bytes:
        client = aredis.Redis(host="127.0.0.1", port=redis_server.port, password=redis_server.password,
                              decode_responses=True, socket_timeout=5)
        async with await open_topic("redis://shared-client", client=client) as topic:
            await topic.send(b"\xff binary")
        sub = await open_subscription("redis://g?topic=shared-client&consumer=c", client=client)
        body = (await sub.receive(timeout=2)).body
        await sub.shutdown()
        await client.aclose()
        return body

    assert run(scenario) == b"\xff binary"
    assert raw.xlen("shared-client") == 1
