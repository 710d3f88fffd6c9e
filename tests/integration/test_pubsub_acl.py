"""redistreams.pubsub under a Redis user lacking each command the client sends, one at
a time (all the others granted), against a real redis-server.

Whatever is refused: the client neither hangs nor crashes; it either does without the
command or raises a PubSubError naming it; and no message is lost: Redis shows every
published entry acknowledged only after the application got it (or after its copy
reached the dead-letter stream), all others still pending or not yet delivered, and a
consumer with full rights then receives every one of those. The rule sets documented
in the README ("Redis permissions", applications) are proven enough here too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis

from redistreams import acl
from redistreams.pubsub import (
    AcknowledgeError,
    DeadLetterError,
    GroupDeletedError,
    PublishError,
    PubSubError,
    open_subscription,
    open_topic,
)
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration

# The documented rule sets (README "Redis permissions", applications; redistreams/acl.py).
PUBLISHER = list(acl.PUBLISHER.commands)
CONSUMER = list(acl.CONSUMER.commands)
DEAD_LETTER = list(acl.DEAD_LETTER.commands)  # added by dead-lettering
OPTIONAL = list(acl.CONSUMER.optional)  # used when granted

# Commands a scenario cannot do without: refused, the client raises a PubSubError naming
# it (xadd for dead letters: the entry stays pending, sub.dead_letter_error names it).
NEEDED = {
    "plain": {"xreadgroup", "xack", "xclaim", "xautoclaim"},
    "dead-letter": {"xreadgroup", "xack", "xclaim", "xpending", "xrange", "eval", "xadd"},
}

STREAM, GROUP, DLQ = "orders", "billing", "orders.dead"
MAX_DELIVERIES = 3


def run(factory: Callable[[], Awaitable[Any]], within: float = 30) -> Any:
    return asyncio.run(asyncio.wait_for(factory(), within))


def acl_user(admin: redis.Redis, server: RedisServer, name: str, commands: list[str], keys: list[str]) -> str:
    admin.execute_command("ACL", "SETUSER", name, "reset", "on", ">pw", *(f"~{k}" for k in keys), "-@all",
                          *(f"+{c}" for c in commands))
    return f"redis://{name}:pw@127.0.0.1:{server.port}/0"


def key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


@dataclass
class Published:
    ids: list[str]
    dead: list[str]  # taken by a consumer that died with them (idle for an hour)
    poison: str  # among `dead`, delivered MAX_DELIVERIES times already
    malformed: str  # not in the driver's format

    def special(self, dead_letter: bool) -> set[str]:
        """What a dead-lettering consumer moves rather than hands out."""
        return {self.poison, self.malformed} if dead_letter else set()


def prepare(admin: redis.Redis, admin_url: str) -> Published:
    """The group provisioned (as by redistreams), messages published, a dead consumer."""
    admin.xgroup_create(STREAM, GROUP, "0", mkstream=True)

    async def publish() -> list[str]:
        async with await open_topic(f"redis://{STREAM}", redis_url=admin_url) as topic:
            return await topic.send_batch([b"m%d" % i for i in range(12)])

    ids = run(publish)
    malformed = admin.xadd(STREAM, {"junk": "no body"})
    dead = [e[0] for e in admin.xreadgroup(GROUP, "dead", {STREAM: ">"}, count=5)[0][1]]
    admin.xclaim(STREAM, GROUP, "dead", 0, dead, idle=3_600_000, justid=True)
    admin.xclaim(STREAM, GROUP, "dead", 0, [dead[-1]], idle=3_600_000, retrycount=MAX_DELIVERIES, justid=True)
    return Published(ids=[*ids, malformed], dead=dead, poison=dead[-1], malformed=malformed)


@dataclass
class Outcome:
    errors: list[BaseException] = field(default_factory=list)  # raised by the client
    handed: list[str] = field(default_factory=list)  # given to the application, in order
    acked: set[str] = field(default_factory=set)  # acknowledged by the application
    nacked: str | None = None
    unsent: list[str] = field(default_factory=list)  # returned by shutdown
    stats: dict[str, int] = field(default_factory=dict)
    dead_letter_error: DeadLetterError | None = None
    shutdown_took: float = 0.0


async def consume(url: str, published: Published, dead_letter: bool) -> Outcome:
    """A realistic consumer: receives, acks, nacks one message once, holds one past a
    lease renewal, takes over a dead consumer's entries, dead-letters, shuts down."""
    out = Outcome()
    try:
        sub = await open_subscription(f"redis://{GROUP}?topic={STREAM}&consumer=c&autoclaim=600ms", redis_url=url,
                                      dead_letter=DLQ if dead_letter else None, max_deliveries=MAX_DELIVERIES,
                                      block=0.2, timeout=2, reclaim_interval=0.1)
    except PubSubError as exc:
        out.errors.append(exc)
        return out
    wanted = set(published.ids) - published.special(dead_letter)
    held: tuple[Any, float] | None = None
    held_once = False
    failures = 0
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline and not (wanted <= out.acked and held is None):
        if held is not None and time.monotonic() - held[1] > 0.4:  # past a lease renewal
            held[0].ack()
            out.acked.add(held[0].id)
            held = None
        try:
            batch = await sub.receive_batch(4, timeout=0.3)
        except PubSubError as exc:
            out.errors.append(exc)
            failures += 1
            if isinstance(exc, AcknowledgeError) or failures >= 2:
                break
            continue
        failures = 0
        for message in batch:
            out.handed.append(message.id)
            if out.nacked is None:
                out.nacked = message.id
                message.nack()
            elif not held_once:
                held, held_once = (message, time.monotonic()), True
            else:
                message.ack()
                out.acked.add(message.id)
    try:
        await sub.flush(timeout=1)
    except (PubSubError, TimeoutError) as exc:
        out.errors.append(exc)
    out.dead_letter_error = sub.dead_letter_error
    started = time.monotonic()
    out.unsent = await sub.shutdown(timeout=2)
    out.shutdown_took = time.monotonic() - started
    out.stats = dict(sub.stats)
    return out


def check_nothing_lost(admin: redis.Redis, admin_url: str, published: Published, out: Outcome) -> set[str]:
    """Redis' own state: every entry is still in the stream; an acknowledged one reached
    the application or the dead-letter stream; the application's acks reached Redis or
    were reported unsent. Then a consumer with full rights receives all the rest.
    Returns the IDs that were dead-lettered."""
    assert [e[0] for e in admin.xrange(STREAM)] == published.ids
    (info,) = [g for g in admin.xinfo_groups(STREAM) if g["name"] == GROUP]
    last = key(info["last-delivered-id"])
    pending = {p["message_id"] for p in admin.xpending_range(STREAM, GROUP, "-", "+", 1000)}
    acked_in_redis = {i for i in published.ids if key(i) <= last and i not in pending}
    copies = {e[1]["dead-letter-id"]: e[1] for e in admin.xrange(DLQ)} if admin.exists(DLQ) else {}
    assert len(copies) == admin.xlen(DLQ), "an entry was copied twice"
    dead_lettered = set(copies)
    assert acked_in_redis <= out.acked | dead_lettered, "acknowledged without reaching the application"
    assert out.acked <= acked_in_redis | set(out.unsent), "an ack neither confirmed nor reported unsent"
    for entry_id, copy in copies.items():
        (original,) = admin.xrange(STREAM, entry_id, entry_id)
        assert {k: v for k, v in copy.items() if not k.startswith("dead-letter-")} == original[1]

    async def recover() -> set[str]:
        sub = await open_subscription(f"redis://{GROUP}?topic={STREAM}&consumer=c&autoclaim=600ms",
                                      redis_url=admin_url, block=0.2, reclaim_interval=0.1)
        rest = set(published.ids) - acked_in_redis
        got: set[str] = set()
        deadline = time.monotonic() + 3
        while not rest <= got and time.monotonic() < deadline:
            batch = await sub.receive_batch(100, timeout=0.3)
            sub.ack(*batch)
            got.update(m.id for m in batch)
        await sub.shutdown()
        return rest - got

    assert run(recover) == set(), "not delivered to a consumer with full rights"
    return dead_lettered


def check_refusal_named(out: Outcome, missing: str) -> None:
    for error in out.errors:
        assert isinstance(error, PubSubError), repr(error)  # no TimeoutError, no raw redis error
        assert f"'{missing}'" in str(error), str(error)
    if out.dead_letter_error is not None:
        assert f"'{missing}'" in str(out.dead_letter_error), str(out.dead_letter_error)


def granted(dead_letter: bool) -> list[str]:
    return list(dict.fromkeys(CONSUMER + OPTIONAL + (DEAD_LETTER if dead_letter else [])))


@pytest.mark.slow
@pytest.mark.parametrize("missing", [pytest.param((mode, command), id=f"{mode}-{command}")
                                     for mode in ("plain", "dead-letter")
                                     for command in granted(mode == "dead-letter")])
def test_consumer_without_one_command(redis_server: RedisServer, missing: tuple[str, str]) -> None:
    mode, command = missing
    dead_letter = mode == "dead-letter"
    admin = redis_server.client()
    published = prepare(admin, redis_server.url)
    url = acl_user(admin, redis_server, "app", [c for c in granted(dead_letter) if c != command], [STREAM, DLQ])

    started = time.monotonic()
    out = run(lambda: consume(url, published, dead_letter))
    assert time.monotonic() - started < 10 and out.shutdown_took < 2.5, "bounded, whatever is refused"
    check_refusal_named(out, command)
    dead_lettered = check_nothing_lost(admin, redis_server.url, published, out)
    print(f"without {command} ({mode}): {len(set(out.handed))} handed out, {len(out.acked)} acked, "
          f"{len(dead_lettered)} dead-lettered, {len(out.unsent)} unsent; {out.errors[:1] or out.dead_letter_error}")

    if command not in NEEDED[mode]:
        assert out.errors == [] and out.dead_letter_error is None and out.unsent == []
        assert out.acked == set(published.ids) - published.special(dead_letter)
        assert dead_lettered == published.special(dead_letter)
        assert out.handed.count(out.nacked) == 2  # given back, then received again
        assert out.stats["reclaimed"] >= len(published.dead) - dead_letter and out.stats["leases_renewed"] >= 1
        return
    assert out.errors or out.dead_letter_error, f"{command} refused, yet nothing said so"
    if command == "xadd":  # dead-letter copies refused: those entries stay pending, the rest flows
        assert dead_lettered == set() and out.errors == []
        assert set(out.dead_letter_error.ids) <= published.special(True)
        assert out.acked == set(published.ids) - published.special(True)
    if command == "xack" or (command, mode) == ("xclaim", "plain"):  # refused after messages were handed out
        assert any(isinstance(e, AcknowledgeError) for e in out.errors)
    if command == "xack":
        assert out.acked and set(out.unsent) >= out.acked  # refused acks are reported, not dropped


def test_dead_letter_key_not_granted_is_named(redis_server: RedisServer) -> None:
    admin = redis_server.client()
    published = prepare(admin, redis_server.url)
    url = acl_user(admin, redis_server, "app", CONSUMER + DEAD_LETTER, [STREAM])  # not orders.dead

    out = run(lambda: consume(url, published, dead_letter=True))
    assert out.errors and all(isinstance(e, PubSubError) and "'orders.dead'" in str(e) for e in out.errors)
    assert check_nothing_lost(admin, redis_server.url, published, out) == set()


@pytest.mark.parametrize("missing", ["xadd", "client|setname"])
def test_publisher_without_one_command(redis_server: RedisServer, missing: str) -> None:
    admin = redis_server.client()
    url = acl_user(admin, redis_server, "pub", [c for c in PUBLISHER + ["client|setname"] if c != missing],
                   [STREAM])

    async def publish() -> tuple[list[str | None], list[BaseException]]:
        ids: list[str | None] = []
        errors: list[BaseException] = []
        async with await open_topic(f"redis://{STREAM}", redis_url=url, retry_for=1) as topic:
            for send in (lambda: topic.send_batch([b"a", b"b", b"c"]), lambda: topic.send(b"d")):
                try:
                    result = await send()
                    ids += result if isinstance(result, list) else [result]
                except PublishError as exc:
                    errors.append(exc)
                    ids += exc.ids
        return ids, errors

    ids, errors = run(publish, within=10)
    stored = [e[0] for e in admin.xrange(STREAM)] if admin.exists(STREAM) else []
    assert [i for i in ids if i is not None] == stored  # every ID handed back is stored
    if missing == "xadd":
        assert stored == [] and len(errors) == 2
        assert all(f"'{missing}'" in str(e) for e in errors)
    else:
        assert len(stored) == 4 and errors == []


def test_a_database_other_than_0_needs_select(redis_server: RedisServer) -> None:
    """redis-py sends SELECT while connecting when the URL names a database: refused, the
    client says so instead of leaking a raw redis error."""
    admin = redis_server.client()
    url = acl_user(admin, redis_server, "app", PUBLISHER + CONSUMER, [STREAM]).replace("/0", "/1")

    async def scenario() -> list[BaseException]:
        errors: list[BaseException] = []
        try:
            async with await open_topic(f"redis://{STREAM}", redis_url=url, retry_for=1) as topic:
                await topic.send(b"x")
        except PubSubError as exc:
            errors.append(exc)
        try:
            sub = await open_subscription(f"redis://{GROUP}?topic={STREAM}&consumer=c", redis_url=url)
            await sub.shutdown()
        except PubSubError as exc:
            errors.append(exc)
        return errors

    errors = run(scenario, within=10)
    assert [type(e) for e in errors] == [PublishError, PubSubError]
    assert all("'select'" in str(e) for e in errors), errors
    admin.execute_command("ACL", "SETUSER", "app", "+select")
    assert run(scenario, within=10) == []


@pytest.mark.parametrize("dead_letter", [False, True], ids=["plain", "dead-letter"])
def test_documented_rules_are_enough(redis_server: RedisServer, dead_letter: bool) -> None:
    """Exactly the documented rules, keys limited to the topic (and its dead-letter
    stream): publish, consume (everything in the scenario above), tell a destroyed group
    from a reset stream, and wait for a group re-created after a reset."""
    admin = redis_server.client()
    published = prepare(admin, redis_server.url)
    pub_url = acl_user(admin, redis_server, "pub", PUBLISHER, [STREAM])
    sub_url = acl_user(admin, redis_server, "app", CONSUMER + (DEAD_LETTER if dead_letter else []),
                       [STREAM, DLQ] if dead_letter else [STREAM])

    out = run(lambda: consume(sub_url, published, dead_letter))
    assert out.errors == [] and out.dead_letter_error is None and out.unsent == []
    assert out.acked == set(published.ids) - published.special(dead_letter)
    assert out.stats["reclaimed"] >= len(published.dead) - dead_letter and out.stats["leases_renewed"] >= 1
    assert check_nothing_lost(admin, redis_server.url, published, out) == published.special(dead_letter)

    async def lifecycle() -> tuple[list[bytes], str]:
        sub = await open_subscription(f"redis://{GROUP}?topic={STREAM}&consumer=c", redis_url=sub_url, block=0.2,
                                      dead_letter=DLQ if dead_letter else None)
        async with await open_topic(f"redis://{STREAM}", redis_url=pub_url) as topic:
            await topic.send(b"before")
            got = await sub.receive_batch(10, timeout=2)
            sub.ack(*got)
            await sub.flush()
            admin.flushall()  # reset: the publisher writes first, the group is gone
            await topic.send_batch([b"after1", b"after2"])
            assert await sub.receive_batch(10, timeout=0.5) == []  # not allowed to create it: waits
            admin.xgroup_create(STREAM, GROUP, "0")  # as redistreams re-creates it, from 0
            deadline = time.monotonic() + 3
            while len(got) < 3 and time.monotonic() < deadline:
                batch = await sub.receive_batch(10, timeout=0.3)
                sub.ack(*batch)
                got += batch
            await sub.flush()
            admin.xgroup_destroy(STREAM, GROUP)  # on purpose, the stream keeps its history
            await topic.send(b"later")
        try:
            await sub.receive_batch(10, timeout=2)
            error = ""
        except GroupDeletedError as exc:
            error = str(exc)
        await sub.shutdown()
        return [m.body for m in got], error

    bodies, error = run(lifecycle)
    assert bodies == [b"before", b"after1", b"after2"]
    assert "still holds its history" in error  # told apart thanks to XINFO STREAM
