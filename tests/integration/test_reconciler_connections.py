"""The operator's connections to Redis: one kept per connection in use, closed once no
Topic uses it (a Secret that now names another URL), on real servers."""

from __future__ import annotations

import asyncio

import redis

from redistreams.controller.reconciler import Reconciler
from tests.support.redis_server import settled


def topic_body() -> dict:
    return {"apiVersion": "redistreams.dev/v1alpha1", "kind": "Topic",
            "metadata": {"name": "orders", "namespace": "team-a", "generation": 1, "uid": "u1"},
            "spec": {"streamName": "orders"}, "status": {}}


def others(client: redis.Redis) -> int:
    """Connections to the server besides this checking one."""
    me = client.client_id()
    return sum(1 for c in client.client_list() if int(c["id"]) != me)


def test_a_connection_no_topic_uses_is_closed_after_a_sweep(make_redis) -> None:  # type: ignore[no-untyped-def]
    first, second = make_redis(), make_redis()
    on_first, on_second = first.client(), second.client()
    reconciler = Reconciler(cluster_id="c", default_url=first.url)
    key = reconciler.remember("Topic", topic_body()).key

    async def sweep() -> None:
        computed, _ = await reconciler.sweep([key], None)
        assert computed[key].outcome.ready, computed[key].outcome

    asyncio.run(sweep())
    assert on_first.exists("orders") and others(on_first) >= 1
    trips_before, _ = reconciler.redis_work()

    # The Topic's Redis is now another one (as when its Secret names a new URL).
    reconciler.default_url = second.url
    asyncio.run(sweep())  # nothing used the first one since the last sweep, nor in this one
    assert on_second.exists("orders")
    assert settled(lambda: others(on_first), 0) == 0, on_first.client_list()
    assert others(on_second) >= 1
    # The closed engine's work still counts (the pass's log and metrics subtract totals).
    assert reconciler.redis_work()[0] > trips_before

    # Used again, the old Redis gets a connection again.
    reconciler.default_url = first.url
    asyncio.run(sweep())
    assert others(on_first) >= 1
