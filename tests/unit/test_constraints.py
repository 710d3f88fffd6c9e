"""constraints.txt pins the one dependency set the tests, CI and the image run
(`make lock` writes it): every dependency pyproject.toml declares is pinned, within the
range pyproject.toml allows, and the environment running these tests has those versions."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def pins() -> dict[str, Version]:
    pinned: dict[str, Version] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version.strip(), f"constraints.txt: {line!r} is not NAME==VERSION"
            pinned[canonicalize_name(name)] = Version(version.strip())
    return pinned


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project.get("optional-dependencies", {})
    return [Requirement(r) for r in [*project["dependencies"], *(r for group in extras.values() for r in group)]]


def test_every_declared_dependency_is_pinned_within_its_range() -> None:
    pinned = pins()
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement.name} (pyproject.toml) is not in constraints.txt: run make lock"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"constraints.txt pins {requirement.name}=={pinned[name]}, outside pyproject.toml's "
            f'"{requirement.specifier}": run make lock')


def test_the_tests_run_the_pinned_versions() -> None:
    pinned = pins()
    for requirement in declared():
        try:
            installed = Version(metadata.version(requirement.name))
        except metadata.PackageNotFoundError:
            continue  # an extra this environment does not install (docs)
        pin = pinned[canonicalize_name(requirement.name)]
        assert installed == pin, f"{requirement.name} {installed} installed, constraints.txt pins {pin}: run make venv"
