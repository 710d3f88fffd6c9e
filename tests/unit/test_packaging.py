"""The built wheel carries everything the package loads at run time."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_contains_the_lua_scripts(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("redistreams-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    scripts = {p.name for p in (ROOT / "operator/redistreams/engine/lua").glob("*.lua")}
    assert scripts and {f"redistreams/engine/lua/{s}" for s in scripts} <= names
    assert "redistreams/cli/__init__.py" in names and "redistreams/py.typed" in names
    assert not any(n.startswith(("tests/", "operator/")) for n in names)


def test_operator_dependencies_are_an_extra(tmp_path: Path) -> None:
    """`pip install redistreams` is the CLI and the client; kopf, aiohttp and
    prometheus-client come only with `redistreams[operator]`."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("redistreams-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        requires = [line.split(":", 1)[1].strip() for line in archive.read(metadata).decode().splitlines()
                    if line.startswith("Requires-Dist:")]
    name = re.compile(r"[A-Za-z0-9_.-]+")
    plain = {name.match(r).group().lower() for r in requires if "extra ==" not in r}  # type: ignore[union-attr]
    operator = {name.match(r).group().lower() for r in requires  # type: ignore[union-attr]
                if re.search(r"""extra == ["']operator["']""", r)}
    assert {"kopf", "aiohttp", "prometheus-client"} <= operator
    assert not plain & {"kopf", "aiohttp", "prometheus-client", "kubernetes"}, plain
    assert {"redis", "pydantic", "click"} <= plain
