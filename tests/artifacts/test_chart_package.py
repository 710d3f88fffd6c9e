"""The chart packaged by `make dist` (helm package): what it holds, and that the real helm
lints and renders the .tgz as it does the chart folder."""

from __future__ import annotations

import subprocess
import tarfile

import yaml

from .conftest import CHART, CHART_META, CHART_TGZ, SDIST, VERSION, artifact, tool


def test_package_holds_the_chart() -> None:
    with tarfile.open(artifact(CHART_TGZ, "dist")) as package:
        names = set(package.getnames())
        packaged_meta = yaml.safe_load(package.extractfile("redistreams/Chart.yaml"))  # type: ignore[arg-type]
    expected = {f"redistreams/{p.relative_to(CHART)}" for p in CHART.rglob("*") if p.is_file()}
    assert expected <= names, sorted(expected - names)
    assert packaged_meta["version"] == CHART_META["version"] and packaged_meta["appVersion"] == VERSION


def test_packaged_chart_lints_and_renders() -> None:
    helm, package = tool("helm.sh"), str(artifact(CHART_TGZ, "dist"))
    lint = subprocess.run([helm, "lint", package, "--strict"], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    out = subprocess.run([helm, "template", "rs", package, "--namespace", "rs", "--include-crds"],
                         check=True, capture_output=True, text=True)
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "CustomResourceDefinition", "ServiceAccount"} <= kinds, kinds
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"redistreams:{VERSION}"


def test_sdist_carries_the_package_and_its_scripts() -> None:
    with tarfile.open(artifact(SDIST, "dist")) as sdist:
        names = sdist.getnames()
    prefix = f"redistreams-{VERSION}/"
    assert f"{prefix}pyproject.toml" in names and f"{prefix}operator/redistreams/cli/__init__.py" in names
    assert any(n.startswith(f"{prefix}operator/redistreams/engine/lua/") and n.endswith(".lua") for n in names)
    assert not any(n.startswith(f"{prefix}tests/") for n in names)
