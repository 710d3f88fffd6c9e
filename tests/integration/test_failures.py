"""Redis failing in every way a user meets: clear errors per resource, never a traceback."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.manifests import TOPICS, group, topic, write
from tests.support.net import ReservedPort
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration


def assert_clean(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr


def test_unreachable_redis(cli, tmp_path: Path) -> None:
    with ReservedPort() as port:  # nothing listens there, nor starts to meanwhile
        url = f"redis://127.0.0.1:{port}/0"
        path = write(tmp_path, TOPICS)
        applied = cli("apply", "-f", path, url=url)
        assert applied.returncode == 2  # nothing was done: one error for the run, not one per resource
        assert_clean(applied)
        (line,) = applied.stderr.splitlines()
        assert line.startswith(f"error: Redis at {url} is unreachable: ") and line.endswith("; nothing was done")
        planned = cli("plan", "-f", path, url=url)
        assert planned.returncode == 2
        assert_clean(planned)
        for command in (["status"], ["status", "orders"], ["export"], ["delete", "-f", path]):
            result = cli(*command, url=url)
            assert result.returncode in (1, 2), command
            assert "unreachable" in result.stderr, command
            assert_clean(result)


def test_password_is_never_printed(cli, make_redis, tmp_path: Path) -> None:
    server = make_redis(password="s3cret-pw")
    bad = cli("apply", "-f", write(tmp_path, TOPICS), url=f"redis://:wrong-pw@127.0.0.1:{server.port}/0")
    assert bad.returncode == 2  # refused before anything was planned: one error, nothing done
    assert "wrong-pw" not in bad.stderr and "***" in bad.stderr
    assert_clean(bad)
    good = cli("apply", "-f", str(tmp_path / "manifests.yaml"), url=f"redis://:s3cret-pw@127.0.0.1:{server.port}/0")
    assert good.returncode == 0, good.stderr


def test_redis_going_away_mid_apply_then_converging(cli, make_redis, tmp_path: Path) -> None:
    server: RedisServer = make_redis("--appendonly", "yes", "--appendfsync", "always", persistence=True)
    manifests = "".join(topic(f"t{i}") + group(f"g{i}", f"t{i}") for i in range(3000))
    path = write(tmp_path, manifests)
    watcher = server.client()
    for attempt in range(3):
        process = subprocess.Popen(
            [sys.executable, "-m", "redistreams.cli", "--redis-url", server.url, "apply", "-f", path],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        # Kill Redis as soon as the first ownership claims land: the apply is mid-way.
        deadline = time.monotonic() + 60
        while not watcher.exists("redistreams:owners"):
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.001)
        server.kill()
        stdout, stderr = process.communicate(timeout=120)
        if process.returncode != 0 or attempt == 2:
            break
        # The apply ended before the kill landed (~0.6 s after the claims at load 3; this
        # process was not scheduled in time): nothing was cut off. Again, on an empty Redis.
        server.start()
        watcher.flushall()
    assert process.returncode == 1
    assert "Traceback" not in stderr
    assert "is unreachable" in stderr
    assert stderr.splitlines()[-1].endswith(" failed")  # the summary line, after...
    assert len(stdout.splitlines()) + len(stderr.splitlines()) - 1 == 6000  # ...every resource accounted for
    server.start()
    again = cli("apply", "-f", path, url=server.url)
    assert again.returncode == 0, again.stderr[-2000:]
    r = server.client()
    assert r.xinfo_groups("t2999")[0]["name"] == "g2999"
    assert r.hlen("redistreams:owners") == 6000 + 1  # and the epoch
    assert cli("plan", "-f", path, url=server.url).returncode == 0


def test_acl_denial_is_per_resource(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    r = redis_server.client()
    r.execute_command("ACL", "SETUSER", "viewer", "on", ">pw", "~*", "resetchannels", "-@all", "+@read", "+@connection",
                      "+time")
    url = f"redis://viewer:pw@127.0.0.1:{redis_server.port}/0"
    result = cli("apply", "-f", write(tmp_path, TOPICS), url=url)
    assert result.returncode == 1
    assert_clean(result)
    assert "error: topic/orders: permission denied by Redis ACL" in result.stderr
    assert "script|load" in result.stderr  # the missing permission is named
    assert r.dbsize() == 0
    # A read-only user can still look.
    status = cli("status", url=url)
    assert status.returncode == 0, status.stderr


def test_read_only_replica(cli, redis_server: RedisServer, make_redis, tmp_path: Path) -> None:
    replica = make_redis("--replicaof", "127.0.0.1", str(redis_server.port))
    result = cli("apply", "-f", write(tmp_path, TOPICS), url=replica.url)
    assert result.returncode == 1
    assert "read-only replica; point the URL at the primary" in result.stderr
    assert_clean(result)


def test_timeout(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    # Writes paused for longer than the CLI can take to start on a loaded machine, lifted
    # after it (an UNPAUSE would itself wait out a pause of ALL).
    pauser = redis_server.client()
    pauser.execute_command("CLIENT", "PAUSE", "30000", "WRITE")
    try:
        result = cli("--redis-timeout", "0.5", "apply", "-f", write(tmp_path, TOPICS))
    finally:
        pauser.execute_command("CLIENT", "UNPAUSE")
    assert result.returncode == 1
    assert "did not answer in time" in result.stderr
    assert_clean(result)


def test_unix_socket(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    result = cli("apply", "-f", write(tmp_path, TOPICS), url=f"unix://{redis_server.unix_socket}?db=0")
    assert result.returncode == 0, result.stderr
    assert redis_server.client().exists("orders", "topics/1") == 2


def test_tls(cli, make_redis, tmp_path: Path) -> None:
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp_path)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
            "-keyout", "ca.key", "-out", "ca.crt")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key",
            "-out", "server.csr")
    (tmp_path / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "1", "-extfile", "san.ext", "-out", "server.crt")
    with ReservedPort() as tls_port:  # redis-server binds it (SO_REUSEADDR); nobody else meanwhile
        server = make_redis(
            "--tls-port", str(tls_port), "--tls-cert-file", str(tmp_path / "server.crt"),
            "--tls-key-file", str(tmp_path / "server.key"), "--tls-ca-cert-file", str(tmp_path / "ca.crt"),
            "--tls-auth-clients", "no",
        )
        url = f"rediss://localhost:{tls_port}/0?ssl_ca_certs={tmp_path / 'ca.crt'}"
        result = cli("apply", "-f", write(tmp_path, TOPICS), url=url)
        assert result.returncode == 0, result.stderr
        assert server.client().exists("orders") == 1
        untrusted = cli("apply", "-f", str(tmp_path / "manifests.yaml"), url=f"rediss://localhost:{tls_port}/0")
        assert untrusted.returncode == 2  # refused before planning: one error, nothing done
        assert "certificate" in untrusted.stderr.lower()
        assert_clean(untrusted)


def test_bad_urls_are_input_errors(cli, tmp_path: Path) -> None:
    path = write(tmp_path, TOPICS)
    for url, message in [
        ("http://localhost:6379", 'unsupported Redis URL scheme "http"'),
        ("redis://localhost:6379/0?nonsense=1", "invalid Redis URL"),
    ]:
        result = cli("apply", "-f", path, url=url)
        assert result.returncode == 2, url
        assert message in result.stderr
        assert_clean(result)


def test_go_redis_url_options_are_accepted(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    url = redis_server.url + "?dial_timeout=3s&read_timeout=2s&pool_size=5"
    result = cli("apply", "-f", write(tmp_path, TOPICS), url=url)
    assert result.returncode == 0, result.stderr


def test_the_documented_acl_is_enough(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("**Manager**")[1].split("```")[1]
    words = " ".join(block.split()).replace(">SECRET", ">pw").split()
    assert words[:2] == ["ACL", "SETUSER"]
    r = redis_server.client()
    r.execute_command(*words)
    url = f"redis://redistreams:pw@127.0.0.1:{redis_server.port}/0"
    r.xadd("orders", {"body": "old"})
    manifests = (
        topic("topics-1", streamName="topics/1", deletionPolicy="Delete", retention={"maxLength": 1})
        + group("group1", "topics-1", deletionPolicy="Delete")
        + topic("orders", retention={"maxAge": "1h"})
        + group("billing", "orders")
    )
    path = write(tmp_path, manifests)
    for command in (["plan", "-f", path], ["apply", "-f", path], ["apply", "-f", path], ["status"],
                    ["status", "-f", path], ["wait", "-f", path, "--timeout", "5s"], ["export"]):
        result = cli(*command, url=url)
        assert result.returncode in (0, 1) if command[0] == "plan" else result.returncode == 0, (command, result.stderr)
        assert "permission" not in result.stderr.lower(), (command, result.stderr)
    r.xadd("topics/1", {"body": "1"})
    r.xadd("topics/1", {"body": "2"})
    r.xreadgroup("group1", "c", {"topics/1": ">"})
    r.xack("topics/1", "group1", *[e[0] for e in r.xrange("topics/1")])
    trimmed = cli("apply", "-f", path, url=url)
    assert "trimmed 1 entry (maxLength 1)" in trimmed.stdout, trimmed.stderr
    deleted = cli("delete", "-f", path, url=url)
    assert deleted.returncode == 0, deleted.stderr
    assert r.exists("topics/1") == 0
