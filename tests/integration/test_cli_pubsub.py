"""`redistreams pub`, `sub` and `status --watch` against a real redis-server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from tests.support.cli import read_until
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
    assert [e[1]["body"] for e in raw.xrange("s")] == ["one\ntwo", "three", "four"]  # the final line end goes
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
        # The next refresh that saw it (one that ran before the XADD reached Redis shows 1).
        refreshed = read_until(process, lambda out: '"length": 2' in out)
        second = json.loads(refreshed.splitlines()[-1])
    finally:
        process.terminate()
        process.wait(10)
    assert first["streams"][0]["length"] == 1
    assert second["streams"][0]["length"] == 2 and second["time"] >= first["time"]

    table = subprocess.Popen([sys.executable, "-m", "redistreams.cli", "status", "w", "--watch", "--interval", "1s"],
                             stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    # Two refreshes printed, however long this loaded machine takes to start the CLI.
    seen = read_until(table, lambda out: out.count("LENGTH") >= 2)
    table.terminate()
    rest, _ = table.communicate(timeout=10)
    out = seen + rest
    assert out.count("LENGTH") >= 2 and "every 1s" in out  # one table per refresh on a pipe


def test_pub_sends_what_was_typed_and_raw_keeps_every_byte(cli, redis_server: RedisServer) -> None:
    cases = [("hi\n", b"hi"), ("hi\r\n", b"hi"), ("hi", b"hi"), ("a\n\n", b"a\n"), ("\n", b""), ("", b"")]
    for typed, _ in cases:
        assert cli("pub", "typed", input=typed).returncode == 0
    binary = b"\x00\xff\r\n\n"
    raw_pub = subprocess.run([sys.executable, "-m", "redistreams.cli", "--redis-url", redis_server.url, "pub",
                              "bin", "--raw"], input=binary, capture_output=True, timeout=60, cwd=ROOT)
    assert raw_pub.returncode == 0, raw_pub.stderr
    assert cli("pub", "lines", "--lines", input="one\r\ntwo\r\n\r\nthree").returncode == 0
    r = redis_server.client(decode_responses=False)
    assert [e[1][b"body"] for e in r.xrange("typed")] == [sent for _, sent in cases]
    assert [e[1][b"body"] for e in r.xrange("bin")] == [binary]
    assert [e[1][b"body"] for e in r.xrange("lines")] == [b"one", b"two", b"three"]
    both = cli("pub", "typed", "--raw", "--lines", input="x\n")
    assert both.returncode == 2 and both.stderr.startswith("error:") and "--raw" in both.stderr
    assert r.xlen("typed") == len(cases)


def test_sub_refuses_a_bad_from_or_count_as_input_errors(cli, redis_server: RedisServer) -> None:
    for args in (["--from", "abc"], ["--from", "1-2-3"], ["--from", "-5"], ["--from", "99999999999999999999"],
                 ["--count", "-1"], ["--count", "x"]):
        result = cli("sub", "orders", *args, "--timeout", "1s")
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith("error:") and "Traceback" not in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) <= 2, result.stderr
    for good in ("0", "$", "1700000000000", "1700000000000-5"):
        assert cli("sub", "orders", "--from", good, "--timeout", "1s").returncode == 1  # valid, nothing there


def test_sub_timeout_ends_waiting_with_and_without_a_group(cli, redis_server: RedisServer) -> None:
    r = redis_server.client()
    r.xadd("quiet", {"headers": "null", "body": "old"})
    r.xgroup_create("quiet", "g", "$")
    for args in (["quiet", "--timeout", "2s"], ["quiet", "-g", "g", "--timeout", "2s"],
                 ["redis://g?topic=quiet&consumer=me", "--timeout", "2s"]):
        started = time.monotonic()
        result = cli("sub", *args, timeout=60)
        took = time.monotonic() - started
        assert result.returncode == 1 and result.stdout == "", (args, result.stderr)
        assert took >= 2, (args, took)
        assert took < 20, (args, took)  # 2 s of waiting and a start-up on a loaded machine
    # The timeout is for quiet periods: messages keep a subscriber going, then it stops.
    started = time.monotonic()
    reader = subprocess.Popen([sys.executable, "-m", "redistreams.cli", "--redis-url", redis_server.url, "sub",
                               "quiet", "-g", "g", "--timeout", "3s"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        for n in range(3):
            time.sleep(1)
            r.xadd("quiet", {"headers": "null", "body": f"m{n}"})
        out, _ = reader.communicate(timeout=60)
    finally:
        reader.kill()
    assert reader.returncode == 0 and [line.split()[-1] for line in out.splitlines()] == ["m0", "m1", "m2"]
    assert time.monotonic() - started >= 6
