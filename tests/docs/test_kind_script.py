"""hack/kind-e2e.sh cannot run here (no container engine): its syntax is checked (bash -n,
shellcheck when `make shellcheck` could install it), every repository file and chart value
it uses exists, and its failure paths that need no Docker behave."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "hack" / "kind-e2e.sh"


# This script and the tool fetchers the doc tests use.
SCRIPTS = [SCRIPT, ROOT / "hack" / "kubectl.sh", ROOT / "hack" / "keda-crds.sh"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_syntax(script: Path) -> None:
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck(script: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (make shellcheck installs it from apt)")
    result = subprocess.run([shellcheck, "-x", str(script)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_what_it_uses_exists() -> None:
    text = SCRIPT.read_text()
    paths = set(re.findall(r'"\$ROOT/([^"]+)"', text))
    assert {"Dockerfile", "charts/redistreams", "examples/topics.yaml", "examples/consumergroups.yaml"} <= paths
    for path in paths:
        assert (ROOT / path).exists(), path
    values = yaml.safe_load((ROOT / "charts" / "redistreams" / "values.yaml").read_text())
    for setting in re.findall(r"--set ([a-zA-Z.]+)=", text):
        node = values
        for key in setting.split("."):
            assert isinstance(node, dict) and key in node, f"chart value {setting} does not exist"
            node = node[key]
    # The kinds it waits for are the ones examples/ declares.
    kinds = {d["kind"] for f in ("topics.yaml", "consumergroups.yaml")
             for d in yaml.safe_load_all((ROOT / "examples" / f).read_text()) if d}
    assert kinds == {"Topic", "ConsumerGroup"} and "--for=condition=Ready topics,consumergroups --all" in text
    # That kubectl wait runs for real in the tutorial's test (tests/docs/test_tutorial.py).
    assert "--for=condition=Ready topics,consumergroups --all" in (ROOT / "docs" / "tutorial.md").read_text()


def test_help_and_bad_arguments_need_no_docker() -> None:
    helped = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "--cleanup" in helped.stdout and "kind load docker-image" in helped.stdout
    bad = subprocess.run(["bash", str(SCRIPT), "--clean"], capture_output=True, text=True)
    assert bad.returncode == 1 and "unknown argument: --clean" in bad.stderr


def test_missing_tools_are_named_before_anything_runs(tmp_path: Path) -> None:
    bash = shutil.which("bash")
    assert bash
    result = subprocess.run([bash, str(SCRIPT)], capture_output=True, text=True,
                            env={"PATH": str(tmp_path), "HOME": str(tmp_path)})
    assert result.returncode == 1
    assert "docker is not on PATH (needed: docker, kind, kubectl, helm)" in result.stderr
    assert "==>" not in result.stderr  # no step started
