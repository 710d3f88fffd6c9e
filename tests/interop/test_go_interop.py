"""Go services (github.com/covrom/redispubsub via gocloud.dev/pubsub) and Python services
(redistreams.pubsub) share topics provisioned by redistreams: entries are byte-identical
both ways and each side consumes what the other publishes."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
import redis

from redistreams.pubsub import Message, URLError, encode_headers, open_subscription, open_topic
from redistreams.pubsub.urls import parse_subscription_url, parse_topic_url
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration

# Go's nil metadata and Python's "no metadata" are both written as `null`. Go writes an
# empty non-nil map as `{}`; gocloud hands both back as nil, so Python writes `null` for
# empty metadata too (covered in test_empty_metadata_reads_the_same_on_both_sides).
MESSAGES: list[tuple[bytes, dict[str, str] | None]] = [
    (b"plain", None),
    (b"", {"k": "v"}),
    (bytes(range(256)), {"bin": "yes"}),
    (b"\xc3\x28 invalid utf-8 in the body is fine", {"a": "1", "B": "2", "_": "3", "\u00e9": "4"}),
    (b"json-ish {\"a\": 1}", {"html": "<script>alert('&')</script>", "sep": "\u2028\u2029"}),
    (b"ctrl", {"ctrl": "\t\n\r\b\f\x00\x01\x1f\x7f", "quote": "\"\\/"}),
    (b"unicode", {"emoji": "\U0001f600\U0001f1eb\U0001f1f7", "cjk": "\u65e5\u672c\u8a9e",
                  "rtl": "\u05e9\u05dc\u05d5\u05dd"}),
    (b"x" * 100_000, {"big": "y" * 10_000}),
]

MANIFEST = """
apiVersion: redistreams.dev/v1alpha1
kind: Topic
metadata: {name: from-go}
spec: {streamName: interop/from-go}
---
apiVersion: redistreams.dev/v1alpha1
kind: Topic
metadata: {name: from-python}
spec: {streamName: interop/from-python}
---
apiVersion: redistreams.dev/v1alpha1
kind: ConsumerGroup
metadata: {name: python-reads-go}
spec: {topicRef: {name: from-go}, groupName: billing}
---
apiVersion: redistreams.dev/v1alpha1
kind: ConsumerGroup
metadata: {name: go-reads-python}
spec: {topicRef: {name: from-python}, groupName: billing}
"""


@pytest.fixture
def provisioned(cli, redis_server: RedisServer, tmp_path: Path) -> redis.Redis:
    """Streams and groups at `$` created by `redistreams apply` before any publisher runs."""
    manifest = tmp_path / "topics.yaml"
    manifest.write_text(MANIFEST)
    result = cli("apply", "-f", str(manifest))
    assert result.returncode == 0, result.stderr
    raw = redis_server.client(decode_responses=False)
    for stream in ("interop/from-go", "interop/from-python"):
        assert raw.xlen(stream) == 0
        assert [g["name"] for g in raw.xinfo_groups(stream)] == [b"billing"]
    return raw


def _fields(raw: redis.Redis, stream: str) -> list[dict[bytes, bytes]]:
    return [fields for _, fields in raw.xrange(stream)]


async def _python_publish(url: str, messages: list[tuple[bytes, dict[str, str] | None]]) -> list[str]:
    async with await open_topic(url) as topic:
        return [await topic.send(Message(body, metadata or {})) for body, metadata in messages]


async def _python_receive(url: str, count: int) -> list[tuple[str, bytes, dict[str, str]]]:
    subscription = await open_subscription(url)
    got: list[tuple[str, bytes, dict[str, str]]] = []
    while len(got) < count:
        batch = await subscription.receive_batch(count, timeout=10)
        assert batch, f"received {len(got)} of {count}"
        subscription.ack(*batch)
        got += [(m.id, m.body, m.metadata) for m in batch]
    await subscription.shutdown()
    return got


def test_go_publishes_python_consumes(go_client, redis_server: RedisServer, provisioned: redis.Redis,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    ids = go_client.publish(redis_server.url, "redis://interop/from-go", MESSAGES)
    got = asyncio.run(_python_receive("redis://billing?topic=interop/from-go&consumer=py-1", len(MESSAGES)))
    assert [g[0] for g in got] == ids
    assert [(g[1], g[2]) for g in got] == [(body, metadata or {}) for body, metadata in MESSAGES]
    assert provisioned.xpending("interop/from-go", "billing")["pending"] == 0


def test_python_publishes_go_consumes(go_client, redis_server: RedisServer, provisioned: redis.Redis,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    ids = asyncio.run(_python_publish("redis://interop/from-python", MESSAGES))
    got = go_client.receive(redis_server.url, "redis://billing?topic=interop/from-python&consumer=go-1",
                            len(MESSAGES))
    assert [g["id"] for g in got] == ids
    assert [(g["body"], g["metadata"]) for g in got] == MESSAGES
    assert provisioned.xpending("interop/from-python", "billing")["pending"] == 0


def test_entries_are_byte_identical_both_ways(go_client, redis_server: RedisServer, provisioned: redis.Redis,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    go_client.publish(redis_server.url, "redis://interop/from-go", MESSAGES)
    asyncio.run(_python_publish("redis://interop/from-python", MESSAGES))
    from_go = _fields(provisioned, "interop/from-go")
    from_python = _fields(provisioned, "interop/from-python")
    assert len(from_go) == len(MESSAGES)
    for index, (go_entry, python_entry) in enumerate(zip(from_go, from_python, strict=True)):
        assert python_entry == go_entry, f"message {index} differs"


def test_empty_metadata_reads_the_same_on_both_sides(go_client, redis_server: RedisServer,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    raw = redis_server.client(decode_responses=False)
    raw.xgroup_create("empty", "g", "$", mkstream=True)
    go_client.publish(redis_server.url, "redis://empty", [(b"go-nil", None), (b"go-empty", {})])
    asyncio.run(_python_publish("redis://empty", [(b"py-empty", {})]))
    assert [f[b"headers"] for f in _fields(raw, "empty")] == [b"null", b"{}", b"null"]
    python_view = asyncio.run(_python_receive("redis://g?topic=empty&consumer=py", 3))
    assert [m[2] for m in python_view] == [{}, {}, {}]
    raw.xgroup_create("empty", "g2", "0")
    go_view = go_client.receive(redis_server.url, "redis://g2?topic=empty&consumer=go", 3)
    assert [m["metadata"] for m in go_view] == [None, None, None]


def test_header_encoding_matches_go_for_random_metadata(go_client) -> None:
    rng = random.Random(20261127)
    alphabet = ("abcXYZ019 _-./:@<>&\"\\'\t\n\r\b\f\x00\x01\x1f\x7f\u00e9\u00df\u2028\u2029\u200b\ufeff"
                "\u65e5\U0001f600\U00010348\ufffd")
    cases: list[dict[str, str] | None] = [None, {"": ""}]
    for _ in range(300):
        cases.append({"".join(rng.choices(alphabet, k=rng.randint(0, 8))):
                      "".join(rng.choices(alphabet, k=rng.randint(0, 30)))
                      for _ in range(rng.randint(1, 6))})
    assert [encode_headers(c) for c in cases] == go_client.json_headers(cases)


@pytest.mark.parametrize(
    "url",
    [
        "redis://orders?max=5",
        "redis://orders?maxlen=abc",
        "redis://orders%2Fv2",
    ],
)
def test_topic_urls_go_refuses_are_refused(go_client, redis_server: RedisServer, url: str) -> None:
    rc, stderr = go_client.open_topic(redis_server.url, url)
    assert rc != 0, f"Go accepted {url}"
    with pytest.raises(URLError):
        parse_topic_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "redis://g?topic=t",
        "redis://g?topic=t&consumer=",
        "redis://g?topic=t&consumer=c&group=x",
        "redis://?topic=t&consumer=c",
        "redis://g?topic=t&consumer=c&autoclaim=soon",
        "redis://g?topic=t&consumer=c&autoclaim=30",
    ],
)
def test_subscription_urls_go_refuses_are_refused(go_client, redis_server: RedisServer, url: str) -> None:
    rc, stderr = go_client.open_sub(redis_server.url, url)
    assert rc != 0, f"Go accepted {url}"
    with pytest.raises(URLError):
        parse_subscription_url(url)


@pytest.mark.parametrize(
    ("url", "stream"),
    [("redis://Orders/EU", "Orders/EU"), ("redis://a//b/./c/", "a/b/c"), ("redis://t?maxlen=10", "t"),
     ("redis://user:pw@top/x", "top/x")],
)
def test_topic_urls_name_the_same_stream(go_client, redis_server: RedisServer, url: str, stream: str) -> None:
    go_client.publish(redis_server.url, url, [(b"go", None)])
    assert parse_topic_url(url).stream == stream
    assert redis_server.client().xlen(stream) == 1


def test_go_and_python_consumers_share_one_group(go_client, redis_server: RedisServer,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A Python consumer reclaims what a Go consumer of the same group took and never acked."""
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    raw = redis_server.client(decode_responses=False)
    raw.xgroup_create("shared", "workers", "$", mkstream=True)
    asyncio.run(_python_publish("redis://shared", [(str(i).encode(), {"n": str(i)}) for i in range(5)]))
    taken = go_client.receive(redis_server.url, "redis://workers?topic=shared&consumer=go-dead", 2, noack=True,
                              raw=True)
    assert len(taken) == 2
    got = asyncio.run(_python_receive("redis://workers?topic=shared&consumer=py&autoclaim=200ms", 5))
    assert sorted(int(body) for _, body, _ in got) == list(range(5))
    assert raw.xpending("shared", "workers")["pending"] == 0
