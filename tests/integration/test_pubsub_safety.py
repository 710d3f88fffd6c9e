"""redistreams.pubsub never loses a message: dead-letter copies that fail, replies lost
with the connection, groups lost under a consumer, shutdown while Redis is down. Real
redis-server processes only; connections are cut by a small TCP proxy in this file."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import redis

from redistreams.pubsub import (
    DeadLetterError,
    GroupDeletedError,
    Message,
    open_subscription,
    open_topic,
    sync,
)
from tests.support.aio import run
from tests.support.redis_server import RedisServer


def in_id_order(ids: Any) -> list[str]:
    return sorted(ids, key=lambda i: tuple(int(part) for part in i.split("-")))


async def publish(stream: str, bodies: list[bytes]) -> list[str]:
    async with await open_topic(f"redis://{stream}") as topic:
        return await topic.send_batch([Message(b) for b in bodies])


async def collect(sub: Any, count: int, within: float, ack: bool = True) -> list[Any]:
    """Receive until `count` messages arrived or `within` seconds passed."""
    got: list[Any] = []
    deadline = time.monotonic() + within
    while len(got) < count and time.monotonic() < deadline:
        batch = await sub.receive_batch(count - len(got), timeout=max(0.05, deadline - time.monotonic()))
        if ack:
            sub.ack(*batch)
        got += batch
    return got


# ---------------------------------------------------------------------------------------
# A TCP proxy that loses replies


Match = Callable[[bytes], bool]


class Proxy:
    """Forwards connections to Redis. ``lose_reply(match)``: the next command matching is
    passed on, and as soon as Redis answers, the client's connection is closed without
    the answer (the command ran; its reply is lost). ``hold(match)``: commands matching
    wait until the returned event is set (an ack on its way, not yet applied).
    ``refuse(match)``: connections sending a command matching are closed before it
    reaches Redis (it never ran), until ``refuse(None)``.

    Each Link sends one round trip at a time, so the first bytes back after a forwarded
    command are its reply."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.lost: list[bytes] = []
        self._lose: Match | None = None
        self._once = True
        self._holds: list[tuple[Match, asyncio.Event]] = []
        self._refuse: Match | None = None
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"redis://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/0"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    def lose_reply(self, match: Match, *, once: bool = True) -> None:
        self._lose, self._once = match, once

    def refuse(self, match: Match | None) -> None:
        self._refuse = match

    def hold(self, match: Match) -> asyncio.Event:
        release = asyncio.Event()
        self._holds.append((match, release))
        return release

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.port)
        losing = asyncio.Event()

        async def upstream() -> None:
            while data := await client_r.read(65536):
                if self._refuse is not None and self._refuse(data):
                    return
                for match, release in self._holds:
                    if match(data):
                        await release.wait()
                if self._lose is not None and self._lose(data):
                    if self._once:
                        self._lose = None
                    self.lost.append(data)
                    losing.set()
                server_w.write(data)
                await server_w.drain()

        async def downstream() -> None:
            while data := await server_r.read(65536):
                if losing.is_set():
                    return  # Redis ran the command: drop its reply and the connection
                client_w.write(data)
                await client_w.drain()

        tasks = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except Exception:  # noqa: BLE001 - a test tool: a broken pipe ends the connection too
            pass
        finally:
            for task in tasks:
                task.cancel()
            client_w.close()
            server_w.close()


def read_new(data: bytes) -> bool:
    return b"XREADGROUP" in data and data.endswith(b"$1\r\n>\r\n")


def autoclaim(data: bytes) -> bool:
    return b"XAUTOCLAIM" in data


def script_reclaim(data: bytes) -> bool:
    # The dead-letter claim script taking idle entries of any owner (owner '' ends the call).
    return b"\r\nclaim\r\n" in data and data.endswith(b"$0\r\n\r\n")


def xack(data: bytes) -> bool:
    return b"XACK" in data


def kind(data: bytes) -> str | None:
    """Which reply a command asks for: new entries, the own pending list, reclaim, ack."""
    if read_new(data):
        return "new"
    if autoclaim(data) or script_reclaim(data):
        return "reclaim"
    if b"XREADGROUP" in data or b"\r\nclaim\r\n" in data:
        return "own pending"
    if xack(data):
        return "ack"
    return None


def every_third_of_each_kind() -> Match:
    seen: Counter[str] = Counter()

    def match(data: bytes) -> bool:
        which = kind(data)
        if which is None:
            return False
        seen[which] += 1
        return seen[which] % 3 == 0
    return match


# ---------------------------------------------------------------------------------------
# 1. Dead-lettering copies before it acknowledges


def break_dead_letter(server: RedisServer, raw: redis.Redis, how: str, dlq: str) -> tuple[str, Callable[[], None]]:
    """Make the copy to `dlq` fail; returns the subscriber's REDIS_URL and a repair."""
    if how == "wrong-type":
        raw.set(dlq, "not a stream")
        return server.url, lambda: raw.delete(dlq) and None
    # A consumer account that may not run XADD (consumers need no XADD; the copy does).
    raw.execute_command("ACL", "SETUSER", "consumer", "on", ">pw", "~*", "+@all", "-xadd")
    return (f"redis://consumer:pw@127.0.0.1:{server.port}/0",
            lambda: raw.execute_command("ACL", "SETUSER", "consumer", "+xadd") and None)


@pytest.mark.parametrize("how", ["wrong-type", "no-xadd-permission"])
def test_dead_letter_copy_failure_after_max_deliveries_keeps_the_entry(
        redis_server: RedisServer, raw: redis.Redis, caplog: pytest.LogCaptureFixture, how: str) -> None:
    consumer_url, repair = break_dead_letter(redis_server, raw, how, "pay.dead")
    poison = raw.xadd("pay", {"headers": "null", "body": "poison"}).decode()

    async def scenario() -> dict[str, Any]:
        sub = await open_subscription("redis://g?topic=pay&consumer=c", redis_url=consumer_url,
                                      dead_letter="pay.dead", max_deliveries=2, reclaim_interval=0.05)
        handed = 0
        deadline = time.monotonic() + 3  # ~50 reclaim rounds: every one tries the move again
        while time.monotonic() < deadline:
            for message in await sub.receive_batch(10, timeout=0.2):
                handed += 1
                message.nack()
        failed = dict(sub.stats)
        error = sub.dead_letter_error
        pending = raw.xpending("pay", "g")["pending"]
        repair()
        deadline = time.monotonic() + 30  # the next attempt moves it: ~0.2 s, more on a loaded machine
        while time.monotonic() < deadline and sub.stats["dead_lettered"] == 0:
            await sub.receive_batch(10, timeout=0.2)
        outcome = dict(poison=poison, handed=handed, failed=failed, error=error, pending=pending,
                       after=dict(sub.stats), error_after=sub.dead_letter_error)
        await sub.shutdown()
        return outcome

    with caplog.at_level(logging.ERROR, logger="redistreams.pubsub"):
        out = run(scenario)
    assert out["handed"] == 2  # never handed out past max_deliveries, as if it were fine
    assert out["pending"] == 1  # the failed copy left it pending: not acknowledged, not lost
    assert out["failed"]["dead_letter_failed"] >= 5 and out["failed"]["dead_lettered"] == 0
    assert isinstance(out["error"], DeadLetterError) and list(out["error"].ids) == [out["poison"]]
    expected = "WRONGTYPE" if how == "wrong-type" else "NOPERM this user has no permissions to run the 'xadd' command"
    assert expected in str(out["error"]) and expected in out["error"].ids[out["poison"]]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and "dead-letter" in r.getMessage()]
    assert len(errors) == 1, "a permanent failure is logged once a minute, not on every attempt"
    assert "pay.dead" in errors[0].getMessage() and expected in errors[0].getMessage()
    # Repaired: the next attempt moves it, and only then acknowledges it.
    assert out["after"]["dead_lettered"] == 1 and out["error_after"] is None
    assert raw.xpending("pay", "g")["pending"] == 0
    (copy,) = raw.xrange("pay.dead")
    assert copy[1][b"body"] == b"poison" and copy[1][b"dead-letter-id"] == out["poison"].encode()


@pytest.mark.parametrize("how", ["wrong-type", "no-xadd-permission"])
def test_dead_letter_copy_failure_of_a_malformed_entry_keeps_the_entry(
        redis_server: RedisServer, raw: redis.Redis, caplog: pytest.LogCaptureFixture, how: str) -> None:
    bad = raw.xadd("mixed", {"headers": "not json", "body": "x"}).decode()
    raw.xadd("mixed", {"headers": "null", "body": "fine"})
    consumer_url, repair = break_dead_letter(redis_server, raw, how, "mixed.dead")

    async def scenario() -> dict[str, Any]:
        sub = await open_subscription("redis://g?topic=mixed&consumer=c&autoclaim=300ms", redis_url=consumer_url,
                                      dead_letter="mixed.dead", reclaim_interval=0.05)
        good = await collect(sub, 1, within=2)
        deadline = time.monotonic() + 2  # reclaimed every 300 ms: several more attempts
        while time.monotonic() < deadline:
            good += await sub.receive_batch(10, timeout=0.2)
        await sub.flush()
        outcome = dict(good=[m.body for m in good], stats=dict(sub.stats), error=sub.dead_letter_error,
                       pending=raw.xpending_range("mixed", "g", "-", "+", 10))
        repair()
        deadline = time.monotonic() + 30  # reclaimed 300 ms after the last attempt, more on a loaded machine
        while time.monotonic() < deadline and sub.stats["dead_lettered"] == 0:
            await sub.receive_batch(10, timeout=0.2)
            await sub.flush()
        outcome["after"] = dict(sub.stats)
        await sub.shutdown()
        return outcome

    with caplog.at_level(logging.ERROR, logger="redistreams.pubsub"):
        out = run(scenario)
    assert out["good"] == [b"fine"]
    assert [p["message_id"].decode() for p in out["pending"]] == [bad]  # still pending, not lost
    assert out["stats"]["dead_letter_failed"] >= 2 and out["stats"]["dead_lettered"] == 0
    assert isinstance(out["error"], DeadLetterError) and list(out["error"].ids) == [bad]
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1
    assert out["after"]["dead_lettered"] == 1
    assert raw.xpending("mixed", "g")["pending"] == 0
    assert [e[1][b"dead-letter-id"].decode() for e in raw.xrange("mixed.dead")] == [bad]


# ---------------------------------------------------------------------------------------
# 2. A read whose reply is lost with the connection


@pytest.mark.parametrize("lost", ["xreadgroup-new", "xautoclaim", "dead-letter-claim"])
def test_entries_of_a_lost_read_reply_arrive_promptly(redis_server: RedisServer, raw: redis.Redis,
                                                      lost: str) -> None:
    """Redis ran the read and gave the entries to this consumer; the reply never arrived.
    They are read again from the consumer's pending list, not left for `autoclaim` (30 min)."""
    ids = [raw.xadd("jobs", {"headers": "null", "body": str(i)}).decode() for i in range(20)]
    if lost == "xreadgroup-new":
        raw.xgroup_create("jobs", "g", "0")
    else:
        # Taken by a consumer that died an hour ago: the subscription's reclaim takes them.
        raw.xgroup_create("jobs", "g", "0")
        raw.xreadgroup("g", "dead", {"jobs": ">"})
        raw.xclaim("jobs", "g", "dead", 0, ids, idle=3_600_000, justid=True)

    async def scenario() -> tuple[list[Any], float, list[bytes]]:
        proxy = Proxy(redis_server.port)
        proxy_url = await proxy.start()
        replies = {"xreadgroup-new": read_new, "xautoclaim": autoclaim, "dead-letter-claim": script_reclaim}
        proxy.lose_reply(replies[lost])
        sub = await open_subscription("redis://g?topic=jobs&consumer=c", redis_url=proxy_url,
                                      dead_letter="jobs.dead" if lost == "dead-letter-claim" else None)
        started = time.monotonic()
        got = await collect(sub, 20, within=5)
        elapsed = time.monotonic() - started
        await sub.shutdown()
        await proxy.close()
        return got, elapsed, proxy.lost

    got, elapsed, dropped = run(scenario)
    assert len(dropped) == 1, "the proxy lost one reply"
    assert in_id_order(m.id for m in got) == ids, "every message arrives, once"
    assert elapsed < 3
    assert raw.xpending("jobs", "g")["pending"] == 0


@pytest.mark.parametrize("failure", ["reply lost", "never sent"])
def test_acks_riding_a_read_ahead_whose_trip_fails(redis_server: RedisServer, raw: redis.Redis,
                                                   failure: str) -> None:
    """One message at a time over a backlog: queued acks ride in the trip of the next read
    ahead (XACK + XREADGROUP). That trip fails, after Redis ran it or before it reached
    Redis: the acks are sent again, the entries come (from the own pending list if Redis
    had read them), each message once and in order, and every ack is applied."""
    pipe = raw.pipeline(transaction=False)  # a backlog: reads come back full, so the next is read ahead
    for i in range(1000):
        pipe.xadd("rides", {"headers": "null", "body": str(i)})
    ids = [entry_id.decode() for entry_id in pipe.execute()]
    raw.xgroup_create("rides", "g", "0")

    async def scenario() -> tuple[list[str], list[bytes], int]:
        proxy = Proxy(redis_server.port)
        proxy_url = await proxy.start()
        def first_ride(data: bytes) -> bool:
            if xack(data) and read_new(data) and not proxy.lost:
                proxy.lost.append(data)
                return True
            return False

        if failure == "reply lost":
            proxy.lose_reply(lambda data: xack(data) and read_new(data))
        else:
            proxy.refuse(first_ride)
        sub = await open_subscription("redis://g?topic=rides&consumer=c", redis_url=proxy_url, batch_size=100)
        got: list[str] = []
        async with asyncio.timeout(20):
            while len(got) < len(ids):
                message = await sub.receive()
                message.ack()
                got.append(message.id)
        extra = await sub.receive_batch(10, timeout=0.3)  # anything handed out twice would show here
        await sub.flush()
        unsent = await sub.shutdown()
        await proxy.close()
        return got + [m.id for m in extra], proxy.lost, len(unsent)

    got, lost, unsent = run(scenario)
    assert len(lost) == 1, "the proxy failed one trip holding acks and a read"
    assert got == ids, "every message once, in order"
    assert unsent == 0
    assert raw.xpending("rides", "g")["pending"] == 0


@pytest.mark.parametrize("dead_letter", [None, "q.dead"])
def test_rereading_after_a_lost_reply_skips_messages_held_or_being_acknowledged(
        redis_server: RedisServer, url: str, raw: redis.Redis, dead_letter: str | None) -> None:
    """After the error the own pending list holds messages the application still works on
    and messages whose ack is on its way: neither is handed out a second time."""
    raw.xgroup_create("q", "g", "0", mkstream=True)

    async def scenario() -> tuple[list[str], list[str], list[str], list[Any]]:
        proxy = Proxy(redis_server.port)
        sub = await open_subscription("redis://g?topic=q&consumer=c", redis_url=await proxy.start(),
                                      dead_letter=dead_letter, max_deliveries=2)
        first = await collect(sub, 6, within=3, ack=False)
        release = proxy.hold(xack)
        sub.ack(*first[:3])  # sent, held by the proxy: not applied yet
        await asyncio.sleep(0.1)
        second_ids = await publish("q", [b"b%d" % i for i in range(4)])
        proxy.lose_reply(read_new)
        second = await collect(sub, 4, within=3)
        extra = await sub.receive_batch(10, timeout=0.5)  # anything handed out twice would show here
        release.set()
        sub.ack(*first[3:])
        await sub.flush()
        await sub.shutdown()
        await proxy.close()
        return [m.id for m in first], second_ids, [m.id for m in second], extra

    first_ids = run(lambda: publish("q", [b"a%d" % i for i in range(6)]))
    first, second_ids, second, extra = run(scenario)
    assert first == first_ids
    assert in_id_order(second) == second_ids  # the lost batch arrives, and nothing of the first
    assert extra == []
    assert raw.xpending("q", "g")["pending"] == 0


@pytest.mark.parametrize("dead_letter", [None, "busy.dead"])
def test_no_message_lost_while_replies_keep_getting_lost(redis_server: RedisServer, url: str, raw: redis.Redis,
                                                         dead_letter: str | None) -> None:
    """Every third reply of each kind (new entries, own pending list, reclaim, XACK) is
    lost, while a publisher writes and a consumer dies holding entries."""
    total = 2000
    raw.xgroup_create("busy", "g", "0", mkstream=True)

    def dies_holding(count: int) -> None:
        reply = raw.xreadgroup("g", "dead", {"busy": ">"}, count=count)
        if reply:
            raw.xclaim("busy", "g", "dead", 0, [e[0] for e in reply[0][1]], idle=3_600_000, justid=True)

    async def scenario() -> tuple[list[str], list[str], int]:
        proxy = Proxy(redis_server.port)
        proxy_url = await proxy.start()
        proxy.lose_reply(every_third_of_each_kind(), once=False)
        sub = await open_subscription("redis://g?topic=busy&consumer=c", redis_url=proxy_url,
                                      reclaim_interval=0.2, dead_letter=dead_letter, max_deliveries=100)

        async def produce() -> list[str]:
            ids: list[str] = []
            for start in range(0, total, 50):
                ids += await publish("busy", [b"%d" % i for i in range(start, start + 50)])
                if start % 500 == 0:  # a consumer takes a batch and died with it an hour ago
                    await asyncio.to_thread(dies_holding, 50)
                await asyncio.sleep(0.02)
            return ids

        producing = asyncio.create_task(produce())
        delivered: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (producing.done() and len(set(delivered)) >= total):
            batch = await sub.receive_batch(200, timeout=0.5)
            sub.ack(*batch)
            delivered += [m.id for m in batch]
        await sub.flush()
        await sub.shutdown()
        await proxy.close()
        return await producing, delivered, proxy.lost

    published, delivered, lost = run(scenario)
    assert set(delivered) == set(published), f"{len(set(published) - set(delivered))} messages lost"
    lost_kinds = Counter(kind(data) for data in lost)
    assert set(lost_kinds) == {"new", "own pending", "reclaim", "ack"}, lost_kinds
    lost_replies = len(lost)
    assert raw.xpending("busy", "g")["pending"] == 0
    print(f"published {len(published)}, delivered {len(delivered)} ({len(delivered) - len(set(delivered))} "
          f"duplicates), {lost_replies} replies lost: {dict(lost_kinds)}")


# ---------------------------------------------------------------------------------------
# 3. A group lost under its consumer


def test_flushall_while_receiving_then_a_publisher_writes_first(url: str, raw: redis.Redis) -> None:
    async def scenario() -> tuple[list[bytes], list[bytes], dict[str, int]]:
        sub = await open_subscription("redis://g?topic=reset&consumer=c", block=0.5)
        await publish("reset", [b"old1", b"old2"])
        before = [m.body for m in await collect(sub, 2, within=2)]
        await sub.flush()
        receiving = asyncio.create_task(collect(sub, 5, within=8))
        await asyncio.sleep(0.2)  # blocked in XREADGROUP: FLUSHALL unblocks it with an error
        raw.flushall()
        await publish("reset", [b"new%d" % i for i in range(5)])  # re-creates the stream, no group
        after = [m.body for m in await receiving]
        await sub.shutdown()
        return before, after, dict(sub.stats)

    before, after, stats = run(scenario)
    assert before == [b"old1", b"old2"]
    assert after == [b"new%d" % i for i in range(5)]
    assert stats["group_recreated"] == 1
    assert raw.xpending("reset", "g")["pending"] == 0


def test_restart_without_persistence_then_a_publisher_writes_first(redis_server: RedisServer,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", redis_server.url)

    async def scenario() -> tuple[list[bytes], dict[str, int]]:
        sub = await open_subscription("redis://g?topic=up&consumer=c", block=0.3)
        await publish("up", [b"before"])
        got = [m.body for m in await collect(sub, 1, within=2)]
        await sub.flush()
        redis_server.stop()
        redis_server.start()  # empty: no persistence
        await publish("up", [b"after%d" % i for i in range(5)])  # before the subscriber reads again
        got += [m.body for m in await collect(sub, 5, within=8)]
        await sub.shutdown()
        return got, dict(sub.stats)

    got, stats = run(scenario)
    assert got == [b"before"] + [b"after%d" % i for i in range(5)]
    assert stats["group_recreated"] == 1


def test_reset_stream_trimmed_by_its_publisher_is_still_recognised(url: str, raw: redis.Redis) -> None:
    """A publisher with ?maxlen trims the new stream at once (entries-added > length); it
    counts fewer entries ever added than the old one had: a reset, not a deletion."""
    async def scenario() -> list[bytes]:
        await publish("capped", [b"h%d" % i for i in range(10)])
        sub = await open_subscription("redis://g?topic=capped&consumer=c", block=0.3)
        await collect(sub, 10, within=2)
        await sub.flush()
        raw.flushall()
        async with await open_topic("redis://capped?maxlen=3") as topic:
            await topic.send_batch([b"n%d" % i for i in range(5)])
        got = [m.body for m in await collect(sub, 3, within=5)]
        await sub.shutdown()
        return got

    assert run(scenario) == [b"n2", b"n3", b"n4"]


def test_group_destroyed_while_the_stream_keeps_its_history_is_an_error(url: str, raw: redis.Redis) -> None:
    async def scenario() -> tuple[list[bytes], list[Any], list[BaseException]]:
        await publish("kept", [b"%d" % i for i in range(5)])
        sub = await open_subscription("redis://billing?topic=kept&consumer=c", block=0.3)
        got = await collect(sub, 5, within=2)
        await sub.flush()
        raw.xgroup_destroy("kept", "billing")
        await publish("kept", [b"later"])
        replayed: list[Any] = []
        errors: list[BaseException] = []
        for _ in range(2):  # and again: the subscription stays failed
            try:
                replayed += await sub.receive_batch(10, timeout=3)
            except GroupDeletedError as exc:
                errors.append(exc)
        await sub.shutdown()
        return [m.body for m in got], replayed, errors

    got, replayed, errors = run(scenario)
    assert got == [b"%d" % i for i in range(5)]
    assert replayed == []  # nothing acknowledged is replayed
    assert len(errors) == 2
    text = str(errors[0])
    assert "'kept'" in text and "'billing'" in text
    assert "deleted while stream 'kept' still holds its history" in text
    assert "not re-created, so entries the group already acknowledged are not replayed" in text
    assert raw.xinfo_groups("kept") == []  # not re-created


def test_group_destroyed_on_a_stream_that_never_lost_an_entry_is_an_error(url: str, raw: redis.Redis) -> None:
    """Nothing was ever removed from this stream and it still holds what the subscription
    received: the group was deleted, not reset with the stream."""
    async def scenario() -> type[BaseException] | None:
        sub = await open_subscription("redis://g?topic=young&consumer=c", block=0.3)  # empty stream
        await publish("young", [b"1"])
        await collect(sub, 1, within=2)
        await sub.flush()
        raw.xgroup_destroy("young", "g")
        try:
            await sub.receive_batch(10, timeout=2)
            return None
        except GroupDeletedError as exc:
            return type(exc)
        finally:
            await sub.shutdown()

    assert run(scenario) is GroupDeletedError
    assert raw.xinfo_groups("young") == []


def test_without_xinfo_permission_only_a_missing_key_counts_as_a_reset(redis_server: RedisServer, url: str,
                                                                          raw: redis.Redis) -> None:
    """Without XINFO STREAM a stream that is there cannot be told apart from the one the
    group lived on: a deleted key is still a reset, anything else an error saying why."""
    raw.execute_command("ACL", "SETUSER", "reader", "on", ">pw", "~*", "+@all", "-xinfo")
    consumer_url = f"redis://reader:pw@127.0.0.1:{redis_server.port}/0"

    async def scenario() -> tuple[list[bytes], str]:
        sub = await open_subscription("redis://g?topic=nx&consumer=c", redis_url=consumer_url, block=0.3)
        await publish("nx", [b"1"])
        got = await collect(sub, 1, within=2)
        await sub.flush()
        raw.flushall()  # key gone, nobody publishes: re-created from 0 with MKSTREAM
        assert await sub.receive_batch(10, timeout=0.5) == []
        await publish("nx", [b"2"])
        got += await collect(sub, 1, within=2)
        await sub.flush()
        raw.xgroup_destroy("nx", "g")
        try:
            await sub.receive_batch(10, timeout=2)
            error = ""
        except GroupDeletedError as exc:
            error = str(exc)
        await sub.shutdown()
        return [m.body for m in got], error

    bodies, error = run(scenario)
    assert bodies == [b"1", b"2"]
    assert "whether its stream was reset cannot be told (XINFO STREAM is not permitted)" in error
    assert raw.xinfo_groups("nx") == []


# ---------------------------------------------------------------------------------------
# 4. shutdown while Redis is down


@pytest.mark.parametrize("facade", ["asyncio", "blocking"])
def test_shutdown_while_redis_is_down_is_bounded_and_reports_what_was_not_sent(make_redis: Any,
                                                                               facade: str) -> None:
    server: RedisServer = make_redis("--appendonly", "yes", "--appendfsync", "always", persistence=True)
    raw = server.client(decode_responses=False)
    ids = [raw.xadd("d", {"headers": "null", "body": str(i)}).decode() for i in range(6)]
    raw.xgroup_create("d", "g", "0")
    sub_url = "redis://g?topic=d&consumer=c"

    if facade == "asyncio":
        async def scenario() -> tuple[list[str], float]:
            sub = await open_subscription(sub_url, redis_url=server.url, timeout=2)
            handed = await sub.receive_batch(4, timeout=2)  # 2 more stay buffered
            server.stop()
            sub.ack(*handed[:2])
            sub.nack(handed[2])
            started = time.monotonic()
            unsent = await sub.shutdown(timeout=1.5)
            return unsent, time.monotonic() - started
        unsent, elapsed = run(scenario)
    else:
        sub = sync.open_subscription(sub_url, redis_url=server.url, timeout=2)
        handed = sub.receive_batch(4, timeout=2)
        server.stop()
        sub.ack(*handed[:2])
        sub.nack(handed[2])
        started = time.monotonic()
        unsent = sub.shutdown(timeout=1.5)
        elapsed = time.monotonic() - started

    assert elapsed < 2.5
    # The acks, the nack, and the two buffered messages given back: none reached Redis.
    assert sorted(unsent) == sorted(ids[:3] + ids[4:])
    server.start()
    assert raw.xpending("d", "g")["pending"] == 6  # all still pending after the restart

    async def redelivered() -> list[Any]:
        sub = await open_subscription(sub_url, redis_url=server.url)
        got = await collect(sub, 6, within=3)
        await sub.shutdown()
        return got

    got = run(redelivered)
    assert in_id_order(m.id for m in got) == ids and all(m.redelivered for m in got)
    assert raw.xpending("d", "g")["pending"] == 0


@pytest.mark.parametrize("facade", ["asyncio", "blocking"])
def test_flush_while_redis_is_down_is_bounded_and_the_acks_go_later(make_redis: Any, facade: str) -> None:
    server: RedisServer = make_redis("--appendonly", "yes", "--appendfsync", "always", persistence=True)
    raw = server.client(decode_responses=False)
    for i in range(3):
        raw.xadd("f", {"headers": "null", "body": str(i)})
    raw.xgroup_create("f", "g", "0")
    sub_url = "redis://g?topic=f&consumer=c"

    def timed(flush: Callable[[], Any]) -> tuple[float, str]:
        started = time.monotonic()
        with pytest.raises(TimeoutError) as caught:
            flush()
        return time.monotonic() - started, str(caught.value)

    if facade == "asyncio":
        async def scenario() -> tuple[float, str, float]:
            sub = await open_subscription(sub_url, redis_url=server.url, timeout=1)
            sub.ack(*await sub.receive_batch(3, timeout=2))
            await sub.flush()
            server.stop()
            sub.ack("0-1")  # anything: it cannot reach Redis
            started = time.monotonic()
            try:
                await sub.flush(timeout=0.3)
            except TimeoutError as exc:
                explicit, text = time.monotonic() - started, str(exc)
            started = time.monotonic()
            try:
                await sub.flush()  # the subscription's timeout by default
            except TimeoutError:
                default = time.monotonic() - started
            server.start()
            await sub.flush(timeout=10)  # confirmed once Redis answers
            await sub.shutdown()
            return explicit, text, default
        explicit, text, default = run(scenario)
    else:
        sub = sync.open_subscription(sub_url, redis_url=server.url, timeout=1)
        sub.ack(*sub.receive_batch(3, timeout=2))
        sub.flush()
        server.stop()
        sub.ack("0-1")
        explicit, text = timed(lambda: sub.flush(timeout=0.3))
        default, _ = timed(sub.flush)
        server.start()
        sub.flush(timeout=10)
        assert sub.shutdown() == []
    assert 0.25 < explicit < 1.5 and 0.9 < default < 2.5
    assert "did not confirm 1 acks/nacks within 0.3s" in text and "sent once it answers" in text
    assert raw.xpending("f", "g")["pending"] == 0


def test_an_entry_whose_ack_is_slow_is_not_reclaimed_by_another_consumer(redis_server: RedisServer,
                                                                         raw: redis.Redis) -> None:
    """Its ack keeps failing (never reaching Redis) longer than autoclaim: the lease is
    renewed meanwhile, so no other consumer takes it and handles it a second time."""
    entry_id = raw.xadd("slowack", {"headers": "null", "body": "x"}).decode()
    raw.xgroup_create("slowack", "g", "0")

    async def scenario() -> tuple[list[Any], int]:
        proxy = Proxy(redis_server.port)
        sub = await open_subscription("redis://g?topic=slowack&consumer=c&autoclaim=600ms",
                                      redis_url=await proxy.start())
        (message,) = await sub.receive_batch(1, timeout=2)
        proxy.refuse(xack)
        message.ack()
        stolen: list[Any] = []
        deadline = time.monotonic() + 1.8  # three times autoclaim
        while time.monotonic() < deadline and not stolen:
            reply = await asyncio.to_thread(raw.xautoclaim, "slowack", "g", "thief", 600, "0-0", justid=True)
            stolen += reply  # JUSTID: the claimed IDs
            await asyncio.sleep(0.05)
        proxy.refuse(None)
        await sub.flush(timeout=5)
        await sub.shutdown()
        await proxy.close()
        return stolen, sub.stats["leases_renewed"]

    stolen, renewed = run(scenario)
    assert stolen == [] and renewed >= 3
    assert raw.xpending("slowack", "g")["pending"] == 0 and entry_id


@pytest.mark.parametrize("owner", ["c", "dead"])
def test_a_full_page_ending_at_the_largest_entry_id(raw: redis.Redis, url: str, owner: str) -> None:
    """The dead-letter script pages through pending entries: a page ending at the largest
    ID has nothing after it (Redis refuses '(' in front of it)."""
    largest = "18446744073709551615-18446744073709551615"
    raw.xadd("edge", {"headers": "null", "body": "last"}, id=largest)
    raw.xgroup_create("edge", "g", "0")
    raw.xreadgroup("g", owner, {"edge": ">"})
    if owner == "dead":
        raw.xclaim("edge", "g", "dead", 0, [largest], idle=3_600_000, justid=True)

    async def scenario() -> tuple[list[str], list[Any]]:
        sub = await open_subscription("redis://g?topic=edge&consumer=c", dead_letter="edge.dead", batch_size=1,
                                      reclaim_interval=0.05, block=0.1)
        got = await sub.receive_batch(1, timeout=2)
        sub.ack(*got)
        more = await sub.receive_batch(1, timeout=0.5)  # pages again, from the start
        await sub.shutdown()
        return [m.id for m in got], more

    got, more = run(scenario)
    assert got == [largest] and more == []
    assert raw.xpending("edge", "g")["pending"] == 0
