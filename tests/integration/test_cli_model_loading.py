"""What the CLI builds of the model (issue 14): ``wait -f`` validates manifests with the
Topic and ConsumerGroup models but loads no status model and lets pydantic scan no
installed distributions for plugins (unless the user set PYDANTIC_DISABLE_PLUGINS
themselves); ``status`` reads Redis through the engine without loading pydantic or YAML.
Asserted on the state of a fresh process, not on time, so it holds on a loaded machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import ROOT
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration

PLUGINS = "PYDANTIC_DISABLE_PLUGINS"
MANIFEST = """\
apiVersion: redistreams.dev/v1alpha1
kind: Topic
metadata: {name: orders}
---
apiVersion: redistreams.dev/v1alpha1
kind: ConsumerGroup
metadata: {name: billing}
spec: {topicRef: {name: orders}}
"""

# Runs the CLI in this interpreter; the last stdout line reports what the run left behind.
REPORTING_CLI = """
import json, runpy, sys
sys.argv = ["redistreams", *json.loads(sys.argv[1])]
code = 0
try:
    runpy.run_module("redistreams.cli", run_name="__main__")
except SystemExit as exc:
    code = exc.code
loader = sys.modules.get("pydantic.plugin._loader")
model = sys.modules.get("redistreams.model")
print(json.dumps({
    "exit": code,
    "modules": sorted({m.split(".")[0] for m in sys.modules}),
    "plugins_scanned": loader is not None and loader._plugins is not None,
    "topic_built": bool(model and model.Topic.__pydantic_complete__),
    "status_models": "redistreams.model_status" in sys.modules,
}))
"""


def run_reporting(url: str, *args: str, env: dict[str, str | None] | None = None) -> tuple[dict[str, Any], str]:
    full_env = {k: v for k, v in os.environ.items() if k not in (PLUGINS, "REDIS_URL")}
    full_env.update({k: v for k, v in (env or {}).items() if v is not None})
    done = subprocess.run([sys.executable, "-c", REPORTING_CLI, json.dumps(["--redis-url", url, *args])],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, env=full_env)
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


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
    bad.write_text(MANIFEST.replace("{name: orders}}", "{name: Orders}}"))
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
