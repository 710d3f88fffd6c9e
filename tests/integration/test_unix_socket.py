"""unix:// URLs: the engine, the CLI and the client through redis-server's socket."""

from __future__ import annotations

from pathlib import Path

import pytest

from redistreams.connection import RedisTarget
from redistreams.engine import Engine, GroupIntent, Owner, TopicIntent
from redistreams.pubsub import Message, sync
from tests.support.aio import run, send_and_receive
from tests.support.manifests import TOPICS, write
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration


def socket_url(server: RedisServer, db: int = 0) -> str:
    return f"unix://{server.unix_socket}?db={db}"


def test_engine_over_a_unix_socket(redis_server: RedisServer) -> None:
    engine = Engine(RedisTarget(socket_url(redis_server, 3)).client())
    owner = Owner("c", "ns", "t")
    topic = TopicIntent("topic/t", owner, "sock/engine")
    group = GroupIntent("consumergroup/g", Owner("c", "ns", "g"), owner, "sock/engine", "g")
    assert {r.outcome for r in engine.reconcile([topic], [group])} == {"created"}
    assert redis_server.client(db=3).xinfo_groups("sock/engine")[0]["name"] == "g"
    assert redis_server.client().exists("sock/engine") == 0  # db=3 honoured


def test_cli_apply_status_pub_and_sub_over_a_unix_socket(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    url = socket_url(redis_server)
    path = write(tmp_path, TOPICS)
    assert cli("apply", "-f", path, url=url).returncode == 0
    status = cli("status", "-f", path, "-o", "json", url=url)
    assert status.returncode == 0 and '"billing"' in status.stdout, status.stderr
    assert cli("pub", "orders", "over-the-socket", url=url).returncode == 0
    got = cli("sub", "orders", "-g", "billing", "--count", "1", "--timeout", "5s", url=url)
    assert got.returncode == 0 and "over-the-socket" in got.stdout, got.stderr
    missing = cli("--redis-timeout", "1", "status", url=f"unix://{tmp_path / 'nothing.sock'}")
    assert missing.returncode == 2 and "unreachable" in missing.stderr and "Traceback" not in missing.stderr


def test_pubsub_client_over_a_unix_socket(redis_server: RedisServer) -> None:
    url = socket_url(redis_server)

    sent = [Message(b"one"), Message(b"two", {"k": "v"})]
    assert run(lambda: send_and_receive(url, "sock/pubsub", sent)) == [b"one", b"two"]
    with sync.open_topic("redis://sock/pubsub", redis_url=url) as topic:
        topic.send(Message(b"three"))
    assert redis_server.client().xlen("sock/pubsub") == 3
