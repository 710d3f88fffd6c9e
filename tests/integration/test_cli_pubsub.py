"""`redistreams pub`, `sub` and `status --watch` against a real redis-server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from tests.support.redis_server import RedisServer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_pub_writes_the_go_driver_format(cli, redis_server: RedisServer) -> None:
    result = cli("pub", "orders/eu", "hello", "wörld", "-H", "kind=<greeting>", "-H", "empty=")
    assert result.returncode == 0, result.stderr
    ids = result.stdout.split()
    raw = redis_server.client(decode_responses=False)
    entries = raw.xrange("orders/eu")
    assert [e[0].decode() for e in entries] == ids
    assert [e[1] for e in entries] == [
        {b"headers": b'{"empty":"","kind":"\\u003cgreeting\\u003e"}', b"body": b"hello"},
        {b"headers": b'{"empty":"","kind":"\\u003cgreeting\\u003e"}', b"body": "wörld".encode()},
    ]


def test_pub_from_stdin_whole_or_per_line_and_topic_urls(cli, redis_server: RedisServer) -> None:
    assert cli("pub", "s", input="one\ntwo\n").returncode == 0
    result = cli("pub", "s", "--lines", "-o", "json", input="three\n\nfour\n")
    assert result.returncode == 0 and len(json.loads(result.stdout)["ids"]) == 2
    assert cli("pub", "redis://capped?maxlen=1", "a", "b").returncode == 0
    raw = redis_server.client()
    assert [e[1]["body"] for e in raw.xrange("s")] == ["one\ntwo\n", "three", "four"]
    assert [e[1]["body"] for e in raw.xrange("capped")] == ["b"]


def test_pub_errors(cli, redis_server: RedisServer) -> None:
    bad = cli("pub", "redis://orders?bogus=1", "x")
    assert bad.returncode == 2 and "invalid query parameter 'bogus'" in bad.stderr
    header = cli("pub", "orders", "x", "-H", "novalue")
    assert header.returncode == 2 and "KEY=VALUE" in header.stderr
    redis_server.client().set("plain", "v")
    wrong = cli("pub", "plain", "x")
    assert wrong.returncode == 1 and "WRONGTYPE" in wrong.stderr
    down = cli("pub", "orders", "x", url="redis://127.0.0.1:1/0", env={"REDISTREAMS_TEST": "1"})
    assert down.returncode == 1 and "Traceback" not in down.stderr
    assert not redis_server.client().exists("orders")


def test_sub_peeks_without_a_group_and_changes_nothing(cli, redis_server: RedisServer) -> None:
    raw = redis_server.client(decode_responses=False)
    raw.xadd("t", {"headers": b'{"a":"1"}', "body": b"text"})
    raw.xadd("t", {"headers": b"null", "body": b"\xff\x00"})
    dirty = redis_server.dirty()
    result = cli("sub", "t", "--from", "0", "--count", "2", "-o", "json")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[0]["metadata"] == {"a": "1"} and lines[0]["body"] == "text"
    assert lines[1]["bodyBase64"] == "/wA=" and "body" not in lines[1]
    assert redis_server.dirty() == dirty and raw.xinfo_stream("t")["groups"] == 0
    text = cli("sub", "t", "--from", "0", "--count", "1")
    assert text.stdout.split() == [lines[0]["id"], "a=1", "text"]
    assert cli("sub", "t", "--timeout", "1s").returncode == 1  # nothing new


def test_sub_with_a_group_acknowledges_and_cleans_up_its_consumer(cli, redis_server: RedisServer) -> None:
    raw = redis_server.client()
    raw.xgroup_create("jobs", "workers", "$", mkstream=True)
    cli("pub", "jobs", "1", "2", "3")
    result = cli("sub", "jobs", "-g", "workers", "--count", "2")
    assert result.returncode == 0 and [line.split()[-1] for line in result.stdout.splitlines()] == ["1", "2"]
    (group,) = raw.xinfo_groups("jobs")
    assert group["pending"] == 0 and group["consumers"] == 0  # acked, and its consumer removed
    kept = cli("sub", "jobs", "-g", "workers", "-c", "debugger", "--count", "1", "--no-ack")
    assert kept.returncode == 0
    assert {c["name"]: c["pending"] for c in raw.xinfo_consumers("jobs", "workers")} == {"debugger": 1}
    url = cli("sub", "redis://workers?topic=jobs&consumer=debugger", "--count", "1", "-o", "json")
    assert json.loads(url.stdout)["body"] == "3"  # its own pending entry first


def test_status_watch_refreshes(redis_server: RedisServer) -> None:
    redis_server.client().xadd("w", {"headers": "null", "body": "x"})
    env = dict(os.environ, REDIS_URL=redis_server.url)
    process = subprocess.Popen([sys.executable, "-m", "redistreams.cli", "status", "w", "--watch", "--interval", "1s",
                                "-o", "json"], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        first = json.loads(process.stdout.readline())  # type: ignore[union-attr]
        redis_server.client().xadd("w", {"headers": "null", "body": "y"})
        time.sleep(0.1)
        second = json.loads(process.stdout.readline())  # type: ignore[union-attr]
    finally:
        process.terminate()
        process.wait(10)
    assert first["streams"][0]["length"] == 1
    assert second["streams"][0]["length"] == 2 and second["time"] >= first["time"]

    table = subprocess.Popen([sys.executable, "-m", "redistreams.cli", "status", "w", "--watch", "--interval", "1s"],
                             stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    time.sleep(3)
    table.terminate()
    out, _ = table.communicate(timeout=10)
    assert out.count("LENGTH") >= 2 and "every 1s" in out  # one table per refresh on a pipe
