"""The site builds strictly (`mkdocs build --strict`, as `make docs` runs it: broken links,
anchors, snippets or nav entries fail), and the reference pages generated at build time
cover every field of the CRDs and every command of the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest

from hack.docs_reference import cli_page, resources_page
from redistreams.cli import cli
from redistreams.crds import generate

ROOT = Path(__file__).resolve().parents[2]


def _paths(node: dict[str, Any], prefix: str) -> list[str]:
    found = []
    for name, child in node.get("properties", {}).items():
        found.append(f"{prefix}.{name}")
        if child.get("type") == "array":
            found += _paths(child.get("items", {}), f"{prefix}.{name}[]")
        else:
            found += _paths(child, f"{prefix}.{name}")
    return found


def test_site_builds_strictly(tmp_path: Path) -> None:
    mkdocs = Path(sys.executable).parent / "mkdocs"
    if not mkdocs.exists():
        pytest.fail("mkdocs is not in the .venv: make docs-tools installs it (the docs extra)", pytrace=False)
    result = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, env={"NO_MKDOCS_2_WARNING": "1",
                                                                              "PATH": str(mkdocs.parent)})
    assert result.returncode == 0, result.stdout + result.stderr
    site = tmp_path / "site"
    for page in ("quickstart", "tutorial", "acl", "keda", "kind", "reference/resources", "reference/cli"):
        assert (site / page / "index.html").is_file(), page
    tutorial = (site / "tutorial" / "index.html").read_text()
    assert "OpenSubscription" in tutorial and "open_subscription" in tutorial  # the snippets were included
    assert "--8&lt;--" not in tutorial and "--8<--" not in tutorial


def test_resource_reference_has_every_field_default_and_rule() -> None:
    page = resources_page()
    for crd in generate():
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for part in ("spec", "status"):
            for path in _paths(schema["properties"][part], part):
                assert f"| `{path}` |" in page, path
    assert "| `spec.startId` | string |  | `$` |" in page
    assert "one of `Retain`, `Delete`" in page
    assert "streamName is immutable" in page


def test_cli_reference_has_every_command() -> None:
    page = cli_page()
    ctx = click.Context(cli, info_name="redistreams")
    names = cli.list_commands(ctx)
    assert {"apply", "plan", "status", "wait", "pub", "sub", "acl"} <= set(names)
    for name in names:
        command = cli.get_command(ctx, name)
        assert command is not None
        assert f"## redistreams {name}\n" in page, name
        for param in command.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("-") and not getattr(param, "hidden", False):
                    assert opt in page, (name, opt)
