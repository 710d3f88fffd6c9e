"""The installable artifacts that `make dist` and `make image` build into dist/ (issue 15).

`make test` builds them first; run alone, a test whose artifact is missing is skipped with
the command that builds it (under CI=true it fails instead: CI must have built it).
"""

from __future__ import annotations

import os
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "dist"
CHART = ROOT / "charts" / "redistreams"
VERSION: str = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
CHART_META = yaml.safe_load((CHART / "Chart.yaml").read_text())
WHEEL = DIST / f"redistreams-{VERSION}-py3-none-any.whl"
SDIST = DIST / f"redistreams-{VERSION}.tar.gz"
CHART_TGZ = DIST / f"redistreams-{CHART_META['version']}.tgz"
IMAGE_TAR = DIST / "redistreams-image.tar"
# Wheels pip downloads for the test venvs, kept between runs.
PIP_CACHE = Path.home() / ".cache" / "redistreams" / "pip"


def artifact(path: Path, make_target: str) -> Path:
    if not path.is_file():
        message = f"{path.relative_to(ROOT)} is missing: run `make {make_target}`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def tool(script: str) -> str:
    """Path of a tool built by hack/<script> (built if missing)."""
    out = subprocess.run([str(ROOT / "hack" / script), "--print-env"], check=True, capture_output=True, text=True)
    return out.stdout.strip().split("=", 1)[1]
