"""The `redistreams` CLI run like a user would: a subprocess of this interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


class CLI:
    """Runs the installed ``redistreams`` entry point like a user would."""

    def __init__(self, url: str | None) -> None:
        self.url = url

    def __call__(self, *args: str, input: str | None = None, url: str | None = None,
                 timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        full_env = dict(os.environ)
        full_env.pop("REDIS_URL", None)
        if env:
            full_env.update(env)
        cmd = [sys.executable, "-m", "redistreams.cli"]
        target = url or self.url
        if target:
            cmd += ["--redis-url", target]
        return subprocess.run(cmd + list(args), input=input, capture_output=True, text=True,
                              timeout=timeout, env=full_env, cwd=ROOT)


def read_until(process: subprocess.Popen[str], done: Callable[[str], bool], within: float = 60) -> str:
    """The lines ``process`` printed until ``done(them)`` holds, or it ended, or ``within``
    seconds passed (then it is killed). For a command that refreshes (``--watch``): a fixed
    sleep counts refreshes that a slow start-up on a loaded machine has not printed yet."""
    assert process.stdout is not None
    watchdog = threading.Timer(within, process.kill)
    watchdog.start()
    text = ""
    try:
        while not done(text) and (line := process.stdout.readline()):
            text += line
    finally:
        watchdog.cancel()
    return text


# Runs the CLI in a fresh interpreter; its last stdout line reports what the run left
# behind: the exit code, top-level packages imported, whether pydantic scanned for plugins,
# whether the Topic model was built, whether the status models were loaded.
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


def run_reporting(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> tuple[dict[str, Any], str]:
    """(the report above, stderr) of one CLI run with ``args``, in ``env`` (else this one's)."""
    done = subprocess.run([sys.executable, "-c", REPORTING_CLI, json.dumps(list(args))], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr
