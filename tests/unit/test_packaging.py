"""The built wheel carries everything the package loads at run time."""

from __future__ import annotations

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
