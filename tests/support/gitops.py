"""The GitOps examples in gitops/ as data: their documents, what each Flux Kustomization,
HelmRelease and Argo CD Application points at, and which repository files a path
includes (kustomization.yaml ``resources``, followed as kustomize does; or a plain
folder, as Argo CD reads one). Used by the unit test (no tools) and the e2e test (which
renders the same paths with the real kustomize and helm)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
GITOPS = ROOT / "gitops"
ARGOCD = GITOPS / "argocd"
FLUX = GITOPS / "flux"
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SOURCE_KINDS = ("GitRepository", "HelmRepository", "OCIRepository")


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def all_docs(folder: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every document of every YAML file under ``folder``, with its file."""
    return [(file, doc) for file in sorted(folder.rglob("*.y*ml")) for doc in docs(file)]


def repo_path(path: str) -> Path:
    """A path as Flux and Argo CD read it: relative to the repository root."""
    return ROOT / path.removeprefix("./")


def kustomization_file(folder: Path) -> Path | None:
    return next((folder / n for n in KUSTOMIZATION_FILES if (folder / n).is_file()), None)


def included_files(path: Path, recurse: bool = False) -> list[Path]:
    """The files a kustomize or Argo CD "directory" source at ``path`` reads: a
    kustomization's resources (folders followed), else the folder's YAML files."""
    kustomization = kustomization_file(path)
    if kustomization is None:
        pattern = "**/*.y*ml" if recurse else "*.y*ml"
        return sorted(p for p in path.glob(pattern) if p.is_file())
    files = [kustomization]
    (spec,) = docs(kustomization)
    for entry in spec.get("resources", []):
        target = (path / entry).resolve()
        assert target.exists(), f"{kustomization}: resource {entry!r} does not exist"
        files += included_files(target) if target.is_dir() else [target]
    return files


@dataclass(frozen=True)
class Ref:
    kind: str
    name: str
    namespace: str


def flux_objects() -> dict[Ref, dict[str, Any]]:
    """Every Flux object the examples define (kind, name, namespace)."""
    out: dict[Ref, dict[str, Any]] = {}
    for _, doc in all_docs(FLUX):
        if doc.get("apiVersion", "").split("/")[0].endswith(".toolkit.fluxcd.io"):
            meta = doc["metadata"]
            out[Ref(doc["kind"], meta["name"], meta.get("namespace", ""))] = doc
    return out


def source_ref(owner: dict[str, Any], ref: dict[str, Any]) -> Ref:
    """Flux's rule: a sourceRef without a namespace is in its owner's namespace."""
    return Ref(ref["kind"], ref["name"], ref.get("namespace") or owner["metadata"].get("namespace", ""))


def argocd_applications() -> list[tuple[Path, dict[str, Any]]]:
    return [(f, d) for f, d in all_docs(ARGOCD) if d.get("kind") == "Application"]
