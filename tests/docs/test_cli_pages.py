"""Every command of the CLI pages (docs/quickstart.md, docs/acl.md) run as written, against
a real redis-server on a free port, with what each page says it prints.

The pages say port 6379: the test runs the same commands with a free port instead. One
command is not run: ``pip install .`` (the test runs in the .venv that ``make setup``
installed the checkout into, with its `redistreams` first on PATH)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.docs.console import Command, commands, run
from tests.support.controlplane import wait_for
from tests.support.net import ReservedPort
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
NOT_RUN = {"pip install .": "the .venv has the checkout installed (make setup)"}
DOCUMENTED_PORT = "6379"


def _env(port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("REDIS_URL", None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


def _on_port(command: Command, port: int) -> Command:
    return Command(command.page, command.line, command.text.replace(DOCUMENTED_PORT, str(port)), command.exits,
                   command.expected)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    return tmp_path


def test_quickstart(workdir: Path) -> None:
    page = commands(DOCS / "quickstart.md")
    texts = [c.text for c in page]
    assert texts[:3] == ["pip install .", "redis-server --port 6379 --daemonize yes --save ''",
                         "export REDIS_URL=redis://localhost:6379/0"], texts
    for needed in ("plan", "apply", "status", "wait", "pub", "sub"):
        assert any(t.startswith(f"redistreams {needed} ") for t in texts), needed
    reserved = ReservedPort()  # held until the page's redis-server listens there (it binds with SO_REUSEADDR)
    port = reserved.port
    env = _env(port)
    try:
        for command in page:
            if command.text in NOT_RUN:
                continue
            run(_on_port(command, port), env, workdir)
            if command.text.startswith("redis-server "):
                # --daemonize yes returns before the server listens: the time a person takes to
                # type the next command, the test waits for.
                wait_for(lambda: _answers(port), f"the page's redis-server on port {port}", 30)
        # What the page says happened did: billing consumed the message, audit did not.
        status = subprocess.run(["redistreams", "status", "orders", "-o", "json"], env=env, cwd=workdir,
                                capture_output=True, text=True, check=True)
        assert '"lag": 0' in status.stdout and '"lag": 1' in status.stdout
    finally:
        reserved.release()
        try:
            redis.Redis(port=port).shutdown(nosave=True)
        except redis.ConnectionError:
            pass  # stopped (or never started: the failure above says why)


def _answers(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_timeout=5).ping())
    except redis.ConnectionError:
        return False


@pytest.fixture
def redis_for_page() -> Iterator[RedisServer]:
    server = RedisServer().start()  # the default user, as on the quick start's Redis
    yield server
    server.close()


def test_acl_page(workdir: Path, redis_for_page: RedisServer) -> None:
    page = commands(DOCS / "acl.md")
    assert len(page) >= 5
    env = _env(redis_for_page.port)
    env["REDIS_URL"] = redis_for_page.url
    for command in page:
        run(_on_port(command, redis_for_page.port), env, workdir)
    # The users the page made exist with exactly the rules it printed.
    users = redis_for_page.client().acl_list()
    assert any(u.startswith("user orders-writer on") and "+xadd" in u for u in users), users
