"""The CLI as a careless or hostile user meets it, on a real redis-server: debugging
commands that leave nothing behind, a Redis user without TIME, names that are not UTF-8,
a Redis Cluster node. Never a traceback; always a clear error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.manifests import group, topic, write
from tests.support.redis_cluster import cluster_port
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

LATIN1 = b"caf\xe9"  # not UTF-8
STRAY = b"q-\xff\xfe"


def assert_clean(result: subprocess.CompletedProcess) -> None:
    out = result.stdout + result.stderr
    text = out if isinstance(out, str) else out.decode("utf-8", "replace")
    assert "Traceback" not in text, text


def run_raw(url: str, *args: bytes | str) -> subprocess.CompletedProcess[bytes]:
    """The CLI with arguments as bytes, as a shell passes a name that is not UTF-8."""
    env = dict(os.environ)
    env.pop("REDIS_URL", None)
    cmd = [sys.executable, "-m", "redistreams.cli", "--redis-url", url, *args]
    return subprocess.run(cmd, capture_output=True, timeout=60, env=env, cwd=ROOT)


# -- debugging commands leave nothing behind ---------------------------------------------


def test_sub_with_a_missing_group_creates_nothing(cli, redis_server: RedisServer) -> None:
    r = redis_server.client()
    r.xadd("orders", {"headers": "null", "body": "x"})
    result = cli("sub", "orders", "-g", "typo", "--timeout", "1s")
    assert result.returncode == 1
    assert_clean(result)
    assert 'group "typo" not found on stream "orders"' in result.stderr and "never creates groups" in result.stderr
    assert r.xinfo_groups("orders") == []
    missing = cli("sub", "no-such-stream", "-g", "g", "--timeout", "1s")
    assert missing.returncode == 1 and "which does not exist" in missing.stderr
    assert not r.exists("no-such-stream")
    url = cli("sub", "redis://typo2?topic=orders&consumer=me", "--timeout", "1s")
    assert url.returncode == 1 and 'group "typo2" not found' in url.stderr
    assert r.xinfo_groups("orders") == []


def test_sub_removes_the_consumers_it_made_and_keeps_others(cli, redis_server: RedisServer) -> None:
    r = redis_server.client()
    r.xgroup_create("orders", "billing", "0", mkstream=True)
    for i in range(3):
        r.xadd("orders", {"headers": "null", "body": f"m{i}"})
    r.xgroup_createconsumer("orders", "billing", "worker-1")
    result = cli("sub", "orders", "-g", "billing", "-c", "debug-me", "--count", "2", "--timeout", "2s")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].endswith("m0")
    named = cli("sub", "orders", "-g", "billing", "-c", "worker-1", "--count", "1", "--timeout", "2s")
    assert named.returncode == 0, named.stderr
    assert sorted(c["name"] for c in r.xinfo_consumers("orders", "billing")) == ["worker-1"]  # it existed before
    assert r.xpending("orders", "billing")["pending"] == 0


def test_sub_rejects_a_subscription_url_with_group_options(cli, redis_server: RedisServer) -> None:
    result = cli("sub", "redis://g?topic=t&consumer=c", "--group", "g")
    assert result.returncode == 2
    assert_clean(result)
    assert "a subscription URL names its group and consumer" in result.stderr
    assert cli("sub", "t", "-g", "g", "--from", "0").returncode == 2
    assert redis_server.client().dbsize() == 0


# -- a Redis user without TIME --------------------------------------------------------------


def test_a_user_without_time_is_served(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    r = redis_server.client()
    r.execute_command("ACL", "SETUSER", "ops", "on", ">pw", "~*", "resetchannels", "+@all", "-time")
    url = f"redis://ops:pw@127.0.0.1:{redis_server.port}/0"
    path = write(tmp_path, topic("orders", retention={"maxAge": "1h", "maxLength": 2}) + group("billing", "orders"))
    applied = cli("apply", "-f", path, url=url)
    assert applied.returncode == 0, applied.stderr
    for i in range(4):
        r.xadd("orders", {"body": str(i)}, id=f"{i + 1}-0")  # ancient entries: maxAge applies
    r.xreadgroup("billing", "w", {"orders": ">"})
    r.xack("orders", "billing", "1-0", "2-0", "3-0", "4-0")
    again = cli("apply", "-f", path, url=url)
    assert again.returncode == 0, again.stderr
    assert r.xlen("orders") == 0  # the script had no TIME either: this machine's clock served
    for command in (["plan", "-f", path], ["status"], ["status", "-f", path], ["export"],
                    ["wait", "-f", path, "--timeout", "2s"], ["delete", "-f", path]):
        result = cli(*command, url=url)
        assert_clean(result)
        assert result.returncode == 0, (command, result.stderr)


# -- names that are not UTF-8 ------------------------------------------------------------------


def test_names_that_are_not_utf8_are_shown_escaped_everywhere(redis_server: RedisServer, tmp_path: Path) -> None:
    raw = redis_server.client(decode_responses=False)
    raw.xadd(LATIN1, {b"headers": b"null", b"body": b"x"})
    raw.xgroup_create(LATIN1, STRAY, b"0")
    raw.xreadgroup(STRAY, b"w\xff", {LATIN1: b">"})
    url = redis_server.url
    table = run_raw(url, "status")
    assert table.returncode == 0, table.stderr
    assert_clean(table)
    assert b"caf\\xe9" in table.stdout and b"q-\\xff\\xfe" in table.stdout
    as_json = run_raw(url, "status", "-o", "json")
    assert as_json.returncode == 0
    streams = json.loads(as_json.stdout)["streams"]
    assert streams[0]["stream"] == "caf\\xe9" and streams[0]["groups"][0]["name"] == "q-\\xff\\xfe"
    as_yaml = run_raw(url, "status", "-o", "yaml")
    assert as_yaml.returncode == 0 and yaml.safe_load(as_yaml.stdout)["streams"][0]["stream"] == "caf\\xe9"
    one = run_raw(url, "status", LATIN1)  # the name as the shell passes it
    assert one.returncode == 0, one.stderr
    assert json.loads(run_raw(url, "status", LATIN1, "-o", "json").stdout)["streams"][0]["length"] == 1
    peek = run_raw(url, "sub", LATIN1, "--from", "0", "--count", "1", "--timeout", "2s")
    assert peek.returncode == 0 and peek.stdout.rstrip().endswith(b"x")
    raw.xgroup_create(b"orders", STRAY, b"$", mkstream=True)
    exported = run_raw(url, "export")
    assert exported.returncode == 0
    assert_clean(exported)
    # YAML and Kubernetes hold text only: such names cannot be declared, so they are
    # skipped with a notice; the rest is exported and applies back as it is.
    assert b'skipping stream "caf\\xe9": its name is not UTF-8' in exported.stderr
    assert b'skipping group "q-\\xff\\xfe" of stream "orders"' in exported.stderr
    docs = list(yaml.safe_load_all(exported.stdout))
    assert [d["metadata"]["name"] for d in docs] == ["orders"]
    path = tmp_path / "export.yaml"
    path.write_bytes(exported.stdout)
    applied = run_raw(url, "apply", "-f", str(path))
    assert applied.returncode == 0, applied.stderr
    assert b"adopted existing stream" in applied.stdout


# Names anyone with write access can choose: terminal sequences (colour, window title,
# clear screen), a bidi override that reverses the rest of the line, rich's markup.
ESCAPING = b"a\x1b[31mRED\xe2\x80\xaeX"
TITLE = b"g\x1b]0;pwned\x07"
CLEAR = b"c\x1b[2J"
MARKUP = [b"[/bold]", b"[link=http://evil.example]click[/link]"]


def test_names_cannot_drive_the_terminal_or_break_the_tables(redis_server: RedisServer) -> None:
    raw = redis_server.client(decode_responses=False)
    for key in (ESCAPING, *MARKUP):
        raw.xadd(key, {b"headers": b"null", b"body": b"x"})
    raw.xgroup_create(ESCAPING, TITLE, b"0")
    raw.xreadgroup(TITLE, CLEAR, {ESCAPING: b">"})
    url = redis_server.url
    for args in (["status"], ["status", "-o", "wide"], ["status", "--consumers"], ["status", "-o", "name"],
                 ["status", ESCAPING], ["export"], ["wait", "--stream", ESCAPING, "--group", TITLE + b"x",
                                                     "--timeout", "2s"],
                 ["status", "-o", ESCAPING]):  # a usage error quoting the value
        result = run_raw(url, *args)
        assert_clean(result)
        expected = 1 if args[0] == "wait" else 2 if args[-1] == ESCAPING and "-o" in args else 0
        assert result.returncode == expected, (args, result.stderr)
        out = result.stdout + result.stderr
        for raw_byte in (b"\x1b", b"\x07", "\u202e".encode()):
            assert raw_byte not in out, (args, out)
    table = run_raw(url, "status", "-o", "wide")
    assert b"a\\x1b[31mRED\\u202eX" in table.stdout and b"g\\x1b]0;pwned\\x07" in table.stdout
    assert b"c\\x1b[2J" in table.stdout
    for key in MARKUP:  # shown as they are, not read as markup
        assert key in table.stdout
    assert b"stream/a\\x1b[31mRED" in run_raw(url, "status", "-o", "name").stdout
    # JSON carries the names exactly (its own escapes keep the terminal safe).
    streams = json.loads(run_raw(url, "status", "-o", "json").stdout)["streams"]
    assert {s["stream"] for s in streams} == {k.decode() for k in (ESCAPING, *MARKUP)}


def test_retention_blocked_by_a_group_that_is_not_utf8(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    raw = redis_server.client(decode_responses=False)
    path = write(tmp_path, topic("orders", retention={"maxLength": 1}))
    assert cli("apply", "-f", path).returncode == 0
    raw.xgroup_create(b"orders", STRAY, b"0")
    for i in range(3):
        raw.xadd(b"orders", {b"body": str(i).encode()})
    for output in ("text", "json"):
        result = cli("apply", "-f", path, "-o", output)
        assert result.returncode == 0, result.stderr
        assert_clean(result)
        assert 'retention blocked by group \\"q-\\\\xff\\\\xfe\\"' in result.stdout or \
            'retention blocked by group "q-\\xff\\xfe"' in result.stdout
    assert raw.xlen(b"orders") == 3


# -- a Redis Cluster node ------------------------------------------------------------------------


def cluster_node(make_redis, name: str) -> RedisServer:
    """A cluster-mode server; its bus port (port + 10000) must exist too (both reserved
    until the server closes, so a parallel worker cannot take the bus port meanwhile)."""
    server = RedisServer("--cluster-enabled", "yes", "--cluster-config-file", f"{name}.conf")
    server.release_ports()
    server.reserved = cluster_port()
    server.port = server.reserved[0].port
    return make_redis.adopt(server)


def test_a_cluster_nodes_plain_url_finds_the_cluster(cli, make_redis, tmp_path: Path) -> None:
    """A redis:// URL of a cluster node: the cluster is found out (INFO cluster) and used."""
    a = cluster_node(make_redis, "a")
    b = cluster_node(make_redis, "b")
    a.client().execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
    b.client().execute_command("CLUSTER", "MEET", "127.0.0.1", a.port)

    def knows_slots() -> bool:
        try:
            b.client().get("orders")
        except Exception as exc:  # noqa: BLE001 - MOVED once the node knows who serves the slot
            return "6381" in str(exc) or str(a.port) in str(exc)
        return False

    import time

    deadline = time.monotonic() + 20
    while not knows_slots():
        assert time.monotonic() < deadline, "the nodes did not meet"
        time.sleep(0.1)
    result = cli("apply", "-f", write(tmp_path, topic("orders")), url=b.url)
    assert result.returncode == 0, result.stderr
    assert_clean(result)
    assert "topic/orders created" in result.stdout
    assert a.client().exists("orders") == 1  # on the node serving its slot
