"""Redis loses its data under provisioned topics and the real Go driver publishes first:
the engine, remembering the registry epoch as the operator's status does, re-creates the
group from 0, and a Go consumer of that group receives every message published after
the reset. The Go driver alone would lose nothing either only because it creates its
group at 0 itself; here the group is redistreams', created before any Go consumer runs."""

from __future__ import annotations

import pytest

from redistreams.engine import Engine, GroupIntent, Memory, Owner, TopicIntent
from redistreams.engine.ownership import EPOCH_FIELD, decode_epoch
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration

TOPIC = Owner("interop", "ns", "orders")


def intents(memory: Memory | None) -> tuple[list[TopicIntent], list[GroupIntent]]:
    return ([TopicIntent("topic/orders", TOPIC, "interop/orders", memory=memory)],
            [GroupIntent("consumergroup/billing", Owner("interop", "ns", "billing"), TOPIC, "interop/orders",
                         "billing", memory=memory)])


@pytest.mark.parametrize("how", ["flushall", "restart"])
def test_group_recovered_from_0_when_go_publishes_first(go_client, make_redis, how: str) -> None:
    server: RedisServer = make_redis()
    engine = Engine(server.client())
    engine.reconcile(*intents(None))
    r = server.client()
    memory = Memory(epoch=decode_epoch(r.hget("redistreams:owners", EPOCH_FIELD)))
    go_client.publish(server.url, "redis://interop/orders", [(b"before", None)] * 2)
    assert len(go_client.receive(server.url, "redis://billing?topic=interop/orders&consumer=go-1", 2)) == 2
    if how == "flushall":
        r.flushall()
    else:
        server.stop()
        server.start()
    after = [(f"after-{i}".encode(), {"n": str(i)}) for i in range(25)]
    ids = go_client.publish(server.url, "redis://interop/orders", after)  # before any repair
    results = engine.reconcile(*intents(memory))
    assert results[1].outcome == "created" and "from 0" in " ".join(results[1].details)
    got = go_client.receive(server.url, "redis://billing?topic=interop/orders&consumer=go-1", len(after))
    assert [m["id"] for m in got] == ids  # all of them, in order: none skipped
    assert [(m["body"], m["metadata"]) for m in got] == after
