"""Redis loses everything (FLUSHALL) under a running Python consumer, and the real Go
driver publishes to the topic before the consumer reads again: the Go XADD re-creates
the stream without the group, the Python consumer recognises a reset stream, re-creates
its group from 0 and gets every message published after the reset."""

from __future__ import annotations

import asyncio
import time

import pytest

from redistreams.pubsub import open_subscription
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration

TOPIC = "interop/reset"


@pytest.mark.parametrize("reading", [True, False], ids=["blocked-in-a-read", "between-reads"])
def test_python_consumer_recovers_when_go_publishes_first_after_flushall(
        go_client, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, reading: bool) -> None:
    """blocked-in-a-read: Redis ends the read with UNBLOCKED; between-reads: the next read
    finds no group (NOGROUP) on a stream holding only the Go driver's new entries."""
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    raw = redis_server.client(decode_responses=False)
    after = [(f"after-{i}".encode(), {"n": str(i)}) for i in range(30)]

    async def receive(subscription, count: int, within: float) -> list:
        got: list = []
        deadline = time.monotonic() + within
        while len(got) < count and time.monotonic() < deadline:
            batch = await subscription.receive_batch(count - len(got), timeout=deadline - time.monotonic())
            subscription.ack(*batch)
            got += batch
        return got

    async def scenario() -> tuple[list, list[str], list, dict[str, int]]:
        subscription = await open_subscription(f"redis://billing?topic={TOPIC}&consumer=py-1", block=0.5)
        before_ids = await asyncio.to_thread(go_client.publish, redis_server.url, f"redis://{TOPIC}",
                                             [(b"before", None)] * 3)
        before = await receive(subscription, 3, within=30)
        assert [m.id for m in before] == before_ids
        await subscription.flush()
        if reading:
            receiving = asyncio.create_task(receive(subscription, len(after), within=30))
            # The consumer waits in a blocking read (a fixed 0.2 s was not always enough on a
            # loaded machine, and the case then ran as between-reads).
            deadline = time.monotonic() + 30
            while raw.info("clients")["blocked_clients"] < 1:
                assert time.monotonic() < deadline, "the consumer never blocked in a read"
                await asyncio.sleep(0.01)
        raw.flushall()
        ids = await asyncio.to_thread(go_client.publish, redis_server.url, f"redis://{TOPIC}", after)
        if not reading:
            receiving = asyncio.create_task(receive(subscription, len(after), within=30))
        got = await receiving
        await subscription.shutdown()
        return before, ids, got, dict(subscription.stats)

    before, ids, got, stats = asyncio.run(asyncio.wait_for(scenario(), 90))
    assert [m.id for m in got] == ids  # every message published after the reset, in order, once
    assert [(m.body, m.metadata) for m in got] == after
    assert stats["group_recreated"] == 1
    assert raw.xpending(TOPIC, "billing")["pending"] == 0
