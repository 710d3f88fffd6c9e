"""A Redis user lacking each command redistreams uses, one at a time, against a real
redis-server. Whatever is refused: no traceback, the missing command named, nothing the
user owns lost, no record claiming "created" for what was not created, no half-made
stream left, and the same manifests converge once the permission is back."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.support.manifests import group, topic, write
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration

REGISTRY = "redistreams:owners"

# The documented rule set for the CLI and the operator (README "Redis permissions").
DOCUMENTED = [
    "xinfo|stream", "xinfo|groups", "xpending", "xrange", "xlen", "type", "time", "scan", "ping",
    "xgroup|create", "xgroup|destroy", "del", "hget", "hmget", "hsetnx", "hset", "hdel",
    "evalsha", "script|load", "xtrim", "xadd", "xgroup|setid", "xinfo|consumers", "xgroup|delconsumer",
]
# Commands no path may need: their absence must change nothing.
OPTIONAL = {"time", "xadd"}

MANIFESTS = (
    topic("existing", retention={"maxLength": 1})
    + group("legacy", "existing", consumerCleanup={"idleAfter": "1s"}, reset={"token": "t1", "to": "0"})
    + topic("fresh", deletionPolicy="Delete")
    + group("billing", "fresh", deletionPolicy="Delete")
)


def user(r, name: str, without: str | None) -> str:
    rules = ["on", ">pw", "resetkeys", "~*", "resetchannels", "-@all", *(f"+{c}" for c in DOCUMENTED if c != without)]
    r.execute_command("ACL", "SETUSER", name, *rules)
    return name


def prepare(r) -> None:
    """What the user owns before redistreams comes: entries, a group with a pending entry."""
    for i in range(3):
        r.xadd("existing", {"headers": "null", "body": f"m{i}"}, id=f"{i + 1}-0")
    r.xgroup_create("existing", "legacy", "0")
    r.xreadgroup("legacy", "worker", {"existing": ">"}, count=1)  # 1-0 pending for good
    r.xgroup_createconsumer("existing", "legacy", "idle-one")
    time.sleep(1.1)  # idle past consumerCleanup's idleAfter: the first apply removes it


def invariants(r) -> None:
    """Nothing the user owns is lost; the registry tells the truth."""
    assert [e[0] for e in r.xrange("existing")] == ["1-0", "2-0", "3-0"]  # retention is blocked by 1-0
    legacy = {g["name"]: g for g in r.xinfo_groups("existing")}["legacy"]
    assert legacy["pending"] == 1
    assert r.xpending_range("existing", "legacy", "-", "+", 10)[0]["consumer"] == "worker"
    for field, raw in r.hgetall(REGISTRY).items():
        if field == '["epoch"]':
            continue
        record = json.loads(raw)
        kind, stream, *rest = json.loads(field)
        if kind == "topic" and record["created"]:
            assert r.type(stream) == "stream", field
        if kind == "group" and record["created"]:
            assert rest[0] in {g["name"] for g in r.xinfo_groups(stream)}, field
    for key in r.scan_iter(_type="stream"):
        assert "redistreams:init" not in {g["name"] for g in r.xinfo_groups(key)}  # no half-made stream


def named(result, command: str) -> bool:
    return f"'{command}'" in result.stderr


def done_or_refused(result, missing: str) -> bool:
    """Either the command was not needed (exit 0), or it fails naming it, never otherwise."""
    assert "Traceback" not in result.stderr, result.stderr
    if result.returncode == 0:
        return True
    assert result.returncode in (1, 2), (result.returncode, result.stderr)
    assert named(result, missing), result.stderr
    return False


@pytest.mark.slow
@pytest.mark.parametrize("missing", DOCUMENTED)
def test_apply_status_delete_without_one_command(cli, redis_server: RedisServer, tmp_path: Path, missing: str) -> None:
    r = redis_server.client()
    prepare(r)
    url = f"redis://{user(r, 'ops', missing)}:pw@127.0.0.1:{redis_server.port}/0"
    path = write(tmp_path, MANIFESTS)

    applied = done_or_refused(cli("apply", "-f", path, url=url), missing)
    assert applied or missing not in OPTIONAL
    invariants(r)
    for command in (["plan", "-f", path], ["status"], ["status", "-f", path], ["export"],
                    ["wait", "-f", path, "--timeout", "2s", "--interval", "1s"]):
        result = cli(*command, url=url)
        if command[0] == "plan" or (command[0] in ("wait", "status") and "-f" in command and result.returncode == 1):
            assert "Traceback" not in result.stderr, (command, result.stderr)  # 1: differences / not yet there
        else:
            done_or_refused(result, missing)
    invariants(r)

    # The permission back: the same manifests converge, nothing the user owns moved.
    full = cli("apply", "-f", path)
    assert full.returncode == 0, full.stderr
    assert r.type("fresh") == "stream" and [g["name"] for g in r.xinfo_groups("fresh")] == ["billing"]
    invariants(r)

    if not done_or_refused(cli("delete", "-f", path, url=url), missing):
        if r.exists("fresh"):  # refused: nothing released, so deleting again finishes the job
            assert r.hexists(REGISTRY, '["topic","fresh"]')
        again = cli("delete", "-f", path)
        assert again.returncode == 0, again.stderr
    assert not r.exists("fresh")
    invariants(r)


def test_documented_rules_are_enough(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    r = redis_server.client()
    prepare(r)
    url = f"redis://{user(r, 'ops', None)}:pw@127.0.0.1:{redis_server.port}/0"
    path = write(tmp_path, MANIFESTS)
    applied = cli("apply", "-f", path, url=url)
    assert applied.returncode == 0, applied.stderr
    assert 'removed consumer "idle-one"' in applied.stdout
    planned = cli("plan", "-f", path, url=url)
    assert planned.returncode == 0, planned.stdout
    for command in (["status"], ["export"], ["wait", "-f", path]):
        assert cli(*command, url=url).returncode == 0, command
    assert cli("delete", "-f", path, url=url).returncode == 0
    invariants(r)
