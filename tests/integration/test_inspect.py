"""`status`, `wait` and `export` against a real redis-server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.support.manifests import TOPICS, group, topic, write
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration


def test_status_reports_groups_lag_pending_and_age(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    path = write(tmp_path, TOPICS)
    cli("apply", "-f", path)
    r = redis_server.client()
    ids = [r.xadd("orders", {"headers": "null", "body": str(i)}) for i in range(10)]
    r.xreadgroup("billing", "c1", {"orders": ">"}, count=4)
    r.xreadgroup("billing", "c2", {"orders": ">"}, count=2)
    r.xack("orders", "billing", ids[0])
    time.sleep(0.05)
    result = cli("status", "orders", "-o", "json")
    assert result.returncode == 0, result.stderr
    (stream,) = json.loads(result.stdout)["streams"]
    assert stream["length"] == 10
    assert stream["firstEntryId"] == ids[0] and stream["lastEntryId"] == ids[-1]
    assert stream["managedBy"] == {"cluster": "default", "namespace": "default", "name": "orders"}
    (billing,) = stream["groups"]
    assert billing["lag"] == 4 and billing["lagExact"] is True
    assert billing["pending"] == 5
    assert billing["consumers"] == 2
    assert billing["lastDeliveredId"] == ids[5]
    assert billing["oldestPendingId"] == ids[1]
    assert billing["oldestPendingAgeSeconds"] >= 0.05
    table = cli("status", "-f", path)
    assert table.returncode == 0
    assert "orders" in table.stdout and "billing" in table.stdout and "default/orders" in table.stdout
    as_yaml = yaml.safe_load(cli("status", "-f", path, "-o", "yaml").stdout)
    assert {s["stream"] for s in as_yaml["streams"]} == {"orders", "topics/1"}


def test_status_counts_lag_when_redis_cannot(cli, redis_server: RedisServer) -> None:
    r = redis_server.client()
    ids = [r.xadd("s", {"body": str(i)}) for i in range(6)]
    r.xgroup_create("s", "g", ids[2])  # an arbitrary ID: Redis reports lag as NULL
    r.xdel("s", ids[4])  # and a tombstone keeps it NULL
    assert r.xinfo_groups("s")[0]["lag"] is None
    (stream,) = json.loads(cli("status", "s", "-o", "json").stdout)["streams"]
    assert stream["groups"][0]["lag"] == 2  # ids[3] and ids[5]
    assert stream["groups"][0]["lagExact"] is True


def test_status_missing_and_wrong_type(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    redis_server.client().set("plain", "x")
    result = cli("status", "nothing", "plain", "-o", "json")
    assert result.returncode == 1
    streams = json.loads(result.stdout)["streams"]
    assert streams[0] == {"stream": "nothing", "exists": False}
    assert streams[1] == {"stream": "plain", "exists": False, "type": "string"}
    declared = cli("status", "-f", write(tmp_path, TOPICS), "-o", "json")
    assert declared.returncode == 1
    orders = json.loads(declared.stdout)["streams"][0]
    assert orders["groups"] == [{"name": "billing", "exists": False}]


def test_status_without_arguments_lists_every_stream(cli, redis_server: RedisServer) -> None:
    r = redis_server.client()
    r.xadd("a", {"x": "1"})
    r.xadd("b:c", {"x": "1"})
    r.set("not-a-stream", "1")
    result = cli("status", "-o", "json")
    assert result.returncode == 0
    assert [s["stream"] for s in json.loads(result.stdout)["streams"]] == ["a", "b:c"]
    matched = cli("status", "--match", "b:*", "-o", "json")
    assert [s["stream"] for s in json.loads(matched.stdout)["streams"]] == ["b:c"]


def _wait(server: RedisServer, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "redistreams.cli", "--redis-url", server.url, "wait", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_wait_returns_once_everything_exists(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    path = write(tmp_path, TOPICS)
    waiter = _wait(redis_server, "-f", path, "--timeout", "30s", "--interval", "1s")
    time.sleep(1.5)
    assert waiter.poll() is None  # still waiting
    assert cli("apply", "-f", path).returncode == 0
    _, stderr = waiter.communicate(timeout=30)
    assert waiter.returncode == 0, stderr
    assert "ready: 2 streams and 2 groups exist" in stderr


def test_wait_times_out_naming_what_is_missing(cli, redis_server: RedisServer) -> None:
    r = redis_server.client()
    r.xadd("orders", {"x": "1"})
    r.xgroup_create("orders", "billing", "$")
    r.rpush("jobs", "x")
    start = time.monotonic()
    result = cli("wait", "--stream", "orders", "--group", "billing", "--group", "audit",
                 "--stream", "topics/1", "--stream", "jobs", "--timeout", "2s", "--interval", "1s")
    assert result.returncode == 1
    assert time.monotonic() - start < 10
    assert 'group "audit" on stream "orders"' in result.stderr
    assert 'stream "topics/1"' in result.stderr
    assert 'stream "jobs" (the key holds a list)' in result.stderr
    assert '"billing"' not in result.stderr
    ok = cli("wait", "--stream", "orders", "--group", "billing", "--timeout", "5s")
    assert ok.returncode == 0, ok.stderr


def test_wait_survives_redis_starting_late(cli, make_redis, tmp_path: Path) -> None:
    from tests.support.redis_server import RedisServer as Server

    server = Server()
    waiter = _wait(server, "--stream", "late", "--timeout", "40s", "--interval", "1s")
    time.sleep(1.5)
    server.start()
    try:
        server.client().xadd("late", {"x": "1"})
        _, stderr = waiter.communicate(timeout=40)
        assert waiter.returncode == 0, stderr
    finally:
        server.close()


def test_wait_input_errors(cli, redis_server: RedisServer) -> None:
    assert cli("wait").returncode == 2
    bad = cli("wait", "--group", "g", "--stream", "s")
    assert bad.returncode == 2 and "must follow the --stream" in bad.stderr
    assert cli("wait", "--stream", "s", "--timeout", "soon").returncode == 2


def test_export_then_apply_adopts_unchanged(cli, redis_server: RedisServer, make_redis, tmp_path: Path) -> None:
    r = redis_server.client()
    r.xadd("topics/1", {"headers": "null", "body": "x"})
    r.xgroup_create("topics/1", "group1", "0")
    r.xgroup_create("topics/1", "Audit Team", "$")
    r.xadd("Orders", {"body": "y"})
    cli("apply", "-f", write(tmp_path, topic("payments") + group("ledger", "payments")))
    exported = cli("export")
    assert exported.returncode == 0, exported.stderr
    docs = list(yaml.safe_load_all(exported.stdout))
    by_stream = {d["spec"].get("streamName", d["metadata"]["name"]): d for d in docs if d["kind"] == "Topic"}
    assert set(by_stream) == {"topics/1", "Orders", "payments"}
    assert by_stream["payments"]["metadata"]["name"] == "payments"  # the owner's name is kept
    assert by_stream["topics/1"]["metadata"]["name"] == "topics-1"
    groups = {d["spec"].get("groupName", d["metadata"]["name"]) for d in docs if d["kind"] == "ConsumerGroup"}
    assert groups == {"group1", "Audit Team", "ledger"}
    export_file = write(tmp_path, exported.stdout, "export.yaml")
    before = r.xinfo_groups("topics/1")
    adopted = cli("apply", "-f", export_file)
    assert adopted.returncode == 0, adopted.stderr
    assert r.xinfo_groups("topics/1") == before
    assert cli("plan", "-f", export_file).returncode == 0
    # The same manifests rebuild the layout on an empty Redis.
    fresh = make_redis()
    assert cli("apply", "-f", export_file, url=fresh.url).returncode == 0
    assert sorted(g["name"] for g in fresh.client().xinfo_groups("topics/1")) == ["Audit Team", "group1"]
    scoped = yaml.safe_load_all(cli("export", "--match", "topics/*", "--namespace", "team-a").stdout)
    assert {d["metadata"]["namespace"] for d in scoped} == {"team-a"}
