"""The Go driver tooling works: the real github.com/covrom/redispubsub writes and reads
stream entries against a real redis-server, checked byte for byte with redis-py."""

from __future__ import annotations

import pytest
import redis

pytestmark = pytest.mark.integration


def raw_client(server) -> redis.Redis:
    return redis.Redis.from_url(server.url, decode_responses=False)


def test_go_publish_writes_headers_and_body(go_client, redis_server):
    messages = [
        (b"hello", None),
        (b"", {}),
        (b"\x00\x01\xfe\xff binary \xc3", {"lang": "ünï 日本", "html": "<b>&</b>"}),
        (b"last", {"k": "v"}),
    ]
    ids = go_client.publish(redis_server.url, "redis://topics/1", messages)

    entries = raw_client(redis_server).xrange("topics/1")  # the key is host + path
    assert [entry_id.decode() for entry_id, _ in entries] == ids  # one entry each, in order
    # Exactly two fields; their order within an entry is not fixed (a Go map).
    assert [fields for _, fields in entries] == [
        {b"headers": b"null", b"body": b"hello"},
        {b"headers": b"{}", b"body": b""},
        {b"headers": '{"html":"\\u003cb\\u003e\\u0026\\u003c/b\\u003e","lang":"ünï 日本"}'.encode(),
         b"body": b"\x00\x01\xfe\xff binary \xc3"},
        {b"headers": b'{"k":"v"}', b"body": b"last"},
    ]


def test_go_publish_maxlen_trims_exactly(go_client, redis_server):
    go_client.publish(redis_server.url, "redis://capped?maxlen=2",
                      [(str(i).encode(), None) for i in range(5)])
    entries = raw_client(redis_server).xrange("capped")
    assert [fields[b"body"] for _, fields in entries] == [b"3", b"4"]


def test_go_receives_what_python_xadds(go_client, redis_server):
    r = raw_client(redis_server)
    # The group exists before anything is published, as the operator guarantees;
    # the driver's own XGROUP CREATE on open then fails with BUSYGROUP, ignored.
    r.xgroup_create("orders", "billing", id="$", mkstream=True)
    ids = [
        r.xadd("orders", {"headers": b'{"b":"2","a":"\\u003c\xc3\xa9"}', "body": b"\x00\xffbin"}),
        r.xadd("orders", {"headers": b"null", "body": b"no metadata"}),
        r.xadd("orders", {"body": b"", "headers": b"{}"}),  # field order does not matter
    ]

    got = go_client.receive(redis_server.url, "redis://billing?topic=orders&consumer=c1", 3)

    assert [m["id"] for m in got] == [i.decode() for i in ids]
    assert [m["loggable_id"] for m in got] == [f"msg {i.decode()}" for i in ids]
    assert [m["body"] for m in got] == [b"\x00\xffbin", b"no metadata", b""]
    # gocloud hands out empty metadata as nil: `{}` and `null` both arrive as None.
    assert [m["metadata"] for m in got] == [{"a": "<é", "b": "2"}, None, None]
    assert got[2]["fields"] == {"headers": b"{}", "body": b""}
    # Shutdown flushed the acks.
    assert r.xpending("orders", "billing")["pending"] == 0


def test_go_round_trip(go_client, redis_server):
    sent = [(b"a", {"x": "1"}), (b"b", None), (bytes(range(256)), {"<": ">"})]
    ids = go_client.publish(redis_server.url, "redis://rt", sent)
    got = go_client.receive(redis_server.url, "redis://g?topic=rt&consumer=c&from=0", 3)
    assert [(m["id"], m["body"], m["metadata"]) for m in got] == [
        (i, body, md) for i, (body, md) in zip(ids, sent)]


def test_json_headers_match_go_encoding(go_client):
    cases = [
        (None, b"null"),
        ({}, b"{}"),
        ({"b": "1", "a": "2"}, b'{"a":"2","b":"1"}'),
        ({"x": "<>&"}, b'{"x":"\\u003c\\u003e\\u0026"}'),
        ({"u": "é\u2028\u2029日"}, '{"u":"é\\u2028\\u2029日"}'.encode()),
        ({"q": "\"\\\n\t\r\x01\x7f/"}, b'{"q":"\\"\\\\\\n\\t\\r\\u0001\x7f/"}'),
        ({"": ""}, b'{"":""}'),
    ]
    assert go_client.json_headers([md for md, _ in cases]) == [want for _, want in cases]


def test_open_sub_without_consumer_fails(go_client, redis_server):
    rc, err = go_client.open_sub(redis_server.url, "redis://group1?topic=topics/1")
    assert rc == 2
    assert "consumer" in err


def test_open_sub_creates_group(go_client, redis_server):
    rc, err = go_client.open_sub(redis_server.url, "redis://group1?topic=topics/1&consumer=c1")
    assert (rc, err) == (0, "")
    groups = raw_client(redis_server).xinfo_groups("topics/1")
    assert [(g["name"], g["last-delivered-id"]) for g in groups] == [(b"group1", b"0-0")]


def test_open_errors(go_client, redis_server):
    rc, err = go_client.open_topic(redis_server.url, "redis://topics/1?foo=1")
    assert rc == 2 and '"foo"' in err
    rc, err = go_client.open_topic(None, "redis://topics/1")
    assert rc == 2 and "REDIS_URL" in err
    assert go_client.open_topic(redis_server.url, "redis://topics/1?maxlen=10") == (0, "")
