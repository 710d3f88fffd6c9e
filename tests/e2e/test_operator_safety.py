"""The operator as an unlucky operator and a hostile tenant meet it, on a real
kube-apiserver and real redis-servers: Redis losing its data under publishers, groups
deleted by hand, deletions next to groups it must not touch, Secrets that are not Redis
URLs, names that are not UTF-8. Each test counts messages: none may be lost.

The resync runs only every 5 minutes here: whatever is repaired is repaired by the
observation pass (every second), as the contract says."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import generate_latest

from tests.support.controlplane import Cluster, wait_for
from tests.support.kube import API, condition, create, events, get, new_namespace, reasons, run_operator, wait_ready
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def operator(cluster: Cluster, redis: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    from redistreams.controller.runtime import OperatorConfig

    config = OperatorConfig(cluster_id="e2e-safety", redis_url=redis.url, resync_interval=300.0, status_interval=1.0,
                            retry_delay=1.0, observe_interval=1.0)
    yield from run_operator(cluster, tmp_path_factory, config)


@pytest.fixture
def ns(cluster: Cluster, operator: None) -> str:
    return new_namespace(cluster, "s")


def publish(r: Any, key: str, count: int, tag: str) -> list[str]:
    return [r.xadd(key, {"headers": "null", "body": f"{tag}-{i}"}) for i in range(count)]


def drain(r: Any, key: str, group: str, consumer: str = "app") -> list[str]:
    """Every body the group delivers now (new entries), acknowledged."""
    bodies = []
    while True:
        reply = r.xreadgroup(group, consumer, {key: ">"}, count=1000)
        entries = reply[0][1] if reply else []
        if not entries:
            return bodies
        r.xack(key, group, *[entry_id for entry_id, _ in entries])
        bodies += [fields["body"] for _, fields in entries]


def provision(cluster: Cluster, ns: str, r: Any, **topic_spec: Any) -> str:
    key = f"{ns}/orders"
    create(cluster, ns, "Topic", "orders", {"streamName": key, **topic_spec})
    create(cluster, ns, "ConsumerGroup", "billing", {"topicRef": {"name": "orders"}})
    wait_ready(cluster, ns, "ConsumerGroup", "billing")
    wait_for(lambda: (get(cluster, ns, "ConsumerGroup", "billing").get("status") or {}).get("registryEpoch"),
             "the registry epoch in status")
    return key


@pytest.mark.parametrize("how", ["flushall", "restart"])
def test_redis_reset_with_publishers_first_loses_nothing(cluster: Cluster, ns: str, redis: RedisServer,
                                                         how: str) -> None:
    r = redis.client()
    key = provision(cluster, ns, r)
    publish(r, key, 5, "before")
    assert drain(r, key, "billing") == [f"before-{i}" for i in range(5)]
    epoch = get(cluster, ns, "Topic", "orders")["status"]["registryEpoch"]
    if how == "flushall":
        r.flushall()
    else:  # the same port, no persistence: everything is gone
        redis.stop()
        redis.start()
        r = redis.client()
    # Publishers go on at once and re-create the stream: its entry count soon matches
    # what status recorded, so no count could tell; the registry epoch does.
    publish(r, key, 5, "after")
    wait_for(lambda: r.exists(key) and any(g["name"] == "billing" for g in r.xinfo_groups(key)),
             "the group re-created by the observation pass", 60)
    assert drain(r, key, "billing") == [f"after-{i}" for i in range(5)]
    wait_for(lambda: "RedisReset" in reasons(cluster, ns, "billing"), "a RedisReset event for the group", 60)
    message = next(e["message"] for e in events(cluster, ns, "billing") if e["reason"] == "RedisReset")
    assert "re-creating the group from 0" in message
    wait_for(lambda: get(cluster, ns, "Topic", "orders")["status"].get("registryEpoch") not in (None, epoch),
             "the new epoch in status", 60)


def test_group_destroyed_by_hand_comes_back_where_it_was(cluster: Cluster, ns: str, redis: RedisServer) -> None:
    r = redis.client()
    key = provision(cluster, ns, r)
    ids = publish(r, key, 6, "m")
    reply = r.xreadgroup("billing", "app", {key: ">"}, count=4)
    r.xack(key, "billing", *[i for i, _ in reply[0][1][:2]])  # m-2 and m-3 stay pending

    def position(entry_id: str) -> tuple[int, int]:
        ms, _, seq = entry_id.partition("-")
        return int(ms), int(seq)

    def checkpointed() -> bool:
        """The checkpoint has reached m-1 (just before m-2, the oldest unacknowledged): a pass
        between the read and the ack checkpointed just before m-0, and the next one moves it."""
        raw = r.hget("redistreams:owners", f'["group","{key}","billing"]')
        at = json.loads(raw).get("at") if raw is not None else None
        return at is not None and position(at) >= position(ids[1])

    wait_for(checkpointed, "a recovery checkpoint past the acknowledged entries", 60)
    r.xgroup_destroy(key, "billing")
    publish(r, key, 2, "late")
    wait_for(lambda: any(g["name"] == "billing" for g in r.xinfo_groups(key)), "the group re-created", 60)
    # From just before the oldest unacknowledged entry: it and everything after it.
    assert drain(r, key, "billing") == ["m-2", "m-3", "m-4", "m-5", "late-0", "late-1"]
    wait_for(lambda: "DriftRepaired" in reasons(cluster, ns, "billing"), "DriftRepaired", 60)


def test_deleting_a_topic_keeps_its_stream_for_groups_that_stay(cluster: Cluster, ns: str,
                                                                 redis: RedisServer) -> None:
    r = redis.client()
    key = provision(cluster, ns, r, deletionPolicy="Delete")
    create(cluster, ns, "ConsumerGroup", "audit", {"topicRef": {"name": "orders"}, "deletionPolicy": "Delete"})
    wait_ready(cluster, ns, "ConsumerGroup", "audit")
    r.xgroup_create(key, "by-hand", "0")
    publish(r, key, 3, "m")
    r.xreadgroup("by-hand", "w", {key: ">"})  # unacknowledged entries of a group made by hand
    # The Topic and one Delete group go; "billing" (Retain) and "by-hand" stay.
    cluster.delete(f"{API}/namespaces/{ns}/consumergroups/audit").raise_for_status()
    cluster.delete(f"{API}/namespaces/{ns}/topics/orders").raise_for_status()
    wait_for(lambda: not get(cluster, ns, "Topic", "orders"), "the Topic gone", 60)
    assert sorted(g["name"] for g in r.xinfo_groups(key)) == ["billing", "by-hand"]
    assert r.xpending(key, "by-hand")["pending"] == 3 and r.xlen(key) == 3
    # kopf posts Events from its own task: the finalizer's removal may come first.
    wait_for(lambda: events(cluster, ns, "orders", "StreamKept"), "the StreamKept event", 60)
    kept = events(cluster, ns, "orders", "StreamKept")
    assert kept and '"billing"' in kept[0]["message"] and '"by-hand" (not managed by redistreams)' in kept[0]["message"]


def test_deleting_a_topic_with_all_its_groups_removes_the_stream(cluster: Cluster, ns: str,
                                                                 redis: RedisServer) -> None:
    r = redis.client()
    key = f"{ns}/gone"
    create(cluster, ns, "Topic", "gone", {"streamName": key, "deletionPolicy": "Delete"})
    for name in ("a", "b"):
        create(cluster, ns, "ConsumerGroup", name, {"topicRef": {"name": "gone"}, "deletionPolicy": "Delete"})
    wait_ready(cluster, ns, "ConsumerGroup", "a")
    wait_ready(cluster, ns, "ConsumerGroup", "b")
    publish(r, key, 2, "m")
    # As `kubectl delete -f` does: the Topic first, its groups right after.
    cluster.delete(f"{API}/namespaces/{ns}/topics/gone").raise_for_status()
    for name in ("a", "b"):
        cluster.delete(f"{API}/namespaces/{ns}/consumergroups/{name}").raise_for_status()
    wait_for(lambda: not get(cluster, ns, "Topic", "gone") and not get(cluster, ns, "ConsumerGroup", "b"),
             "all objects gone", 60)
    assert r.exists(key) == 0


def secret(cluster: Cluster, ns: str, name: str, value: bytes) -> None:
    cluster.post(f"/api/v1/namespaces/{ns}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
        "data": {"url": base64.b64encode(value).decode()},
    }).raise_for_status()


def everything_shown(cluster: Cluster, ns: str, name: str) -> str:
    body = get(cluster, ns, "Topic", name)
    return repr(body.get("status")) + repr([e["message"] for e in events(cluster, ns, name)])


@pytest.mark.parametrize("value, reason", [
    (b"hunter2-not-a-url-at-all", "InvalidSpec"),
    (b"-----BEGIN PRIVATE KEY-----\nhunter2MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n",
     "InvalidSpec"),
    (b"redis://:hunter2-pw@hunter2-host:63 79/0", "InvalidSpec"),
    (b"redis://app:hunter2-pw@hunter2-host.invalid:6379/0", "RedisUnavailable"),
    (b"\xffhunter2\xfe", "InvalidSpec"),
])
def test_a_secret_value_is_never_shown(cluster: Cluster, ns: str, value: bytes, reason: str) -> None:
    secret(cluster, ns, "not-redis", value)
    create(cluster, ns, "Topic", "probe", {"streamName": f"{ns}/probe",
                                           "connection": {"secretRef": {"name": "not-redis"}}})
    body = wait_ready(cluster, ns, "Topic", "probe", status="False", reason=reason, timeout=60)
    assert f'Secret "{ns}/not-redis" key "url"' in condition(body)["message"]
    wait_for(lambda: events(cluster, ns, "probe"), "a warning event", 60)
    shown = everything_shown(cluster, ns, "probe")
    assert "hunter2" not in shown, shown


def test_one_tenants_bad_url_stops_no_one_else(cluster: Cluster, ns: str, redis: RedisServer) -> None:
    other = f"{ns}-b"
    cluster.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": other}}
                 ).raise_for_status()
    secret(cluster, other, "broken", b"redis://:pw@host:63 79/0")
    create(cluster, other, "Topic", "broken", {"connection": {"secretRef": {"name": "broken"}},
                                               "retention": {"maxLength": 1}})
    wait_ready(cluster, other, "Topic", "broken", status="False", reason="InvalidSpec")
    r = redis.client()
    key = f"{ns}/kept-short"
    create(cluster, ns, "Topic", "short", {"streamName": key, "retention": {"maxLength": 2}})
    wait_ready(cluster, ns, "Topic", "short")
    publish(r, key, 5, "m")
    # Retention (the observation pass) goes on for everyone else.
    wait_for(lambda: r.xlen(key) == 2, "retention trimming the other tenant's stream", 60)


def test_names_that_are_not_utf8_break_nothing(cluster: Cluster, ns: str, redis: RedisServer) -> None:
    raw = redis.client(decode_responses=False)
    r = redis.client()
    key = provision(cluster, ns, r, retention={"maxLength": 1})
    raw.xgroup_create(key.encode(), b"caf\xe9-\xff", b"0")  # made by hand, Latin-1 and a stray byte
    raw.xadd(key.encode(), {b"body": b"x"})
    raw.xadd(key.encode(), {b"body": b"y"})
    raw.xreadgroup(b"caf\xe9-\xff", b"w\xff", {key.encode(): b">"}, count=1)

    def blocked() -> str | None:
        retention = (get(cluster, ns, "Topic", "orders").get("status") or {}).get("retention") or {}
        return retention.get("blockedBy")

    assert wait_for(blocked, "retention blocked by the group", 60) in ("caf\\xe9-\\xff", "billing")
    from redistreams.metrics import REGISTRY

    def scraped() -> str | None:
        """The whole scrape still works, and shows the consumer once a pass saw it (the pass
        that first saw retention blocked may have read the stream before the XREADGROUP)."""
        text = generate_latest(REGISTRY).decode()
        return text if 'consumer="w\\\\xff"' in text else None

    text = wait_for(scraped, "the consumer in the metrics", 60)
    assert 'group="caf\\\\xe9-\\\\xff"' in text
    assert get(cluster, ns, "Topic", "orders")["status"]["conditions"]


def test_terminal_escapes_in_a_stream_name_are_not_passed_on(cluster: Cluster, ns: str, redis: RedisServer) -> None:
    """A tenant's stream name reaches conditions and Events, which kubectl prints to an admin's
    terminal: control characters there are shown escaped, never raw."""
    key = f"{ns}/\x1b]0;owned\x07\x1b[2Jlist"
    redis.client().rpush(key, "x")  # another type: a WrongType condition and Event naming the key
    create(cluster, ns, "Topic", "spoof", {"streamName": key})
    body = wait_ready(cluster, ns, "Topic", "spoof", status="False", reason="WrongType", timeout=60)
    wait_for(lambda: events(cluster, ns, "spoof"), "a warning event", 60)
    messages = [condition(body)["message"], *(e["message"] for e in events(cluster, ns, "spoof"))]
    assert all("\\x1b]0;owned\\x07\\x1b[2Jlist" in m for m in messages), messages
    assert not any(c in m for m in messages for c in "\x1b\x07"), messages
    assert body["status"].get("streamName", key) == key  # a data field stays exact
    assert redis.client().lrange(key, 0, -1) == ["x"]


def test_a_refused_command_is_that_resources_failure_named(cluster: Cluster, ns: str) -> None:
    """The operator's Redis user lacks XGROUP SETID (spec.reset) and TIME (optional)."""
    server = RedisServer().start()
    try:
        server.client().execute_command("ACL", "SETUSER", "ops", "on", ">pw", "~*", "resetchannels", "+@all",
                                        "-xgroup|setid", "-time")
        secret(cluster, ns, "redis-ops", f"redis://ops:pw@127.0.0.1:{server.port}/0".encode())
        create(cluster, ns, "Topic", "t", {"streamName": "t", "retention": {"maxAge": "1h"},
                                           "connection": {"secretRef": {"name": "redis-ops"}}})
        create(cluster, ns, "ConsumerGroup", "plain", {"topicRef": {"name": "t"}})
        create(cluster, ns, "ConsumerGroup", "moved", {"topicRef": {"name": "t"}, "reset": {"token": "a", "to": "0"}})
        for name in ("plain", "moved"):
            wait_ready(cluster, ns, "ConsumerGroup", name)
        cluster.request("PATCH", f"{API}/namespaces/{ns}/consumergroups/moved",
                        {"spec": {"reset": {"token": "b", "to": "0"}}},
                        content_type="application/merge-patch+json").raise_for_status()
        body = wait_ready(cluster, ns, "ConsumerGroup", "moved", status="False", reason="PermissionDenied")
        assert "'xgroup|setid'" in condition(body)["message"]
        assert condition(get(cluster, ns, "Topic", "t"))["status"] == "True"
        assert condition(get(cluster, ns, "ConsumerGroup", "plain"))["status"] == "True"
        assert "pw@" not in condition(body)["message"]
    finally:
        server.close()
