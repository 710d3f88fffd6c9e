"""What the CLI does with input that would do nothing or too much, and with a Redis it
cannot use, on a real redis-server: input that declares nothing fails (kubectl's "no
objects passed"), a near-miss apiVersion is an error, a changed streamName or groupName
is refused as the CRD refuses it, a ConsumerGroup's file applies without its Topic's,
and an unusable Redis is one error within --redis-timeout."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.manifests import group, topic, write
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration

REGISTRY = "redistreams:owners"
DEPLOYMENT = '{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}\n---\n'


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


# -- input that declares nothing ------------------------------------------------------


def test_input_that_declares_nothing_fails(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    empty = write(tmp_path, "", "empty.yaml")
    (tmp_path / "no-yaml").mkdir()
    (tmp_path / "no-yaml" / "notes.txt").write_text("apiVersion: redistreams.dev/v1alpha1")
    others = write(tmp_path, DEPLOYMENT + '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}',
                   "others.yaml")
    before = redis_server.dirty()
    for command in (["apply"], ["plan"], ["delete"], ["status"], ["wait", "--timeout", "1s"]):
        name = command[0]
        for source, stdin in ((empty, None), ("-", ""), ("-", "---\n---\n"), (str(tmp_path / "no-yaml"), None),
                              (others, None)):
            result = cli(*command, "-f", source, input=stdin)
            assert result.returncode == 2, (command, source, result.stderr)
            assert errors(result.stderr) == [f"error: no objects passed to {name}"], (command, source, result.stderr)
            assert "Traceback" not in result.stderr
        kept = cli(*command, "-f", others)
        assert 'notice: skipping Deployment "web" (apps/v1)' in kept.stderr  # the notice stays
    assert redis_server.dirty() == before and redis_server.client().dbsize() == 0
    # One file declaring something among empty ones is a normal run.
    good = write(tmp_path, topic("orders"), "good.yaml")
    assert cli("apply", "-f", empty, "-f", good, "-f", str(tmp_path / "no-yaml")).returncode == 0


def test_a_near_miss_api_group_is_an_error(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    typo = json.dumps({"apiVersion": "redistream.dev/v1alpha1", "kind": "Topic", "metadata": {"name": "orders"}})
    wrong_version = json.dumps({"apiVersion": "redistreams.dev/v1", "kind": "Topic", "metadata": {"name": "v"}})
    kind_typo = json.dumps({"apiVersion": "redistreams.dev/v1alpha1", "kind": "Topics", "metadata": {"name": "k"}})
    no_group = json.dumps({"apiVersion": "v1alpha1", "kind": "ConsumerGroup", "metadata": {"name": "g"}})
    path = write(tmp_path, DEPLOYMENT + typo + "\n---\n" + wrong_version + "\n---\n" + kind_typo + "\n---\n"
                 + no_group + "\n---\n" + topic("good"), "mixed.yaml")
    before = redis_server.dirty()
    for command in ("apply", "plan"):
        result = cli(command, "-f", path)
        assert result.returncode == 2, result.stderr
        assert errors(result.stderr) == [
            f'error: {path}: document 2: Topic "orders": apiVersion: unknown API group "redistream.dev" '
            "(expected redistreams.dev/v1alpha1)",
            f'error: {path}: document 3: Topic "v": apiVersion: unsupported version "redistreams.dev/v1" '
            "(expected redistreams.dev/v1alpha1)",
            f'error: {path}: document 4: kind: unknown kind "Topics" in redistreams.dev (expected Topic or '
            "ConsumerGroup)",
            f'error: {path}: document 5: ConsumerGroup "g": apiVersion: unsupported value "v1alpha1" '
            "(expected redistreams.dev/v1alpha1)",
        ], result.stderr
        assert 'notice: skipping Deployment "web"' in result.stderr
    assert redis_server.dirty() == before and redis_server.client().dbsize() == 0
    # Another project's kind named Topic (Crossplane's SNS) is skipped, not an error.
    sns = json.dumps({"apiVersion": "sns.aws.upbound.io/v1beta1", "kind": "Topic", "metadata": {"name": "alerts"}})
    ok = cli("apply", "-f", write(tmp_path, sns + "\n---\n" + topic("good"), "sns.yaml"))
    assert ok.returncode == 0, ok.stderr
    assert 'notice: skipping Topic "alerts" (sns.aws.upbound.io/v1beta1)' in ok.stderr
    assert redis_server.client().exists("good") and not redis_server.client().exists("alerts")


# -- streamName and groupName are immutable -----------------------------------------


def test_changing_a_stream_or_group_name_is_refused(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    r = redis_server.client()
    first = write(tmp_path, topic("orders", streamName="orders/v1") + group("billing", "orders"), "first.yaml")
    assert cli("apply", "-f", first).returncode == 0
    registry = r.hgetall(REGISTRY)

    moved = write(tmp_path, topic("orders", streamName="orders/v2") + group("billing", "orders"), "moved.yaml")
    expected = ('spec.streamName is immutable: Topic "default/orders" (cluster "default") owns stream "orders/v1" '
                '(its ownership record), not "orders/v2". To move it, delete the Topic')
    planned = cli("plan", "-f", moved)
    assert planned.returncode == 2, planned.stderr
    assert f"! topic/orders: {moved}: document 1: {expected}" in planned.stdout  # the file, the resource, the field
    assert f"! consumergroup/billing: {moved}: document 2: topic/orders: spec.streamName is immutable" in planned.stdout
    applied = cli("apply", "-f", moved)
    assert applied.returncode == 1, applied.stderr
    assert f"error: topic/orders: {moved}: document 1: {expected}" in applied.stderr
    assert (f"error: consumergroup/billing: {moved}: document 2: topic/orders: spec.streamName is immutable"
            in applied.stderr)
    assert not r.exists("orders/v2") and r.hgetall(REGISTRY) == registry

    renamed = write(tmp_path, topic("orders", streamName="orders/v1")
                    + group("billing", "orders", groupName="billing-v2"), "renamed.yaml")
    refused = cli("apply", "-f", renamed)
    assert refused.returncode == 1, refused.stderr
    assert (f'error: consumergroup/billing: {renamed}: document 2: spec.groupName is immutable: ConsumerGroup '
            '"default/billing" (cluster "default") owns group "billing" on stream "orders/v1" (its ownership '
            'record), not group "billing-v2"'
            in refused.stderr)
    assert "topic/orders unchanged" in refused.stdout
    assert [g["name"] for g in r.xinfo_groups("orders/v1")] == ["billing"] and r.hgetall(REGISTRY) == registry

    # The way out the message gives: delete, then apply the new manifest.
    assert cli("delete", "-f", first).returncode == 0
    assert cli("apply", "-f", moved).returncode == 0
    assert r.exists("orders/v2") and json.loads(r.hget(REGISTRY, '["topic","orders/v2"]'))["name"] == "orders"


def test_another_resource_may_take_a_new_stream(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    """Only the resource that owns a stream is held to it: a new Topic is a new claim."""
    assert cli("apply", "-f", write(tmp_path, topic("orders"), "a.yaml")).returncode == 0
    both = cli("apply", "-f", write(tmp_path, topic("orders") + topic("orders-v2") + group("g", "orders-v2"), "b.yaml"))
    assert both.returncode == 0, both.stderr


# -- a ConsumerGroup's file without its Topic's ---------------------------------------


def test_a_group_file_applies_without_its_topic_file(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    r = redis_server.client()
    groups = write(tmp_path, group("billing", "orders") + group("audit", "orders", startId="0"), "groups.yaml")
    before = redis_server.dirty()
    for command in ("apply", "plan", "delete"):
        missing = cli(command, "-f", groups)
        assert missing.returncode == 2, missing.stderr
        assert (f'error: {groups}: document 1: ConsumerGroup "billing": spec.topicRef.name: Topic "orders" not found '
                f'in namespace "default" among the given manifests nor in Redis at {redis_server.url} (cluster id '
                '"default"): apply the Topic first, or include its file with -f') in missing.stderr, missing.stderr
    status = cli("status", "-f", groups)
    assert status.returncode == 0 and "Traceback" not in status.stderr, status.stderr  # issue 15: never fails for this
    assert 'notice: ' in status.stderr and 'Topic "orders" not found' in status.stderr
    waited = cli("wait", "-f", groups, "--timeout", "1s")  # it would wait for a stream it cannot name
    assert waited.returncode == 2 and "include its file with -f" in waited.stderr, waited.stderr
    assert redis_server.dirty() == before and r.dbsize() == 0

    assert cli("apply", "-f", write(tmp_path, topic("orders", streamName="orders/1"), "topic.yaml")).returncode == 0
    applied = cli("apply", "-f", groups)
    assert applied.returncode == 0, applied.stderr
    assert [line.split(":")[0] for line in applied.stdout.splitlines()] == [
        "consumergroup/billing created", "consumergroup/audit created"]
    assert sorted(g["name"] for g in r.xinfo_groups("orders/1")) == ["audit", "billing"]
    assert cli("plan", "-f", groups).returncode == 0
    shown = json.loads(cli("status", "-f", groups, "-o", "json").stdout)
    assert "orders/1" in json.dumps(shown)
    # Another cluster id's Topic is not ours to attach to.
    other = cli("--cluster-id", "eu-west", "apply", "-f", groups)
    assert other.returncode == 2 and 'cluster id "eu-west"' in other.stderr

    # The Topic's record without its stream (deleted by hand): the group never makes it.
    r.delete("orders/1")
    gone = cli("apply", "-f", groups)
    assert gone.returncode == 2, gone.stderr
    assert 'its Topic owns stream "orders/1", which does not exist' in gone.stderr
    assert not r.exists("orders/1")
    # delete finds the groups by their own records.
    assert cli("delete", "-f", groups).returncode == 0
    assert not r.hexists(REGISTRY, '["group","orders/1","billing"]')


# -- Redis unusable: one error, within --redis-timeout -------------------------------


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def test_a_silent_redis_is_one_error_within_the_timeout(cli, black_hole: int, tmp_path: Path) -> None:
    path = write(tmp_path, "".join(topic(f"t{i}") + group(f"g{i}", f"t{i}") for i in range(20)))
    url = f"redis://:s3cret-pw@127.0.0.1:{black_hole}/0"
    for command in ("apply", "plan", "delete"):
        started = time.monotonic()
        result = cli(command, "-f", path, "--redis-timeout", "1", url=url)
        elapsed = time.monotonic() - started
        assert result.returncode == 2, result.stderr
        assert errors(result.stderr) == [
            f"error: Redis at redis://:***@127.0.0.1:{black_hole}/0 did not answer in time: Timeout reading from "
            "socket (waited 1s: --redis-timeout); nothing was done"], result.stderr
        assert "s3cret" not in result.stdout + result.stderr
        assert result.stdout == ""
        assert elapsed < 1 * 3 + 2 + 3, elapsed  # one timeout, not redis-py's retries (+ interpreter start-up)


def test_refused_credentials_and_a_closed_port_are_one_error(cli, make_redis, tmp_path: Path) -> None:
    server = make_redis(password="right-pw", acl=())
    path = write(tmp_path, "".join(topic(f"t{i}") for i in range(10)))
    url = f"redis://:wrong-pw@127.0.0.1:{server.port}/0"
    for command in ("apply", "plan", "delete"):
        result = cli(command, "-f", path, url=url)
        assert result.returncode == 2, result.stderr
        (line,) = errors(result.stderr)
        assert line.startswith(f"error: Redis at redis://:***@127.0.0.1:{server.port}/0 refused the credentials")
        assert "wrong-pw" not in result.stderr and line.endswith("; nothing was done")
    closed = cli("plan", "-f", path, url="redis://127.0.0.1:1/0")
    assert closed.returncode == 2 and len(errors(closed.stderr)) == 1 and "is unreachable" in closed.stderr


def test_a_user_refused_every_command_is_one_error(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    r = redis_server.client()
    r.execute_command("ACL", "SETUSER", "nobody", "on", ">pw", "~*", "-@all")
    path = write(tmp_path, "".join(topic(f"t{i}") for i in range(10)))
    url = f"redis://nobody:pw@127.0.0.1:{redis_server.port}/0"
    for command in ("apply", "plan", "delete"):
        result = cli(command, "-f", path, url=url)
        assert result.returncode == 2, result.stderr
        (line,) = errors(result.stderr)
        assert line.startswith(f"error: permission denied by Redis ACL at redis://nobody:***@127.0.0.1:"
                               f"{redis_server.port}/0: user \"nobody\" may not run 'scan'"), line
        assert line.endswith("; nothing was done")
    assert r.dbsize() == 0


# -- global options after the subcommand ------------------------------------------------


def test_registry_key_and_timeout_after_the_subcommand(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    r = redis_server.client()
    path = write(tmp_path, topic("orders"))
    result = cli("apply", "-f", path, "--registry-key", "team:owners", "--redis-timeout", "5s")
    assert result.returncode == 0, result.stderr
    assert r.exists("team:owners") and not r.exists(REGISTRY)
    # Before the subcommand as ever, and the subcommand's value wins.
    assert cli("--registry-key", "other:owners", "plan", "-f", path, "--registry-key", "team:owners").returncode == 0
    assert not r.exists("other:owners")
    bad = cli("plan", "-f", path, "--redis-timeout", "0")
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "invalid duration" in bad.stderr


def test_a_bad_duration_names_its_option_and_seconds_are_accepted(cli, redis_server: RedisServer) -> None:
    for args, option in ((["wait", "--stream", "s", "--timeout", "1x"], "--timeout"),
                         (["wait", "--stream", "s", "--interval", "soon"], "--interval"),
                         (["sub", "s", "--timeout", "0"], "--timeout"),
                         (["status", "-w", "--interval", "-1"], "--interval"),
                         (["operator", "--resync-interval", "5q"], "--resync-interval")):
        result = cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith(f"error: Invalid value for '{option}': invalid duration"), result.stderr
    # A bare number is seconds, fractions too (one duration style for every option).
    started = time.monotonic()
    waited = cli("wait", "--stream", "s", "--timeout", "1.5", "--interval", "0.25")
    assert waited.returncode == 1 and "timed out after 1.5s waiting for" in waited.stderr, waited.stderr
    assert time.monotonic() - started < 30
