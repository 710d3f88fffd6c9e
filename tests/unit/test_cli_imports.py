"""What the CLI imports before it does anything (issue 14): ``--help``, ``--version`` and
shell completion of every command load click and the CLI's own modules, never Redis
clients, models, rich, YAML or the operator's dependencies. Asserted on ``sys.modules``
of a fresh process, not on time, so it holds on a loaded machine.

``redistreams wait`` itself (which needs a server) is checked in
tests/integration/test_wait_probe.py: it answers without importing redis-py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import pytest

from tests.support.cli import ROOT

HEAVY = {"redis", "hiredis", "pydantic", "pydantic_core", "rich", "yaml", "kopf", "aiohttp", "kubernetes",
         "prometheus_client", "asyncio", "ssl"}
COMMANDS = ["apply", "plan", "delete", "status", "wait", "export", "pub", "sub", "operator", "acl", "version",
            "completion"]

# The CLI run in a fresh interpreter; the modules it loaded are written to argv[2].
REPORT = """
import json, runpy, sys
args, report = json.loads(sys.argv[1]), sys.argv[2]
sys.argv = ["redistreams", *args]
code = 0
try:
    runpy.run_module("redistreams.cli", run_name="__main__")
except SystemExit as exc:
    code = exc.code
with open(report, "w") as out:
    json.dump({"exit": code, "modules": sorted(sys.modules)}, out)
"""


def modules_after(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, set[str]]:
    """(exit code, stdout, modules loaded) of one CLI run."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "report.json")
        done = subprocess.run([sys.executable, "-c", REPORT, json.dumps(args), path], capture_output=True,
                              text=True, timeout=60, cwd=ROOT, env={**os.environ, **(env or {})})
        with open(path) as report_file:
            report = json.load(report_file)
    return report["exit"], done.stdout, set(report["modules"])


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["completion", "bash"], ["version", "--client"],
                                  *([c, "--help"] for c in COMMANDS)],
                         ids=lambda a: " ".join(a))
def test_help_loads_nothing_heavy(args: list[str]) -> None:
    code, output, modules = modules_after(args)
    assert code == 0
    assert "Usage:" in output or "version" in output.lower() or "_REDISTREAMS_COMPLETE" in output
    loaded = {m.split(".")[0] for m in modules}
    assert not loaded & HEAVY, sorted(loaded & HEAVY)
    ours = {m for m in modules if m.startswith("redistreams.")}
    assert not any(m.startswith(("redistreams.engine", "redistreams.controller", "redistreams.connection",
                                 "redistreams.model", "redistreams.pubsub")) for m in ours), sorted(ours)


def test_shell_completion_loads_nothing_heavy() -> None:
    env = {"_REDISTREAMS_COMPLETE": "bash_complete", "COMP_WORDS": "redistreams wa", "COMP_CWORD": "1"}
    code, output, modules = modules_after([], env)
    assert code == 0
    assert "wait" in output
    assert not {m.split(".")[0] for m in modules} & HEAVY


def test_commands_turn_off_pydantics_plugin_scan_but_the_operator_and_the_user_decide(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import click

    from redistreams.cli import PYDANTIC_PLUGINS, cli

    context = click.Context(cli)
    monkeypatch.delenv(PYDANTIC_PLUGINS, raising=False)
    cli.get_command(context, "operator")  # long-running: pydantic's default, plugins and all
    assert PYDANTIC_PLUGINS not in os.environ
    cli.get_command(context, "wait")
    assert os.environ[PYDANTIC_PLUGINS] == "__all__"
    monkeypatch.setenv(PYDANTIC_PLUGINS, "")  # the user's own setting stays
    cli.get_command(context, "apply")
    assert os.environ[PYDANTIC_PLUGINS] == ""
