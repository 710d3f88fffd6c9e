"""What the CLI builds of the model (issue 14): ``wait -f`` validates manifests with the
Topic and ConsumerGroup models but loads no status model and lets pydantic scan no
installed distributions for plugins (unless the user set PYDANTIC_DISABLE_PLUGINS
themselves); ``status`` reads Redis through the engine without loading pydantic or YAML.
Asserted on the state of a fresh process, not on time, so it holds on a loaded machine."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import run_reporting as cli_report
from tests.support.manifests import group, topic
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration

PLUGINS = "PYDANTIC_DISABLE_PLUGINS"
MANIFEST = topic("orders") + group("billing", "orders")


def run_reporting(url: str, *args: str, env: dict[str, str | None] | None = None) -> tuple[dict[str, Any], str]:
    full_env = {k: v for k, v in os.environ.items() if k not in (PLUGINS, "REDIS_URL")}
    full_env.update({k: v for k, v in (env or {}).items() if v is not None})
    return cli_report("--redis-url", url, *args, env=full_env)


@pytest.fixture
def manifest(redis_server: RedisServer, tmp_path: Path) -> str:
    client = redis_server.client()
    client.xadd("orders", {"body": "x"})
    client.xgroup_create("orders", "billing", "0")
    path = tmp_path / "orders.yaml"
    path.write_text(MANIFEST)
    return str(path)


def test_wait_f_validates_without_the_status_models_or_a_plugin_scan(redis_server: RedisServer, manifest: str) -> None:
    report, stderr = run_reporting(redis_server.url, "wait", "-f", manifest, "--timeout", "30s")
    assert report["exit"] == 0, stderr
    assert "ready: 1 streams and 1 groups exist" in stderr
    assert report["topic_built"]  # the manifests were validated by the model
    assert not report["status_models"]
    assert not report["plugins_scanned"]
    assert not {"redis", "rich"} & set(report["modules"])


def test_wait_f_keeps_the_users_plugin_setting(redis_server: RedisServer, manifest: str) -> None:
    # Set empty, pydantic's switch disables no plugin: the scan runs, as the user asked.
    report, stderr = run_reporting(redis_server.url, "wait", "-f", manifest, "--timeout", "30s", env={PLUGINS: ""})
    assert report["exit"] == 0, stderr
    assert report["plugins_scanned"]


def test_wait_f_still_refuses_invalid_manifests(redis_server: RedisServer, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(topic("orders") + group("billing", "Orders"))
    report, stderr = run_reporting(redis_server.url, "wait", "-f", str(bad), "--timeout", "1s")
    assert report["exit"] == 2
    assert (f'error: {bad}: document 2: ConsumerGroup "billing": spec.topicRef.name: invalid value "Orders": '
            "must be a lowercase DNS subdomain") in stderr, stderr
    assert not report["status_models"]


def test_status_loads_no_models_nor_yaml(redis_server: RedisServer, manifest: str) -> None:
    for args in (["status"], ["status", "orders", "-o", "json"]):
        report, stderr = run_reporting(redis_server.url, *args)
        assert report["exit"] == 0, stderr
        assert not {"pydantic", "pydantic_core", "yaml"} & set(report["modules"]), args
