"""The blocking Topic (``redistreams.pubsub.sync``) sends in the caller's thread with the
asyncio Topic's core: same entries, same errors, same retries, any number of threads."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError

from redistreams.pubsub import Message, PublishError, PubSubError, open_topic, sync
from tests.support.redis_cluster import RedisCluster
from tests.support.redis_server import RedisServer, settled
from tests.support.tls import TLSRedisServer

MESSAGES = [
    Message(b"plain", {}),
    Message(b"\x00\xff binary \r\n", {"kind": "greeting", "b": "<&>", "unicode": "caf\u00e9 \u2028 \U0001f600"}),
    b"bytes body",
    "str body \u00e9",
    Message(b"", {"empty": ""}),
]


@pytest.fixture
def no_hop(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Records every hop to the facade's event loop (the blocking path must make none)."""
    hops: list[str] = []
    real = sync._run

    def recording(coroutine: Any) -> Any:
        hops.append(coroutine.__qualname__)
        return real(coroutine)

    monkeypatch.setattr(sync, "_run", recording)
    yield hops


def opened(url: str, redis_url: str, **options: Any) -> sync.Topic:
    """A blocking topic past its first send (which finds out whether the server is a
    cluster node, on the asyncio Topic): later sends are the blocking path's."""
    topic = sync.open_topic(url, redis_url=redis_url, **options)
    topic.send_batch([b"first"])
    return topic


def publishers(raw: redis.Redis) -> list[dict[str, Any]]:
    """The publisher connections the server still lists."""
    return [c for c in raw.client_list() if c["name"] == "redistreams-pub"]


def fields(raw: redis.Redis, stream: str) -> list[list[bytes]]:
    """Each entry's field list exactly as Redis returns it (XRANGE), without its ID."""
    connection = raw.connection_pool.get_connection()
    try:
        connection.send_command("XRANGE", stream, "-", "+")
        reply = connection.read_response()  # as sent by Redis: no reply callback reordering fields
    finally:
        raw.connection_pool.release(connection)
    return [entry[1] for entry in reply]


def test_entries_are_byte_identical_to_the_asyncio_topics(redis_server: RedisServer, raw: redis.Redis,
                                                         no_hop: list[str]) -> None:
    async def publish() -> None:
        async with await open_topic("redis://async?maxlen=4", redis_url=redis_server.url) as topic:
            await topic.send_batch([b"first"])
            for message in MESSAGES[:2]:
                await topic.send(message)
            await topic.send_batch(MESSAGES[2:])

    asyncio.run(publish())
    topic = opened("redis://blocking?maxlen=4", redis_server.url)
    no_hop.clear()
    ids = [topic.send(message) for message in MESSAGES[:2]] + topic.send_batch(MESSAGES[2:])
    assert no_hop == []  # made in this thread, not on the facade's loop
    topic.shutdown()

    assert fields(raw, "blocking") == fields(raw, "async")  # the same MAXLEN trimming, the same bytes
    assert [e[0].decode() for e in raw.xrange("blocking")] == ids[-4:]
    assert fields(raw, "blocking")[-1] == [b"headers", b'{"empty":""}', b"body", b""]
    assert fields(raw, "blocking")[0] == [b"headers", b'{"b":"\\u003c\\u0026\\u003e","kind":"greeting",'
                                          b'"unicode":"caf\xc3\xa9 \\u2028 \xf0\x9f\x98\x80"}',
                                          b"body", b"\x00\xff binary \r\n"]


def test_eight_threads_keep_their_order_and_lose_nothing(redis_server: RedisServer, raw: redis.Redis,
                                                         no_hop: list[str]) -> None:
    threads, each = 8, 300
    topic = opened("redis://many", redis_server.url)
    no_hop.clear()
    returned: dict[int, list[str]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def sender(number: int) -> None:
        try:
            start.wait()
            ids = [topic.send(Message(f"{number}:{i}".encode(), {"t": str(number)})) for i in range(each - 50)]
            ids += topic.send_batch([f"{number}:{i}" for i in range(each - 50, each)])
            returned[number] = ids
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    workers = [threading.Thread(target=sender, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert errors == [] and no_hop == []
    entries = raw.xrange("many")[1:]  # after "first"
    assert len(entries) == threads * each
    by_thread: dict[int, list[tuple[str, int]]] = {}
    for entry_id, entry in entries:
        number, index = entry[b"body"].decode().split(":")
        by_thread.setdefault(int(number), []).append((entry_id.decode(), int(index)))
    for number in range(threads):
        assert [index for _, index in by_thread[number]] == list(range(each))  # no loss, no reordering
        assert [entry_id for entry_id, _ in by_thread[number]] == returned[number]  # the IDs handed back
    topic.shutdown()
    assert settled(lambda: publishers(raw), []) == []  # every connection closed


def test_a_restart_mid_send_is_retried_as_the_asyncio_topic_retries(make_redis: Any, no_hop: list[str]) -> None:
    server = make_redis(persistence=True)
    topic = opened("redis://up", server.url, retry_for=30)
    no_hop.clear()
    before = topic.send(b"before")
    server.stop()
    outcome: list[Any] = []
    during = threading.Thread(target=lambda: outcome.append(topic.send(b"during")))
    during.start()
    time.sleep(1.0)  # the send is failing and retrying meanwhile
    assert outcome == []
    server.start()
    during.join(30)
    after = topic.send(b"after")
    topic.shutdown()
    entries = server.client().xrange("up")
    assert [e[1]["body"] for e in entries] == ["first", "before", "during", "after"]
    assert [e[0] for e in entries][1:] == [before, *outcome, after]
    assert no_hop == ["Topic.shutdown"]


@pytest.mark.parametrize("path", ["asyncio", "blocking"])
def test_a_server_down_longer_than_retry_for_raises_the_same_error(make_redis: Any, path: str) -> None:
    server = make_redis(persistence=True)
    spent: list[float] = []

    def during_outage(send: Callable[[], Any]) -> BaseException:
        server.stop()
        started = time.monotonic()
        try:
            send()
        except BaseException as exc:  # noqa: BLE001 - returned to compare
            return exc
        finally:
            spent.append(time.monotonic() - started)
            server.start()
        raise AssertionError("sent while the server was down")

    if path == "blocking":
        topic = opened("redis://down", server.url, retry_for=1)
        error = during_outage(lambda: topic.send(b"lost"))
        topic.send(b"back")  # reconnects
        topic.shutdown()
    else:
        async def scenario() -> BaseException:
            async with await open_topic("redis://down", redis_url=server.url, retry_for=1) as topic:
                await topic.send_batch([b"first"])
                loop = asyncio.get_running_loop()
                error = await loop.run_in_executor(None, during_outage, lambda: asyncio.run_coroutine_threadsafe(
                    topic.send(b"lost"), loop).result())
                await topic.send(b"back")
                return error

        error = asyncio.run(scenario())
    assert type(error) is RedisConnectionError and "127.0.0.1" in str(error)
    assert 1.0 <= spent[0] < 15  # retried for retry_for, then gave up
    assert [e[1]["body"] for e in server.client().xrange("down")] == ["first", "back"]


@pytest.mark.parametrize("path", ["asyncio", "blocking"])
def test_noperm_on_xadd_is_the_same_publish_error(redis_server: RedisServer, path: str) -> None:
    admin = redis_server.client()
    admin.execute_command("ACL", "SETUSER", "pub", "reset", "on", ">pw", "~orders", "-@all", "+info", "+ping")
    url = f"redis://pub:pw@127.0.0.1:{redis_server.port}/0"

    def attempts(send: Callable[[Any], Any]) -> list[PublishError]:
        errors = []
        for message in (b"one", [b"a", b"b"]):
            with pytest.raises(PublishError) as caught:
                send(message)
            errors.append(caught.value)
        return errors

    if path == "blocking":
        with sync.open_topic("redis://orders", redis_url=url, retry_for=1) as topic:
            errors = attempts(lambda m: topic.send_batch(m) if isinstance(m, list) else topic.send(m))
            errors += attempts(lambda m: topic.send_batch(m) if isinstance(m, list) else topic.send(m))
    else:
        async def scenario() -> list[PublishError]:
            async with await open_topic("redis://orders", redis_url=url, retry_for=1) as topic:
                loop = asyncio.get_running_loop()

                def send(m: Any) -> Any:
                    coroutine = topic.send_batch(m) if isinstance(m, list) else topic.send(m)
                    return asyncio.run_coroutine_threadsafe(coroutine, loop).result()

                return await loop.run_in_executor(None, lambda: attempts(send) + attempts(send))

        errors = asyncio.run(scenario())
    assert [e.ids for e in errors] == [[None], [None, None]] * 2
    assert all("no permissions to run the 'xadd' command" in str(e) for e in errors)  # NOPERM
    assert [str(e).split(":")[1] for e in errors] == [" 1 of 1 messages not stored", " 2 of 2 messages not stored"] * 2
    assert not admin.exists("orders")


@pytest.mark.parametrize("path", ["asyncio", "blocking"])
def test_a_refused_select_stores_nothing_and_says_so(redis_server: RedisServer, raw: redis.Redis, path: str,
                                                     no_hop: list[str]) -> None:
    """An application's own client (``client=``) on database 1, for a user not allowed SELECT:
    refused while connecting, before any XADD was sent."""
    import redis.asyncio as aredis

    admin = redis_server.client()
    admin.execute_command("ACL", "SETUSER", "app", "reset", "on", ">pw", "~*", "-@all", "+xadd", "+ping")
    client = aredis.Redis(host="127.0.0.1", port=redis_server.port, username="app", password="pw", db=1)
    if path == "blocking":
        topic = sync.open_topic("redis://orders", client=client, retry_for=1)
        no_hop.clear()
        errors = []
        for send in (lambda: topic.send(b"x"), lambda: topic.send_batch([b"y", b"z"])):
            with pytest.raises(PublishError) as caught:
                send()
            errors.append(caught.value)
        assert no_hop == []  # an application's standalone client: no cluster to find out about
        topic.shutdown()
    else:
        async def scenario() -> list[PublishError]:
            errors = []
            async with await open_topic("redis://orders", client=client, retry_for=1) as topic:
                for send in (lambda: topic.send(b"x"), lambda: topic.send_batch([b"y", b"z"])):
                    with pytest.raises(PublishError) as caught:
                        await send()
                    errors.append(caught.value)
            return errors

        errors = asyncio.run(scenario())
    assert [e.ids for e in errors] == [[None], [None, None]]
    assert all("no message stored" in str(e) and "'select'" in str(e) for e in errors)
    assert raw.dbsize() == 0


def test_replicas_that_do_not_confirm_are_reported(redis_server: RedisServer, raw: redis.Redis,
                                                   no_hop: list[str]) -> None:
    topic = sync.open_topic("redis://durable", redis_url=redis_server.url, replicas=1, timeout=0.2)
    with pytest.raises(PublishError):
        topic.send(b"first")  # the asyncio Topic's answer
    no_hop.clear()
    with pytest.raises(PublishError) as caught:
        topic.send(b"stored")
    assert no_hop == []
    topic.shutdown()
    assert "only 0 of 1 replicas" in str(caught.value)
    assert caught.value.ids == [raw.xrange("durable")[-1][0].decode()]  # stored on the master all the same


def test_tls_and_unix_socket_urls(mtls: TLSRedisServer, redis_server: RedisServer, raw: redis.Redis,
                                  no_hop: list[str]) -> None:
    for server_url, client in ((mtls.url, mtls.client()), (f"unix://{redis_server.unix_socket}?db=0", raw)):
        topic = opened("redis://secure", server_url)
        no_hop.clear()
        ids = [topic.send(b"one"), *topic.send_batch([b"two", b"three"])]
        assert no_hop == []
        topic.shutdown()
        assert [e[0].decode() if isinstance(e[0], bytes) else e[0] for e in client.xrange("secure")][1:] == ids


def test_cluster_urls_route_by_slot_from_the_calling_thread(redis_cluster: RedisCluster, no_hop: list[str]) -> None:
    client = redis_cluster.client()
    for server_url in (redis_cluster.url, redis_cluster.plain_url):
        for stream in ("orders", "payments", "{user1}.events"):
            topic = opened(f"redis://{stream}", server_url)  # finds out and loads the slot map
            no_hop.clear()
            ids = [topic.send(b"one"), *topic.send_batch([b"two", b"three"])]
            assert no_hop == []  # sent to the slot's master from this thread
            topic.shutdown()
            assert [e[0] for e in client.xrange(stream)][-3:] == ids


def test_a_slot_migrated_while_threads_send(redis_cluster: RedisCluster, no_hop: list[str]) -> None:
    """MOVED and ASK while 4 threads send: the redirected commands are sent again (on the
    asyncio Topic's routed link), nothing lost, each thread's order kept."""
    stream = "orders"
    source = redis_cluster.master_for(stream)
    target = next(m for m in redis_cluster.masters() if m is not source)
    slot = redis.crc.key_slot(stream.encode())
    topic = opened(f"redis://{stream}", redis_cluster.url, retry_for=15)
    acknowledged: dict[int, list[tuple[str, str]]] = {n: [] for n in range(4)}
    errors: list[BaseException] = []
    stop = threading.Event()

    def sender(number: int) -> None:
        i = 0
        try:
            while not stop.is_set():
                body = f"{number}:{i}"
                ids = [topic.send(body)] if i % 3 else topic.send_batch([body, f"{number}:{i + 1}"])
                acknowledged[number] += list(zip(ids, [body, f"{number}:{i + 1}"]))
                i += 1 if i % 3 else 2
                time.sleep(0.002)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    workers = [threading.Thread(target=sender, args=(n,)) for n in range(4)]
    for worker in workers:
        worker.start()
    time.sleep(0.5)
    migration = redis_cluster.begin_migration(slot, target)
    time.sleep(0.3)  # the slot MIGRATING: ASK for keys not there yet (none: the stream is there)
    migration.move_keys()
    time.sleep(0.3)  # the key IMPORTED on the target: ASK
    migration.finish()  # MOVED from then on
    # Each thread past 20 sends and past a send after the migration (a stale slot map's
    # MOVED): waited for, as a fixed 0.5 s left a loaded machine's threads short of either.
    at_finish = {number: len(sent) for number, sent in acknowledged.items()}
    deadline = time.monotonic() + 30
    while (not errors and time.monotonic() < deadline
           and any(len(sent) <= max(20, at_finish[number]) for number, sent in acknowledged.items())):
        time.sleep(0.05)
    stop.set()
    for worker in workers:
        worker.join(60)
    topic.shutdown()
    assert errors == []
    assert redis_cluster.master_for(stream) is target
    stored = [(entry_id, entry["body"]) for entry_id, entry in redis_cluster.client().xrange(stream)]
    assert len(set(stored)) == len(stored)  # no duplicate (none of the redirected ones ran twice)
    for number, sent in acknowledged.items():
        assert len(sent) > 20
        assert [pair for pair in stored if pair[1].startswith(f"{number}:")] == sent  # none lost, in order
    assert "RoutedLink.call" in no_hop  # the redirected ones, sent again there


@pytest.mark.parametrize("path", ["asyncio", "blocking"])
def test_sending_after_shutdown_is_refused(redis_server: RedisServer, raw: redis.Redis, path: str) -> None:
    if path == "blocking":
        topic = opened("redis://closed", redis_server.url)
        topic.send(b"kept")
        topic.shutdown()
        with pytest.raises(PubSubError, match="topic closed is shut down"):
            topic.send(b"late")
        with pytest.raises(PubSubError, match="topic closed is shut down"):
            topic.send_batch([b"late"])
    else:
        async def scenario() -> None:
            topic = await open_topic("redis://closed", redis_url=redis_server.url)
            await topic.send_batch([b"first"])
            await topic.send(b"kept")
            await topic.shutdown()
            with pytest.raises(PubSubError, match="topic closed is shut down"):
                await topic.send(b"late")
            with pytest.raises(PubSubError, match="topic closed is shut down"):
                await topic.send_batch([b"late"])

        asyncio.run(scenario())
    assert [e[1][b"body"] for e in raw.xrange("closed")] == [b"first", b"kept"]
    assert settled(lambda: publishers(raw), []) == []


def test_sentinel_url_follows_a_failover(no_hop: list[str]) -> None:
    """Sends before a failover are on the new master, in order, and later sends go to it
    (the Sentinel pool closes connections to a demoted master: no writing on to it)."""
    from tests.support.redis_sentinel import SentinelGroup

    group = SentinelGroup().start()
    try:
        topic = sync.open_topic("redis://events", redis_url=group.url, retry_for=30)
        before = [topic.send(str(n)) for n in range(100)]
        new = group.failover()
        # ~1.5 s here (the sentinels agreeing, then the pool's recheck); a connection held on
        # writes to the old master until the sentinels demote it, ~10 s, all of it lost then.
        deadline = time.monotonic() + 7
        while not new.client().exists("events") or new.client().xlen("events") == len(before):
            assert time.monotonic() < deadline, "still sending to the old master 7 s after the failover"
            topic.send(b"after")
            time.sleep(0.01)
        later = [topic.send(str(n)) for n in range(100, 150)]
        topic.shutdown()
        entries = new.client().xrange("events")
    finally:
        group.close()
    assert no_hop == ["open_topic", "Topic.shutdown"]  # the Sentinel master's own connections, in this thread
    assert [e[0] for e in entries][:100] == before
    assert [(e[0], e[1]["body"]) for e in entries][-50:] == list(zip(later, map(str, range(100, 150))))


def test_a_cluster_master_killed_while_threads_send(redis_cluster: RedisCluster) -> None:
    """The stream's master killed (a replica promoted) while 2 threads send with replicas=1:
    every send acknowledged is on the new master, in each thread's order."""
    stream = "orders"
    victim = redis_cluster.master_for(stream)
    topic = opened(f"redis://{stream}", redis_cluster.url, retry_for=20, replicas=1, timeout=3)
    acknowledged: dict[int, list[tuple[str, str]]] = {0: [], 1: []}
    refused: list[PublishError] = []  # not acknowledged (WAIT short): may or may not be stored
    stop = threading.Event()

    errors: list[BaseException] = []

    def sender(number: int) -> None:
        i = 0
        while not stop.is_set():
            body = f"{number}:{i}"
            try:
                acknowledged[number].append((topic.send(body), body))
            except PublishError as exc:
                refused.append(exc)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
                return
            i += 1
            time.sleep(0.005)

    workers = [threading.Thread(target=sender, args=(n,)) for n in range(2)]
    for worker in workers:
        worker.start()
    time.sleep(0.5)
    redis_cluster.fail_over(victim, restart=True)  # back as a replica: WAIT 1 can be met again
    after_failover = sum(map(len, acknowledged.values()))
    deadline = time.monotonic() + 30  # retries back off up to 2 s
    while sum(map(len, acknowledged.values())) < after_failover + 40 and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    for worker in workers:
        worker.join(60)
    topic.shutdown()
    assert errors == []
    assert redis_cluster.master_for(stream) is not victim
    assert sum(map(len, acknowledged.values())) >= after_failover + 40  # sent on after the failover
    stored = [(entry_id, entry["body"]) for entry_id, entry in redis_cluster.client().xrange(stream)]
    for number, sent in acknowledged.items():
        mine = [pair for pair in stored if pair[1].startswith(f"{number}:")]
        assert set(sent) <= set(mine), sorted(set(sent) - set(mine))[:5]  # nothing acknowledged lost
        assert [pair for pair in mine if pair in set(sent)] == sent  # in order
