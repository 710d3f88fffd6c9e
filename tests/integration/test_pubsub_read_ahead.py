"""Messages read ahead (the blocking facade's batch, the subscription's next batch while
the application handles this one) are delivered already: pending in the group, leased,
given back on shutdown, delivered again when the process dies. None is lost, none handed
out twice, and one consumer gets them in ID order. Real redis-server processes only."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
import redis

from redistreams.pubsub import ReceivedMessage, open_subscription, sync
from tests.support.aio import run
from tests.support.processes import terminate
from tests.support.redis_server import RedisServer


def fill(raw: redis.Redis, stream: str, count: int) -> list[str]:
    pipe = raw.pipeline(transaction=False)
    for i in range(count):
        pipe.xadd(stream, {"headers": "null", "body": str(i)})
    ids = [entry_id.decode() for entry_id in pipe.execute()]
    raw.xgroup_create(stream, "g", "0")
    return ids


def in_order(ids: list[str]) -> bool:
    keys = [tuple(int(part) for part in entry_id.split("-")) for entry_id in ids]
    return keys == sorted(keys)


def consume_all(sub_url: str, redis_url: str, count: int, within: float = 20) -> list[ReceivedMessage]:
    """Everything another consumer gets, acknowledged, until `count` arrived (or `within` s)."""
    got: list[ReceivedMessage] = []
    with sync.open_subscription(sub_url, redis_url=redis_url, batch_size=30, reclaim_interval=0.2) as sub:
        deadline = time.monotonic() + within
        while len(got) < count and time.monotonic() < deadline:
            try:
                message = sub.receive(timeout=0.5)
            except TimeoutError:
                continue
            message.ack()
            got.append(message)
        sub.flush()
    return got


def test_blocking_one_at_a_time_delivers_everything_in_order(url: str, raw: redis.Redis) -> None:
    ids = fill(raw, "s", 1000)
    got: list[str] = []
    with sync.open_subscription("redis://g?topic=s&consumer=c", batch_size=64) as sub:
        for message in sub:
            message.ack()
            got.append(message.id)
            if len(got) == len(ids):
                break
        sub.flush()
        assert sub.stats["received"] == 1000 and sub.stats["acked"] == 1000
        with pytest.raises(TimeoutError):
            sub.receive(timeout=0.2)
    assert got == ids
    assert raw.xpending("s", "g")["pending"] == 0


def test_blocking_receive_counts_only_what_was_handed_out(url: str, raw: redis.Redis) -> None:
    fill(raw, "s", 100)
    with sync.open_subscription("redis://g?topic=s&consumer=c", batch_size=40) as sub:
        sub.receive(timeout=5).ack()
        assert sub.stats["received"] == 1  # the other 39 wait in the facade
        assert len(sub.receive_batch(10, timeout=5)) == 10  # served from what was read ahead
        assert sub.stats["received"] == 11


def test_blocking_shutdown_gives_back_what_was_read_ahead(url: str, raw: redis.Redis) -> None:
    ids = fill(raw, "s", 250)
    sub = sync.open_subscription("redis://g?topic=s&consumer=c", batch_size=50)
    first = sub.receive(timeout=5)
    first.ack()
    time.sleep(0.3)  # the next batch read ahead meanwhile
    assert sub.shutdown() == []  # the ack and the give-backs confirmed
    pending = [p["message_id"].decode() for p in raw.xpending_range("s", "g", "-", "+", 1000)]
    # Given back, not acknowledged: the facade's 49, and the batch read ahead if it came.
    assert len(pending) in (49, 99) and pending == ids[1:len(pending) + 1]

    # Another consumer gets every one but the acknowledged one, once, in ID order.
    got = [m.id for m in consume_all("redis://g?topic=s&consumer=d", url, len(ids) - 1)]
    assert got == ids[1:]
    assert raw.xpending("s", "g")["pending"] == 0


_VICTIM = """
import sys, time
from redistreams.pubsub import sync
sub = sync.open_subscription(sys.argv[1], redis_url=sys.argv[2], batch_size=40)
first = sub.receive(timeout=10)
first.ack()
sub.flush()
time.sleep(0.3)  # the next batch read ahead meanwhile
print(first.id, flush=True)
time.sleep(600)
"""


def test_a_blocking_consumer_killed_with_messages_read_ahead(redis_server: RedisServer, raw: redis.Redis) -> None:
    """SIGKILL: nothing is given back; what it held stays pending and another consumer
    reclaims it after autoclaim, in order, with what was never delivered after it."""
    ids = fill(raw, "k", 200)
    victim = subprocess.Popen([sys.executable, "-c", _VICTIM, "redis://g?topic=k&consumer=victim", redis_server.url],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert victim.stdout is not None
        acked = victim.stdout.readline().decode().strip()
        assert acked == ids[0], victim.stderr.read().decode() if victim.stderr else ""
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
    finally:
        terminate(victim)
    pending = raw.xpending_range("k", "g", "-", "+", 1000)
    held = [p["message_id"].decode() for p in pending]
    assert len(held) >= 39 and {p["consumer"] for p in pending} == {b"victim"}
    assert held == ids[1:len(held) + 1]

    time.sleep(0.6)  # idle beyond the heir's autoclaim
    got = [m.id for m in consume_all("redis://g?topic=k&consumer=heir&autoclaim=500ms", redis_server.url,
                                     len(ids) - 1)]
    assert got == ids[1:]  # the read-ahead ones reclaimed first, then the rest: none lost, none twice
    assert raw.xpending("k", "g")["pending"] == 0


def test_leases_cover_messages_read_ahead(url: str, raw: redis.Redis) -> None:
    """A slow handler holds one message; the facade and the read ahead hold more. None of
    them is reclaimed by another consumer while this one lives."""
    ids = fill(raw, "l", 120)
    with sync.open_subscription("redis://g?topic=l&consumer=c&autoclaim=600ms", batch_size=30) as sub:
        first = sub.receive(timeout=5)
        stolen: list[Any] = []
        deadline = time.monotonic() + 2.0  # over three times autoclaim
        while time.monotonic() < deadline:
            stolen += raw.xautoclaim("l", "g", "thief", 600, "0-0", justid=True)  # the IDs claimed
            time.sleep(0.05)
        assert stolen == []
        assert sub.stats["leases_renewed"] >= 30
        first.ack()
        got = [first.id]
        while len(got) < len(ids):
            message = sub.receive(timeout=5)
            message.ack()
            got.append(message.id)
        sub.flush()
    assert got == ids
    assert raw.xpending("l", "g")["pending"] == 0


def test_blocking_receive_timeout_holds_with_a_read_ahead(url: str, raw: redis.Redis) -> None:
    """Exactly one full batch: the read ahead finds nothing, and receive(timeout) still
    returns on time; a message published later arrives."""
    fill(raw, "t", 20)
    with sync.open_subscription("redis://g?topic=t&consumer=c", batch_size=20) as sub:
        for _ in range(20):
            sub.receive(timeout=5).ack()
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="within 0.3s"):
            sub.receive(timeout=0.3)
        assert 0.25 < time.monotonic() - started < 3
        late = raw.xadd("t", {"headers": "null", "body": "late"}).decode()
        assert sub.receive(timeout=5).id == late


def test_acks_from_many_threads(url: str, raw: redis.Redis) -> None:
    fill(raw, "m", 400)
    with sync.open_subscription("redis://g?topic=m&consumer=c", batch_size=100) as sub:
        messages: list[ReceivedMessage] = []
        while len(messages) < 400:
            messages += sub.receive_batch(400 - len(messages), timeout=5)
        workers = [threading.Thread(target=lambda part=messages[i::8]: [m.ack() for m in part]) for i in range(8)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        sub.flush(timeout=10)
        assert sub.stats["acked"] == 400
    assert raw.xpending("m", "g")["pending"] == 0


def test_asyncio_shutdown_gives_back_the_read_ahead(url: str, raw: redis.Redis) -> None:
    ids = fill(raw, "a", 100)

    async def scenario() -> tuple[list[str], int]:
        sub = await open_subscription("redis://g?topic=a&consumer=c", batch_size=20)
        first = await sub.receive(timeout=5)
        first.ack()
        # The read ahead lands in the buffer: 20 handed out (19 once the ack is applied) and
        # 20 read ahead pending. Waited for, not slept for: a loaded machine can take longer
        # than 0.3 s, and pending was then 19 (the ack applied, the read ahead still out).
        while (held := raw.xpending("a", "g")["pending"]) < 39:
            await asyncio.sleep(0.02)
        return await sub.shutdown(), held

    unsent, held = run(scenario)
    assert unsent == [] and held >= 39
    pending = [p["message_id"].decode() for p in raw.xpending_range("a", "g", "-", "+", 1000)]
    assert pending == ids[1:len(pending) + 1]
    got = [m.id for m in consume_all("redis://g?topic=a&consumer=d", url, len(ids) - 1)]
    assert got == ids[1:]


def test_asyncio_receive_cancelled_while_reading_ahead_keeps_its_message(url: str, raw: redis.Redis) -> None:
    """receive() yields once when it starts a read ahead; cancelled right there, the
    message it took goes back to the front. Cancelled during a read, the entries Redis
    delivered are read again from the own pending list. None is skipped (or left to
    autoclaim), none handed out twice."""
    ids = fill(raw, "c", 300)

    async def scenario() -> tuple[list[str], int]:
        sub = await open_subscription("redis://g?topic=c&consumer=c", batch_size=20)
        got: list[str] = []
        cancelled, retry = 0, False
        while len(got) < len(ids):
            task = asyncio.get_running_loop().create_task(sub.receive(timeout=5))
            await asyncio.sleep(0)  # the task runs up to its first await
            if not retry:  # a cancelled receive is tried again uncancelled, so reads complete
                task.cancel()
            try:
                message = await task
            except asyncio.CancelledError:
                cancelled, retry = cancelled + 1, True
                continue
            retry = False
            message.ack()
            got.append(message.id)
        assert await sub.shutdown() == []
        return got, cancelled

    got, cancelled = run(scenario)
    assert got == ids
    assert cancelled >= 15  # each read ahead started (300 / 20) and each read that waited
    assert raw.xpending("c", "g")["pending"] == 0


def test_asyncio_receive_cancelled_mid_read_loses_nothing(url: str, raw: redis.Redis) -> None:
    """Cancelled while its XREADGROUP is on the wire (asyncio.wait_for, a task group): the
    entries Redis delivered with the dropped reply are read again from the own pending
    list at the next receive, not left for autoclaim (30 min by default)."""
    raw.xgroup_create("r", "g", "0", mkstream=True)

    async def scenario() -> tuple[list[str], list[str], int]:
        sub = await open_subscription("redis://g?topic=r&consumer=c", batch_size=50)
        ids: list[str] = []
        got: list[str] = []
        cancelled = 0
        for _ in range(5):
            ids += [raw.xadd("r", {"headers": "null", "body": "x"}).decode() for _ in range(5)]
            task = asyncio.get_running_loop().create_task(sub.receive(timeout=5))
            await asyncio.sleep(0)  # the read is sent; its reply not yet read
            task.cancel()
            try:
                message = await task
                message.ack()
                got.append(message.id)
            except asyncio.CancelledError:
                cancelled += 1
            while len(got) < len(ids):
                message = await sub.receive(timeout=5)
                message.ack()
                got.append(message.id)
        await sub.shutdown()
        return ids, got, cancelled

    ids, got, cancelled = run(scenario)
    assert got == ids and cancelled >= 3
    assert raw.xpending("r", "g")["pending"] == 0
