"""No output path ever shows a Redis password: every CLI command (text, JSON, YAML,
--watch), operator start-up, pub/sub exceptions and log records, and the operator's
conditions, for every way a URL can carry a password, against a real redis-server."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

from redistreams.connection import ConnectionConfigError
from redistreams.controller.objects import Declared
from redistreams.controller.reconciler import Reconciler
from redistreams.pubsub import sync
from tests.support.cli import read_until
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
RIGHT = "Right-Pw-KJV"
# Every wrong password holds MARK, and nothing else the tests print is upper-case
# (temporary directories are lower-case): MARK in any output is a leak.
MARK = "QXZ"
WRONG = f"Wr0ng-{MARK}-pw"
SPECIAL = f"Wr0ng/P@ss?#&={MARK}:"  # must be %-encoded to be one password
MANIFESTS = """\
apiVersion: redistreams.dev/v1alpha1
kind: Topic
metadata: {name: orders}
spec: {}
---
apiVersion: redistreams.dev/v1alpha1
kind: ConsumerGroup
metadata: {name: billing}
spec: {topicRef: {name: orders}}
"""


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    started = RedisServer(password=RIGHT).start()
    try:
        yield started
    finally:
        started.close()


def wrong_urls(server: RedisServer) -> dict[str, str]:
    tcp = f"127.0.0.1:{server.port}"
    return {
        "userinfo": f"redis://:{WRONG}@{tcp}/0",
        "userinfo-with-user": f"redis://default:{WRONG}@{tcp}/0",
        "query": f"redis://{tcp}/0?password={WRONG}",
        "percent-encoded-userinfo": f"redis://:{quote(SPECIAL, safe='')}@{tcp}/0",
        "percent-encoded-query": f"redis://{tcp}/0?password={quote(SPECIAL, safe='')}",
        "unix-query": f"unix://{server.unix_socket}?password={WRONG}",
        "unix-userinfo": f"unix://:{WRONG}@{server.unix_socket}",
    }


MALFORMED = {
    "bad-port": f"redis://:{WRONG}@127.0.0.1:63 79/0",
    "password-with-slash": f"redis://:{WRONG}/x@127.0.0.1:6379/0",
    "bad-db": f"redis://:{WRONG}@127.0.0.1:6379/zero",
    "misspelt-parameter": f"redis://127.0.0.1:6379/0?Password={WRONG}",
    "unsupported-scheme": f"redis+cassandra://:{WRONG}@h1:26379/0?password={WRONG}",
    "sentinel-without-master": f"redis+sentinel://:{WRONG}@h1:26379,h2:26379/?sentinel_password={WRONG}",
}

# name: (arguments after the root options, exit codes a wrong password gives)
COMMANDS = {
    "apply": (["apply", "-f", "{m}"], {2}),  # refused before planning: one error, nothing done
    "apply-json": (["apply", "-f", "{m}", "-o", "json"], {2}),
    "plan": (["plan", "-f", "{m}"], {2}),
    "plan-json": (["plan", "-f", "{m}", "-o", "json"], {2}),
    "delete": (["delete", "-f", "{m}"], {2}),
    "delete-json": (["delete", "-f", "{m}", "-o", "json"], {2}),
    "status": (["status"], {2}),
    "status-streams": (["status", "orders", "-f", "{m}"], {2}),
    "status-json": (["status", "orders", "-o", "json"], {2}),
    "status-yaml": (["status", "-o", "yaml"], {2}),
    "wait": (["wait", "--stream", "orders", "--group", "billing", "--timeout", "1s", "--interval", "1s"], {1}),
    "export": (["export"], {2}),
    "pub": (["pub", "orders", "hello"], {1}),
    "pub-json": (["pub", "orders", "hello", "-o", "json"], {1}),
    "sub-peek": (["sub", "orders", "--timeout", "1s"], {1}),
    "sub-group": (["sub", "orders", "-g", "billing", "--timeout", "1s"], {1}),
    "sub-url-json": (["sub", "redis://billing?topic=orders&consumer=c1", "--timeout", "1s", "-o", "json"], {1}),
}


def run_cli(*args: str, url: str | None = None, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"} | (env or {})
    cmd = [sys.executable, "-m", "redistreams.cli", "--redis-timeout", "2"]
    if url is not None:
        cmd += ["--redis-url", url]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=timeout, env=full_env, cwd=ROOT)


def assert_no_leak(text: str, what: object, *, traceback_ok: bool = False) -> None:
    assert MARK not in text, f"{what}: password shown:\n{text}"
    assert traceback_ok or "Traceback" not in text, f"{what}: traceback:\n{text}"


def assert_parses(command: str, stdout: str) -> None:
    if command.endswith("-json") and stdout.strip():
        for line in stdout.strip().splitlines() if command.startswith(("pub", "sub")) else [stdout]:
            json.loads(line)
    if command.endswith("-yaml"):
        yaml.safe_load(stdout)


def _args(command: str, manifests: Path) -> list[str]:
    return [a.replace("{m}", str(manifests)) for a in COMMANDS[command][0]]


@pytest.fixture(scope="module")
def manifests(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("manifests") / "m.yaml"
    path.write_text(MANIFESTS)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("form", ["userinfo", "query", "percent-encoded-userinfo", "percent-encoded-query",
                                  "unix-query"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_wrong_password_is_never_shown(server: RedisServer, manifests: Path, form: str, command: str) -> None:
    url = wrong_urls(server)[form]
    result = run_cli(*_args(command, manifests), url=url)
    assert_no_leak(result.stdout + result.stderr, (form, command))
    assert result.returncode in COMMANDS[command][1], (form, command, result.stderr)
    assert_parses(command, result.stdout)
    if not command.startswith("pub"):  # pub reports the server's reply only
        assert "***" in result.stdout + result.stderr, (form, command, result.stderr)


@pytest.mark.parametrize("form", ["userinfo-with-user", "unix-userinfo"])
@pytest.mark.parametrize("command", ["apply", "status-json", "pub", "sub-group"])
def test_other_userinfo_forms(server: RedisServer, manifests: Path, form: str, command: str) -> None:
    result = run_cli(*_args(command, manifests), url=wrong_urls(server)[form])
    assert_no_leak(result.stdout + result.stderr, (form, command))
    assert result.returncode in COMMANDS[command][1], (form, command, result.stderr)


@pytest.mark.slow
def test_redis_url_from_the_environment(server: RedisServer, manifests: Path) -> None:
    for form, url in wrong_urls(server).items():
        for command in ("apply", "pub", "sub-peek"):
            result = run_cli(*_args(command, manifests), env={"REDIS_URL": url})
            assert_no_leak(result.stdout + result.stderr, (form, command))
            assert result.returncode in COMMANDS[command][1], (form, command, result.stderr)


def test_the_right_password_in_every_form_works_and_is_not_shown(server: RedisServer, manifests: Path) -> None:
    for form, url in wrong_urls(server).items():
        right = url.replace(WRONG, RIGHT).replace(quote(SPECIAL, safe=""), RIGHT)
        applied = run_cli("apply", "-f", str(manifests), url=right)
        assert applied.returncode == 0, (form, applied.stderr)
        waited = run_cli("wait", "-f", str(manifests), "--timeout", "5s", url=right)
        assert waited.returncode == 0 and "***" in waited.stderr, (form, waited.stderr)
        for result in (applied, waited):
            assert RIGHT not in result.stdout + result.stderr, form


@pytest.mark.parametrize("url", list(MALFORMED.values()), ids=list(MALFORMED))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_malformed_url_is_invalid_input_without_its_password(manifests: Path, url: str, command: str) -> None:
    result = run_cli(*_args(command, manifests), url=url)
    assert_no_leak(result.stdout + result.stderr, command)
    assert result.returncode == 2, (command, result.stderr)
    assert "Redis URL" in result.stderr, result.stderr


@pytest.mark.parametrize("output", ["table", "json"])
@pytest.mark.parametrize("form", ["query", "unix-query"])
def test_status_watch(server: RedisServer, form: str, output: str) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "redistreams.cli", "--redis-url", wrong_urls(server)[form], "--redis-timeout", "1",
         "status", "orders", "--watch", "--interval", "1s", "-o", output],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        # Ctrl-C as on a terminal, even when this suite runs in the background (where
        # SIGINT is inherited ignored and Python would never see it).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # Two refreshes printed (not a fixed sleep: the CLI's start-up on a loaded machine can
    # take most of it), then Ctrl-C.
    seen = read_until(process, lambda out: out.count("refused the credentials") >= 2)
    process.send_signal(signal.SIGINT)
    rest, stderr = process.communicate(timeout=30)
    stdout = seen + rest
    assert_no_leak(stdout + stderr, form)
    assert "refused the credentials" in stdout and "***" in stdout
    if output == "json":
        lines = stdout.strip().splitlines()
        assert len(lines) >= 2 and all("refused" in json.loads(line)["streams"][0]["error"] for line in lines)


def test_status_watch_with_a_malformed_url() -> None:
    result = run_cli("status", "--watch", url=MALFORMED["bad-port"], timeout=30)
    assert_no_leak(result.stdout + result.stderr, "watch")
    assert result.returncode == 2


@pytest.mark.parametrize("url", list(MALFORMED.values()), ids=list(MALFORMED))
def test_operator_refuses_a_malformed_default_url_at_start_up(url: str) -> None:
    for result in (run_cli("operator", "--redis-url", url, "--metrics-port", "0", "--liveness", "", timeout=30),
                   run_cli("operator", "--metrics-port", "0", "--liveness", "", env={"REDIS_URL": url}, timeout=30)):
        assert_no_leak(result.stdout + result.stderr, "operator")
        assert result.returncode == 2 and "Redis URL" in result.stderr, result.stderr


# -- pub/sub from Python ---------------------------------------------------------------


def _text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))  # with chained causes and contexts


def assert_no_secret(text: str, what: object) -> None:
    assert_no_leak(text, what, traceback_ok=True)


def _records_text(caplog: pytest.LogCaptureFixture) -> str:
    parts = []
    for record in caplog.records:
        parts.append(record.getMessage())
        if record.exc_info:
            parts.append("".join(traceback.format_exception(*record.exc_info)))
    return "\n".join(parts)


@pytest.mark.parametrize("form", ["userinfo", "query", "percent-encoded-userinfo", "percent-encoded-query",
                                  "unix-query", "unix-userinfo"])
def test_pubsub_exceptions_and_logs_never_show_the_password(server: RedisServer, caplog: pytest.LogCaptureFixture,
                                                            monkeypatch: pytest.MonkeyPatch, form: str) -> None:
    caplog.set_level(logging.DEBUG)
    url = wrong_urls(server)[form]
    with pytest.raises(Exception) as published:
        with sync.open_topic("redis://orders", redis_url=url, retry_for=0.5) as topic:
            topic.send(b"hello")
    assert_no_secret(_text(published.value), ("publish", form))
    with pytest.raises(Exception) as subscribed:
        with sync.open_subscription("redis://billing?topic=orders&consumer=c1", redis_url=url, timeout=2) as sub:
            sub.receive(timeout=1)
    assert_no_secret(_text(subscribed.value), ("subscribe", form))
    monkeypatch.setenv("REDIS_URL", url)  # the Go driver's way
    with pytest.raises(Exception) as from_env:
        with sync.open_subscription("redis://billing?topic=orders&consumer=c2", timeout=2) as sub:
            sub.receive(timeout=1)
    assert_no_secret(_text(from_env.value), ("subscribe via REDIS_URL", form))
    assert_no_secret(_records_text(caplog), ("log records", form))


@pytest.mark.parametrize("url", list(MALFORMED.values()), ids=list(MALFORMED))
def test_pubsub_refuses_a_malformed_url_without_its_password(caplog: pytest.LogCaptureFixture, url: str) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConnectionConfigError) as published:
        sync.open_topic("redis://orders", redis_url=url)
    with pytest.raises(ConnectionConfigError) as subscribed:
        sync.open_subscription("redis://billing?topic=orders&consumer=c1", redis_url=url)
    for exc in (published.value, subscribed.value):
        assert_no_secret(_text(exc), url.split(":")[0])
    assert_no_secret(_records_text(caplog), "log records")


# -- the operator: conditions (and so Events) ----------------------------------------------


class SecretStore:
    """The one KubeAPI call the reconciler makes for a connection Secret."""

    def __init__(self, value: str) -> None:
        self.value = value

    async def secret_data(self, namespace: str, name: str) -> dict[str, bytes] | None:
        return {"url": self.value.encode("utf-8", "surrogateescape")}


def topic_body(secret: bool) -> dict:
    spec = {"connection": {"secretRef": {"name": "redis-a", "key": "url"}}} if secret else {}
    return {"apiVersion": "redistreams.dev/v1alpha1", "kind": "Topic",
            "metadata": {"name": "orders", "namespace": "team-a", "generation": 1, "uid": "u1"},
            "spec": spec, "status": {}}


def reconcile(default_url: str, secret_url: str | None = None) -> str:
    reconciler = Reconciler(cluster_id="c", default_url=default_url,
                            kube=SecretStore(secret_url) if secret_url is not None else None)  # type: ignore[arg-type]
    declared: Declared = reconciler.remember("Topic", topic_body(secret_url is not None))
    computed = asyncio.run(reconciler.run([declared.key]))
    return computed[declared.key].outcome.message


@pytest.mark.parametrize("form", ["userinfo", "query", "percent-encoded-query", "unix-query", "unix-userinfo"])
def test_conditions_never_show_a_password(server: RedisServer, form: str) -> None:
    url = wrong_urls(server)[form]
    message = reconcile(url)
    assert "refused the credentials" in message and "***" in message
    assert_no_leak(message, form)
    from_secret = reconcile("redis://127.0.0.1:1/0", secret_url=url)
    assert "refused the credentials" in from_secret
    assert_no_leak(from_secret, form)


@pytest.mark.parametrize("url", list(MALFORMED.values()), ids=list(MALFORMED))
def test_conditions_for_a_malformed_url(url: str) -> None:
    message = reconcile(url)
    assert_no_leak(message, url)
    assert "Redis URL" in message
    # From a Secret: named, its value never shown, not even redacted.
    from_secret = reconcile("redis://127.0.0.1:1/0", secret_url=url)
    assert from_secret.startswith('Secret "team-a/redis-a" key "url": '), from_secret
    assert_no_leak(from_secret, url)
    assert "127.0.0.1" not in from_secret and "***" not in from_secret and "mymaster" not in from_secret


def test_a_ready_condition_shows_the_url_redacted(make_redis) -> None:
    server = make_redis(password=RIGHT)  # its own: the CLI tests claimed "orders" on the shared one
    url = f"redis://127.0.0.1:{server.port}/0?password={RIGHT}"
    message = reconcile(url)
    assert message.startswith('stream "orders" exists on ') and "password=***" in message, message
    assert RIGHT not in message


def test_deleting_with_a_malformed_secret_url_names_the_secret() -> None:
    reconciler = Reconciler(cluster_id="c", default_url="redis://127.0.0.1:1/0",
                            kube=SecretStore(MALFORMED["bad-port"]))  # type: ignore[arg-type]
    declared = reconciler.remember("Topic", topic_body(secret=True))
    with pytest.raises(ConnectionConfigError) as caught:
        asyncio.run(reconciler.delete(declared))
    assert str(caught.value).startswith('Secret "team-a/redis-a" key "url": ')  # what the delete handler logs
    assert_no_secret(_text(caught.value), "delete")
