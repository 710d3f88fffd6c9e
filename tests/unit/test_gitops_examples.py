"""The GitOps examples say what the docs say they do."""

from __future__ import annotations

from pathlib import Path

import yaml

from redistreams.manifests import load

GITOPS = Path(__file__).resolve().parents[2] / "gitops"


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_argocd_topics_load_and_come_in_an_early_wave() -> None:
    result = load([str(GITOPS / "argocd" / "topics")])
    assert result.errors == []
    resources = [*result.topics, *result.groups]
    assert resources and all(r.metadata.annotations["argocd.argoproj.io/sync-wave"] == "-1" for r in resources)
    assert "Delete=false" in result.topics[0].metadata.annotations["argocd.argoproj.io/sync-options"]


def test_flux_publishers_depend_on_the_topics() -> None:
    topics, service = docs(GITOPS / "flux" / "kustomizations.yaml")
    assert topics["spec"]["wait"] is True and topics["spec"]["prune"] is False
    assert service["spec"]["dependsOn"] == [{"name": topics["metadata"]["name"]}]
    (release,) = docs(GITOPS / "flux" / "helmrelease.yaml")
    assert release["spec"]["upgrade"]["crds"] == "CreateReplace"


def test_publisher_waits_for_its_groups() -> None:
    (deployment,) = docs(GITOPS / "publisher" / "deployment.yaml")
    (init,) = deployment["spec"]["template"]["spec"]["initContainers"]
    assert init["args"][:5] == ["wait", "--stream", "orders", "--group", "billing"]
    topic, group = docs(GITOPS / "argocd" / "topics" / "orders.yaml")
    assert group["spec"]["topicRef"]["name"] == topic["metadata"]["name"] == "orders"
