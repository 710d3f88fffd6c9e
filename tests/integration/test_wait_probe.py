"""``redistreams wait`` without redis-py (issue 14): the probe (redistreams/probe.py)
against real servers of every topology, checked against the engine's own observation;
what it is unsure of (a refused login, NOPERM, a timeout) goes to the engine, so the
messages and exit codes are the engine's."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from redistreams.cli.inspect import _missing
from redistreams.connection import RedisTarget
from redistreams.engine import Engine
from redistreams.printable import printable
from redistreams.probe import Probe, Unsure
from tests.support.cli import run_reporting as cli_report
from tests.support.redis_cluster import RedisCluster
from tests.support.redis_sentinel import SentinelGroup
from tests.support.redis_server import RedisServer
from tests.support.tls import Certificates, TLSRedisServer

pytestmark = pytest.mark.integration

NOT_UTF8 = b"orders-\xff".decode("utf-8", "surrogateescape")
KEYS = ["orders", "missing", "jobs", NOT_UTF8]
WANTED = {"orders": ["billing", "audit"], "missing": [], "jobs": [], NOT_UTF8: ["g\udcfe"]}

def run_reporting(*args: str, timeout: float = 120) -> tuple[int, set[str], str]:
    """(exit code, top-level modules imported, stderr) of one CLI run."""
    report, stderr = cli_report(*args, timeout=timeout)
    return report["exit"], set(report["modules"]), stderr


def populate(client: Any) -> None:
    client.xadd("orders", {"body": "x"})
    client.xgroup_create("orders", "billing", "0")
    client.rpush("jobs", "x")
    raw = NOT_UTF8.encode("utf-8", "surrogateescape")
    client.xadd(raw, {"body": "x"})
    client.xgroup_create(raw, b"g\xfe", "0")


def probe_view(url: str, keys: list[str] = KEYS) -> dict[str, tuple[str, set[str]]]:
    probe = Probe.for_url(url, socket_timeout=5)
    assert probe is not None, f"the probe does not read {url}"
    try:
        return {k: (p.type, set(p.groups)) for k, p in probe.presence(keys).items()}
    finally:
        probe.close()


def engine_view(url: str, keys: list[str] = KEYS) -> dict[str, tuple[str, set[str]]]:
    states = Engine(RedisTarget(url, socket_timeout=5).client()).observe(keys, owners=False)
    assert not any(s.failure for s in states.values()), [s.failure for s in states.values()]
    return {k: (s.type, set(s.groups)) for k, s in states.items()}


def engine_messages(url: str, wanted: dict[str, list[str]], timeout: float = 5) -> list[str]:
    """What wait names as missing when the engine answers (its failure messages)."""
    target = RedisTarget(url, socket_timeout=timeout)
    engine = Engine(target.client(), target=target.display)
    return [printable(m) for m in _missing(engine.observe(wanted, owners=False), wanted)]


def assert_probe_agrees(url: str) -> None:
    seen = probe_view(url)
    assert seen == engine_view(url)
    assert seen["orders"] == ("stream", {"billing"})
    assert seen["missing"] == ("none", set()) and seen["jobs"] == ("list", set())
    assert seen[NOT_UTF8] == ("stream", {"g\udcfe"})


def assert_waits_without_redis_py(url: str) -> None:
    code, modules, stderr = run_reporting("--redis-url", url, "wait", "--stream", "orders", "--group", "billing",
                                          "--timeout", "30s")
    assert code == 0, stderr
    assert "ready: 1 streams and 1 groups exist" in stderr
    assert not modules & {"redis", "pydantic", "rich", "yaml", "kopf", "aiohttp", "kubernetes"}, modules


# -- every form of URL --------------------------------------------------------------


def test_standalone_over_tcp_and_a_unix_socket(redis_server: RedisServer) -> None:
    client = redis_server.client()
    populate(client)
    for url in (redis_server.url, f"unix://{redis_server.unix_socket}"):
        assert_probe_agrees(url)
    assert_waits_without_redis_py(redis_server.url)


def test_a_database_and_a_password(make_redis) -> None:
    server = make_redis(password="pw-1")
    populate(server.client(db=3))
    for url in (f"redis://:pw-1@127.0.0.1:{server.port}/3", f"unix://{server.unix_socket}?db=3&password=pw-1",
                f"redis://default:pw-1@127.0.0.1:{server.port}/0?db=3"):
        assert_probe_agrees(url)
    assert probe_view(f"redis://:pw-1@127.0.0.1:{server.port}/0")["orders"] == ("none", set())  # db 0: empty
    assert_waits_without_redis_py(f"redis://:pw-1@127.0.0.1:{server.port}/3")


@pytest.fixture(scope="module")
def tls_server(certs: Certificates) -> Iterator[TLSRedisServer]:
    server = TLSRedisServer(certs, auth_clients="yes").start()
    try:
        yield server
    finally:
        server.close()


def test_tls_with_a_client_certificate(tls_server: TLSRedisServer) -> None:
    client = tls_server.client()
    client.flushall()
    populate(client)
    assert_probe_agrees(tls_server.url)
    assert_waits_without_redis_py(tls_server.url)
    # A CA that signed nothing here, or no client certificate: unsure (the engine explains).
    for url in (tls_server.tls_url(ca=tls_server.certs.other_ca), tls_server.tls_url(client_cert=False),
                tls_server.url.replace("rediss://", "redis://").split("?")[0]):
        probe = Probe.for_url(url, socket_timeout=3)
        assert probe is not None
        with pytest.raises(Unsure):
            probe.presence(["orders"])


def test_sentinel_with_passwords_on_both_sides() -> None:
    group = SentinelGroup(replicas=1, sentinels=2, password="master-pw", sentinel_password="sentinel-pw").start()
    try:
        populate(group.master().client())
        assert_probe_agrees(group.url)
        assert_waits_without_redis_py(group.url)
        # The sentinels' own password wrong: no sentinel names the master.
        probe = Probe.for_url(group.url.replace("sentinel-pw", "wrong"), socket_timeout=3)
        assert probe is not None
        with pytest.raises(Unsure):
            probe.presence(["orders"])
    finally:
        group.close()


def test_cluster_by_seeds_and_by_one_nodes_url(redis_cluster: RedisCluster) -> None:
    client = redis_cluster.client()
    populate(client)
    many = [f"s{i}" for i in range(12)]  # keys on every master: MOVED from whichever is asked
    for key in many:
        client.xadd(key, {"body": "x"})
    assert len({redis_cluster.master_for(k).port for k in many}) == len(redis_cluster.masters())
    for url in (redis_cluster.url, *redis_cluster.plain_urls[:3]):
        assert_probe_agrees(url)
        assert probe_view(url, many) == {k: ("stream", set()) for k in many}
    assert_waits_without_redis_py(redis_cluster.url)
    assert_waits_without_redis_py(redis_cluster.plain_url)


def test_cluster_slot_being_migrated_is_asked_with_asking(redis_cluster: RedisCluster) -> None:
    client = redis_cluster.client()
    client.xadd("moving", {"body": "x"})
    client.xgroup_create("moving", "g", "0")
    slot = key_slot(b"moving")
    target = next(m for m in redis_cluster.masters() if m is not redis_cluster.master_for(slot))
    migration = redis_cluster.begin_migration(slot, target).move_keys()  # the source now answers ASK
    try:
        with pytest.raises(redis.exceptions.AskError):
            redis_cluster.master_for(slot).client().xinfo_groups("moving")
        assert probe_view(redis_cluster.url, ["moving"]) == {"moving": ("stream", {"g"})}
    finally:
        migration.finish()


# -- what the probe leaves to the engine -------------------------------------------


def test_wrong_password_is_worded_by_the_engine_and_never_shown(make_redis) -> None:
    server = make_redis(password="right-pw")
    url = f"redis://:wrong-pw@127.0.0.1:{server.port}/0"
    probe = Probe.for_url(url, socket_timeout=3)
    assert probe is not None
    with pytest.raises(Unsure):
        probe.presence(["orders"])
    expected = engine_messages(url, {"orders": []})
    assert "refused the credentials" in expected[0]
    code, modules, stderr = run_reporting("--redis-url", url, "wait", "--stream", "orders", "--timeout", "1s",
                                          "--interval", "1s")
    assert code == 1
    assert f"error: timed out after 1s waiting for: {'; '.join(expected)}" in stderr
    assert "wrong-pw" not in stderr and "***" in stderr


def test_noperm_is_worded_by_the_engine(redis_server: RedisServer) -> None:
    admin = redis_server.client()
    populate(admin)
    admin.execute_command("ACL", "SETUSER", "viewer", "on", ">pw", "~*", "-@all", "+xinfo|stream")
    url = f"redis://viewer:pw@127.0.0.1:{redis_server.port}/0"
    probe = Probe.for_url(url, socket_timeout=3)
    assert probe is not None
    with pytest.raises(Unsure):
        probe.presence(["orders"])
    wanted = {"orders": ["billing"]}
    expected = engine_messages(url, wanted)
    assert "may not run 'xinfo|groups'" in expected[0]
    code, _, stderr = run_reporting("--redis-url", url, "wait", "--stream", "orders", "--group", "billing",
                                    "--timeout", "1s", "--interval", "1s")
    assert code == 1
    assert f"error: timed out after 1s waiting for: {'; '.join(expected)}" in stderr


def test_another_type_and_a_missing_group_are_named_as_before(redis_server: RedisServer) -> None:
    populate(redis_server.client())
    expected = engine_messages(redis_server.url, WANTED)
    assert expected == ['group "audit" on stream "orders"', 'stream "missing"', 'stream "jobs" (the key holds a list)']
    args = [a for key, groups in WANTED.items()
            for a in ("--stream", key, *[x for g in groups for x in ("--group", g)])]
    code, modules, stderr = run_reporting("--redis-url", redis_server.url, "wait", *args, "--timeout", "1s",
                                          "--interval", "1s")
    assert code == 1
    assert f"error: timed out after 1s waiting for: {'; '.join(expected)}" in stderr.encode(
        "utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    assert "redis" not in modules  # the probe answered, the engine was never needed


def test_a_server_that_does_not_answer_in_time(redis_server: RedisServer) -> None:
    admin = redis_server.client()
    populate(admin)
    admin.execute_command("CLIENT", "PAUSE", "30000", "ALL")
    try:
        probe = Probe.for_url(redis_server.url, socket_timeout=1)
        assert probe is not None
        start = time.monotonic()
        with pytest.raises(Unsure):
            probe.presence(["orders"])
        assert time.monotonic() - start < 15  # about the 1 s timeout; generous for a loaded machine
        code, _, stderr = run_reporting("--redis-url", redis_server.url, "--redis-timeout", "1", "wait",
                                        "--stream", "orders", "--timeout", "1s", "--interval", "1s")
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
    assert code == 1
    assert "did not answer in time" in stderr, stderr


def test_unreachable_then_started(make_redis) -> None:
    """Nothing listens yet: the engine takes over and waits as before (see also
    test_inspect.test_wait_survives_redis_starting_late)."""
    server = RedisServer()
    probe = Probe.for_url(server.url, socket_timeout=1)
    assert probe is not None
    with pytest.raises(Unsure):
        probe.presence(["orders"])
    make_redis.adopt(server)
    populate(server.client())
    assert probe.presence(["orders"])["orders"].groups == {"billing"}  # the same probe, once it answers


def test_a_url_the_probe_leaves_goes_to_the_engine(redis_server: RedisServer) -> None:
    populate(redis_server.client())
    url = f"{redis_server.url}?socket_keepalive=true"  # a setting the probe does not apply
    assert Probe.for_url(url) is None
    code, modules, stderr = run_reporting("--redis-url", url, "wait", "--stream", "orders", "--group", "billing",
                                          "--timeout", "30s")
    assert code == 0, stderr
    assert "redis" in modules  # answered by the engine, as before
    bad = run_reporting("--redis-url", "redis://127.0.0.1:6379/0?Password=x", "wait", "--stream", "orders")
    assert bad[0] == 2 and "names are case-sensitive: 'password'" in bad[2]  # the engine's URL check
