"""Writes gitops/argocd/argocd-cm.yaml: the argocd-cm patch that registers
gitops/argocd/health.lua for both kinds (health.lua stays the one source; the unit test
tests/unit/test_gitops_examples.py fails when the two differ).

    python -m hack.argocd_cm          write the file
    python -m hack.argocd_cm --check  exit 1 if the file is not what would be written
"""

from __future__ import annotations

import sys
from pathlib import Path

ARGOCD = Path(__file__).resolve().parents[1] / "gitops" / "argocd"
KINDS = ("redistreams.dev/Topic", "redistreams.dev/ConsumerGroup")
HEADER = """\
# Generated from health.lua by `python -m hack.argocd_cm`; do not edit.
# Registers the health check for both kinds. Apply it over the argocd-cm of your install:
#   kubectl -n argocd apply --server-side --field-manager=redistreams -f argocd-cm.yaml
# (server-side apply owns these two keys only), or list it under `patches:` of the
# kustomization that installs Argo CD.
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  namespace: argocd
  labels:
    app.kubernetes.io/name: argocd-cm
    app.kubernetes.io/part-of: argocd
data:
"""


def data_key(kind: str) -> str:
    """Argo CD's key for a group/kind: `resource.customizations.health.<group>_<kind>`."""
    group, name = kind.split("/")
    return f"resource.customizations.health.{group}_{name}"


def render() -> str:
    script = (ARGOCD / "health.lua").read_text()
    body = "".join(f"    {line}" if line else "" for line in script.splitlines(keepends=True))
    return HEADER + "".join(f"  {data_key(kind)}: |\n{body}" for kind in KINDS)


def main(argv: list[str]) -> int:
    target = ARGOCD / "argocd-cm.yaml"
    if argv == ["--check"]:
        return 0 if target.exists() and target.read_text() == render() else 1
    target.write_text(render())
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
