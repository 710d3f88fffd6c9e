"""The GitOps examples say what the docs say they do, and everything they reference is
there: paths in this repository, sources defined in the examples, health.lua in the
argocd-cm patch. tests/e2e/test_gitops.py renders and applies them for real."""

from __future__ import annotations

from typing import Any

import yaml

from hack.argocd_cm import KINDS, data_key, render
from redistreams.manifests import load
from tests.support.gitops import (
    ARGOCD,
    FLUX,
    GITOPS,
    SOURCE_KINDS,
    Ref,
    argocd_applications,
    docs,
    flux_objects,
    included_files,
    kustomization_file,
    repo_path,
    source_ref,
)


def kustomizations() -> dict[str, dict[str, Any]]:
    return {ref.name: doc for ref, doc in flux_objects().items() if ref.kind == "Kustomization"}


def test_topics_load_and_come_in_an_early_wave() -> None:
    result = load([str(GITOPS / "topics")])
    assert result.errors == []
    resources = [*result.topics, *result.groups]
    assert resources and all(r.metadata.annotations["argocd.argoproj.io/sync-wave"] == "-1" for r in resources)
    (topic,) = result.topics
    assert "Delete=false" in topic.metadata.annotations["argocd.argoproj.io/sync-options"]
    assert topic.metadata.annotations["kustomize.toolkit.fluxcd.io/prune"] == "disabled"


def test_argocd_cm_patch_embeds_exactly_health_lua_for_both_kinds() -> None:
    script = (ARGOCD / "health.lua").read_text()
    (patch,) = docs(ARGOCD / "argocd-cm.yaml")
    assert (patch["kind"], patch["metadata"]["name"], patch["metadata"]["namespace"]) == \
        ("ConfigMap", "argocd-cm", "argocd")
    assert patch["data"] == {data_key(kind): script for kind in KINDS}
    assert set(patch["data"]) == {"resource.customizations.health.redistreams.dev_Topic",
                                  "resource.customizations.health.redistreams.dev_ConsumerGroup"}
    assert (ARGOCD / "argocd-cm.yaml").read_text() == render(), "run: python -m hack.argocd_cm"


def test_argocd_applications_point_at_existing_paths_and_never_at_themselves() -> None:
    apps = argocd_applications()
    assert {app["metadata"]["name"] for _, app in apps} == {"redistreams", "orders"}
    app_files = {file.resolve() for file, _ in apps}
    for file, app in apps:
        source = app["spec"]["source"]
        path = repo_path(source["path"])
        assert path.is_dir(), f"{file}: spec.source.path {source['path']} does not exist"
        if (path / "Chart.yaml").is_file():
            assert source["helm"]["valuesObject"]["redis"]["existingSecret"]
            continue
        included = {f.resolve() for f in included_files(path, source.get("directory", {}).get("recurse", False))}
        assert included and not included & app_files, f"{file}: its path includes an Application manifest"
        for included_file in included:
            assert all(d.get("kind") != "Application" for d in yaml.safe_load_all(included_file.read_text()) if d)


def test_argocd_orders_syncs_topics_before_the_publisher() -> None:
    (orders,) = [app for _, app in argocd_applications() if app["metadata"]["name"] == "orders"]
    files = included_files(repo_path(orders["spec"]["source"]["path"]))
    objects = [d for f in files if f.name != "kustomization.yaml" for d in docs(f)]
    waves = {d["kind"]: int(d["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", "0"))
             for d in objects}
    assert waves == {"Topic": -1, "ConsumerGroup": -1, "Deployment": 0}


def test_every_flux_source_and_path_exists() -> None:
    objects = flux_objects()
    sources = {ref for ref in objects if ref.kind in SOURCE_KINDS}
    assert sources
    users = [(ref, doc, doc["spec"]["sourceRef"]) for ref, doc in objects.items() if ref.kind == "Kustomization"]
    users += [(ref, doc, doc["spec"]["chart"]["spec"]["sourceRef"]) for ref, doc in objects.items()
              if ref.kind == "HelmRelease"]
    assert {ref.kind for ref, _, _ in users} == {"Kustomization", "HelmRelease"}
    for ref, doc, sref in users:
        assert source_ref(doc, sref) in sources, f"{ref}: sourceRef {sref} is not defined in gitops/flux"
        path = doc["spec"]["path"] if ref.kind == "Kustomization" else doc["spec"]["chart"]["spec"]["chart"]
        assert repo_path(path).is_dir(), f"{ref}: path {path} does not exist"
        if ref.kind == "HelmRelease":
            assert (repo_path(path) / "Chart.yaml").is_file()
        else:
            assert kustomization_file(repo_path(path)), f"{ref}: {path} has no kustomization.yaml"
        for dependency in doc["spec"].get("dependsOn", []):
            assert Ref("Kustomization", dependency["name"], ref.namespace) in objects, f"{ref}: dependsOn {dependency}"
    # Every source is used: an example defines nothing it does not need.
    assert sources == {source_ref(doc, sref) for _, doc, sref in users}


def test_flux_applies_the_operator_then_the_topics_then_the_publisher() -> None:
    ks = kustomizations()
    after = {name: [d["name"] for d in doc["spec"].get("dependsOn", [])] for name, doc in ks.items()}
    contents = {name: [d for f in included_files(repo_path(doc["spec"]["path"])) if f.name != "kustomization.yaml"
                       for d in docs(f)] for name, doc in ks.items()}
    (operator,) = [n for n, objs in contents.items() if any(d["kind"] == "HelmRelease" for d in objs)]
    (topics,) = [n for n, objs in contents.items() if any(d["kind"] == "Topic" for d in objs)]
    (publisher,) = [n for n, objs in contents.items() if any(d["kind"] == "Deployment" for d in objs)]
    assert after[topics] == [operator] and after[publisher] == [topics]
    assert ks[topics]["spec"]["wait"] is True and ks[topics]["spec"]["prune"] is False
    assert ks[operator]["spec"]["wait"] is True
    assert ks[topics]["spec"]["targetNamespace"] == ks[publisher]["spec"]["targetNamespace"]
    (release,) = [doc for ref, doc in flux_objects().items() if ref.kind == "HelmRelease"]
    assert release["spec"]["install"]["crds"] == release["spec"]["upgrade"]["crds"] == "CreateReplace"
    # The root kustomization (what a Flux bootstrap path includes) holds the source and
    # the Kustomizations, and not what they apply themselves.
    root = {f.resolve() for f in included_files(FLUX)}
    assert (FLUX / "sources.yaml").resolve() in root and (FLUX / "kustomizations.yaml").resolve() in root
    assert not root & {f.resolve() for name in ks for f in included_files(repo_path(ks[name]["spec"]["path"]))}


def test_publisher_waits_for_its_groups() -> None:
    (deployment,) = docs(GITOPS / "publisher" / "deployment.yaml")
    (init,) = deployment["spec"]["template"]["spec"]["initContainers"]
    assert init["args"][:5] == ["wait", "--stream", "orders", "--group", "billing"]
    topic, group = docs(GITOPS / "topics" / "orders.yaml")
    assert group["spec"]["topicRef"]["name"] == topic["metadata"]["name"] == "orders"
    assert group["metadata"]["name"] == "billing"
