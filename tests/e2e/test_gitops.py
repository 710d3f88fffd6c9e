"""The GitOps examples (gitops/) rendered by the real tools and applied for real.

kustomize (hack/kustomize.sh) builds every path a Flux Kustomization or an Argo CD
Application points at, helm (hack/helm.sh) renders the chart with the HelmRelease's and
the Application's values, and every object is applied with server-side apply (strict
field validation, not a dry run) to a real kube-apiserver that has Argo CD's and Flux's
own CRDs (hack/gitops-crds.sh, from their Go modules). No controller runs: what is
checked is that the API server accepts every object as the tools would send it, that
every reference resolves to an object applied, and the order the examples declare.
Each test maps the examples' namespaces to fresh ones (namespaces never finish deleting
on the bare control plane)."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hack.argocd_cm import KINDS, data_key
from tests.support.controlplane import CRD_PATH, Cluster, cluster_for_tests, install_crds, wait_for
from tests.support.gitops import (
    ARGOCD,
    FLUX,
    ROOT,
    SOURCE_KINDS,
    argocd_applications,
    included_files,
    kustomization_file,
    repo_path,
)

pytestmark = pytest.mark.e2e

FIELD_MANAGER = "redistreams-gitops-e2e"
SOURCE_API = "source.toolkit.fluxcd.io/v1"
Objects = list[dict[str, Any]]


def tool(script: str) -> str:
    """Builds (once) and returns a tool from hack/; skips the module when it cannot."""
    result = subprocess.run([str(ROOT / "hack" / script), "--print-env"], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"hack/{script} failed (exit {result.returncode}): {result.stderr.strip()[-400:]}")
    return result.stdout.strip().split("=", 1)[1]


@pytest.fixture(scope="module")
def kustomize() -> str:
    return tool("kustomize.sh")


@pytest.fixture(scope="module")
def helm() -> str:
    return tool("helm.sh")


@pytest.fixture(scope="module")
def gitops_crds() -> Objects:
    folder = Path(tool("gitops-crds.sh"))
    return [d for f in sorted(folder.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]


@pytest.fixture(scope="module")
def cluster(kustomize: str, helm: str, gitops_crds: Objects) -> Iterator[Cluster]:
    """A bare API server with Argo CD's and Flux's CRDs; ours come from the chart."""
    with cluster_for_tests() as (cluster, _):
        install_crds(cluster, gitops_crds)
        yield cluster


# -- rendering ---------------------------------------------------------------------------


def build(kustomize: str, path: Path) -> Objects:
    assert kustomization_file(path), f"{path} has no kustomization.yaml"
    out = subprocess.run([kustomize, "build", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, f"kustomize build {path}: {out.stderr}"
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def template(helm: str, chart: Path, release: str, namespace: str, values: dict[str, Any],
             tmp_path: Path) -> Objects:
    """`helm template` as Flux and Argo CD run it (CRDs included: both install them)."""
    values_file = tmp_path / f"{release}-values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    out = subprocess.run([helm, "template", release, str(chart), "--namespace", namespace, "--include-crds",
                          "--values", str(values_file)], capture_output=True, text=True)
    assert out.returncode == 0, f"helm template {chart}: {out.stderr}"
    objects = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert {"CustomResourceDefinition", "Deployment"} <= {d["kind"] for d in objects}
    return objects


# -- applying ----------------------------------------------------------------------------


def established(cluster: Cluster, crd: str) -> bool:
    body = cluster.get(f"{CRD_PATH}/{crd}").raise_for_status().json
    conditions = (body.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


class Applier:
    """Server-side apply of rendered objects, the examples' namespaces mapped to fresh ones."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.suffix = uuid.uuid4().hex[:6]
        self.namespaces: set[str] = set()
        self.applied: list[dict[str, Any]] = []
        self._resources: dict[str, dict[str, dict[str, Any]]] = {}

    def ns(self, name: str) -> str:
        """The test's namespace for an example's namespace (created on first use)."""
        mapped = f"{name}-{self.suffix}"
        if mapped not in self.namespaces:
            body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": mapped}}
            response = self.cluster.post("/api/v1/namespaces", body)
            assert response.status in (201, 409), response.text
            self.namespaces.add(mapped)
        return mapped

    def resource(self, api_version: str, kind: str) -> dict[str, Any] | None:
        base = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
        if kind not in self._resources.get(base, {}):
            response = self.cluster.get(base)
            listed = (response.json or {}).get("resources") or [] if response.ok else []
            self._resources[base] = {r["kind"]: {**r, "base": base} for r in listed if "/" not in r["name"]}
        return self._resources[base].get(kind)

    def path(self, obj: dict[str, Any], name: str | None = None) -> str:
        """The URL of ``obj`` (discovery waits a little for a CRD just established)."""
        kind, api_version = obj["kind"], obj["apiVersion"]
        info = wait_for(lambda: self.resource(api_version, kind), f"{api_version} {kind} served", timeout=60)
        namespace = obj["metadata"].get("namespace")
        scope = f"/namespaces/{namespace}" if info["namespaced"] else ""
        return f"{info['base']}{scope}/{info['name']}/{name or obj['metadata']['name']}"

    def apply(self, objects: Objects, default_namespace: str | None = None, force_namespace: bool = False) -> Objects:
        """Applies CRDs first (waiting until served), then the rest; a namespaced object
        without a namespace goes to ``default_namespace`` (every one of them with
        ``force_namespace``, as Flux's targetNamespace does). Returns what the API
        server stored."""
        stored = []
        for obj in sorted(objects, key=lambda o: o["kind"] != "CustomResourceDefinition"):
            obj = json.loads(json.dumps(obj))
            meta = obj["metadata"]
            if obj["kind"] == "Namespace":
                meta["name"] = self.ns(meta["name"])
            elif (self.resource(obj["apiVersion"], obj["kind"]) or {"namespaced": True})["namespaced"]:
                target = default_namespace if force_namespace or not meta.get("namespace") else meta["namespace"]
                assert target, f"{obj['kind']}/{meta['name']}: no namespace"
                meta["namespace"] = self.ns(target)
            response = self.cluster.request(
                "PATCH", f"{self.path(obj)}?fieldManager={FIELD_MANAGER}&fieldValidation=Strict&force=true",
                json.dumps(obj).encode(), content_type="application/apply-patch+yaml")
            assert response.ok, f"{obj['kind']}/{meta['name']}: HTTP {response.status} {response.text[:800]}"
            assert not response.headers.get("Warning"), f"{obj['kind']}/{meta['name']}: {response.headers['Warning']}"
            stored.append(response.json)
            if obj["kind"] == "CustomResourceDefinition":
                wait_for(lambda name=meta["name"]: established(self.cluster, name), f"{meta['name']} Established")
        self.applied += stored
        return stored

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        obj = {"apiVersion": api_version, "kind": kind, "metadata": {"namespace": self.ns(namespace)}}
        response = self.cluster.get(self.path(obj, name))
        return response.json if response.ok else None


@pytest.fixture
def applier(cluster: Cluster) -> Applier:
    return Applier(cluster)


def ordered(items: dict[str, list[str]]) -> list[str]:
    """Names in dependsOn order (a cycle or an unknown name fails)."""
    done: list[str] = []
    while len(done) < len(items):
        ready = [n for n, deps in items.items() if n not in done and all(d in done for d in deps)]
        assert ready, f"dependsOn cycle or unknown name among {items}"
        done += sorted(ready)
    return done


# -- Flux --------------------------------------------------------------------------------


def test_flux_example_applies_in_dependency_order(kustomize: str, helm: str, applier: Applier,
                                                  tmp_path: Path) -> None:
    # What a bootstrap path includes: the namespace, the source, the Kustomizations.
    root = build(kustomize, FLUX)
    applier.apply(root)
    assert sorted(o["kind"] for o in root) == ["GitRepository", "Kustomization", "Kustomization", "Kustomization",
                                               "Namespace"]
    by_name = {o["metadata"]["name"]: o for o in root if o["kind"] == "Kustomization"}

    def source_exists(owner: dict[str, Any], ref: dict[str, Any]) -> None:
        """The source is one the examples define, and it was applied (Flux's default
        namespace for a sourceRef is its owner's)."""
        assert ref["kind"] in SOURCE_KINDS
        namespace = ref.get("namespace") or owner["metadata"]["namespace"]
        assert applier.get(SOURCE_API, ref["kind"], namespace, ref["name"]), \
            f"{owner['kind']}/{owner['metadata']['name']}: sourceRef {ref} was not applied"

    rendered_by: dict[str, Objects] = {}
    order = ordered({n: [d["name"] for d in k["spec"].get("dependsOn", [])] for n, k in by_name.items()})
    for name in order:
        spec = by_name[name]["spec"]
        source_exists(by_name[name], spec["sourceRef"])
        path = repo_path(spec["path"])
        assert path.is_dir(), f"Kustomization {name}: path {spec['path']} does not exist"
        rendered = build(kustomize, path)
        target = spec.get("targetNamespace")
        stored = applier.apply(rendered, target or by_name[name]["metadata"]["namespace"], force_namespace=bool(target))
        rendered_by[name] = stored
        for release in [o for o in rendered if o["kind"] == "HelmRelease"]:
            chart_spec = release["spec"]["chart"]["spec"]
            source_exists(release, chart_spec["sourceRef"])
            chart = repo_path(chart_spec["chart"])
            assert (chart / "Chart.yaml").is_file(), f"HelmRelease: chart {chart_spec['chart']} does not exist"
            namespace = release["spec"].get("targetNamespace") or release["metadata"]["namespace"]
            objects = template(helm, chart, release["spec"].get("releaseName", release["metadata"]["name"]),
                               namespace, release["spec"].get("values", {}), tmp_path)
            rendered_by[name] += applier.apply(objects, namespace)

    # The order: the operator (its CRDs), then the topics and groups, then the publisher
    # whose init container waits for exactly those groups, in their namespace.
    def holding(kind: str, name: str | None = None) -> str:
        (holder,) = [n for n, objs in rendered_by.items()
                     if any(o["kind"] == kind and name in (None, o["metadata"]["name"]) for o in objs)]
        return holder

    publisher_holder = holding("Deployment", "orders-publisher")
    assert order == [holding("CustomResourceDefinition"), holding("Topic"), publisher_holder]
    assert by_name[holding("Topic")]["spec"]["wait"] is True
    (publisher,) = [o for o in rendered_by[publisher_holder] if o["kind"] == "Deployment"]
    (init,) = publisher["spec"]["template"]["spec"]["initContainers"]
    assert init["args"][:5] == ["wait", "--stream", "orders", "--group", "billing"]
    topics = rendered_by[holding("Topic")]
    assert {("Topic", "orders"), ("ConsumerGroup", "billing")} <= {(o["kind"], o["metadata"]["name"]) for o in topics}
    assert {o["metadata"]["namespace"] for o in topics} == {publisher["metadata"]["namespace"]}


# -- Argo CD -----------------------------------------------------------------------------


def test_argocd_cm_patch_applies_and_carries_health_lua(applier: Applier) -> None:
    (patch,) = [d for d in yaml.safe_load_all((ARGOCD / "argocd-cm.yaml").read_text()) if d]
    # An install's own argocd-cm first (another field manager), then the patch over it.
    namespace = applier.ns(patch["metadata"]["namespace"])
    existing = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "argocd-cm", "namespace": namespace}, "data": {"url": "https://argocd.example"}}
    applier.cluster.post(f"/api/v1/namespaces/{namespace}/configmaps", existing).raise_for_status()
    applier.apply([patch])
    stored = applier.get("v1", "ConfigMap", patch["metadata"]["namespace"], "argocd-cm")
    assert stored is not None
    script = (ARGOCD / "health.lua").read_text()
    assert stored["data"] == {"url": "https://argocd.example", **{data_key(kind): script for kind in KINDS}}


def test_argocd_cm_patch_works_as_a_kustomize_patch(kustomize: str, tmp_path: Path) -> None:
    """The other documented use: under `patches:` of the kustomization installing Argo CD."""
    install = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "argocd-cm", "namespace": "argocd"},
               "data": {"url": "https://argocd.example"}}
    (tmp_path / "install.yaml").write_text(yaml.safe_dump(install))
    (tmp_path / "argocd-cm.yaml").write_text((ARGOCD / "argocd-cm.yaml").read_text())
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(
        {"resources": ["install.yaml"], "patches": [{"path": "argocd-cm.yaml"}]}))
    (built,) = build(kustomize, tmp_path)
    script = (ARGOCD / "health.lua").read_text()
    assert built["data"] == {"url": "https://argocd.example", **{data_key(kind): script for kind in KINDS}}


def test_argocd_applications_render_and_apply(kustomize: str, helm: str, applier: Applier,
                                              tmp_path: Path) -> None:
    apps = argocd_applications()
    stored_apps = applier.apply([app for _, app in apps])
    assert sorted(a["metadata"]["name"] for a in stored_apps) == ["orders", "redistreams"]
    app_names = {a["metadata"]["name"] for a in stored_apps}
    rendered: dict[str, Objects] = {}
    for file, app in apps:
        source, destination = app["spec"]["source"], app["spec"]["destination"]
        path = repo_path(source["path"])
        assert path.is_dir(), f"{file}: path {source['path']} does not exist"
        if (path / "Chart.yaml").is_file():
            helm_spec = source.get("helm", {})
            rendered[app["metadata"]["name"]] = template(
                helm, path, helm_spec.get("releaseName", app["metadata"]["name"]), destination["namespace"],
                helm_spec.get("valuesObject", {}), tmp_path)
        else:
            assert kustomization_file(path), f"{file}: {path} is not a kustomization"
            assert not {f.resolve() for f in included_files(path)} & {f.resolve() for f, _ in apps}
            rendered[app["metadata"]["name"]] = build(kustomize, path)
        # An Application never syncs its own manifest (nor another Application).
        assert not [o for o in rendered[app["metadata"]["name"]]
                    if o["kind"] == "Application" or o["metadata"]["name"] in app_names and
                    o["apiVersion"].startswith("argoproj.io/")], f"{file}: its path renders an Application"
    # Argo CD would retry the orders sync until the operator's CRDs exist: apply the chart first.
    dests = {a["metadata"]["name"]: a["spec"]["destination"]["namespace"] for _, a in apps}
    operator = applier.apply(rendered["redistreams"], dests["redistreams"])
    orders = applier.apply(rendered["orders"], dests["orders"])
    assert {"CustomResourceDefinition", "Deployment", "ServiceAccount"} <= {o["kind"] for o in operator}
    waves = {o["kind"]: int(o["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", "0"))
             for o in orders}
    assert waves == {"Topic": -1, "ConsumerGroup": -1, "Deployment": 0}
    assert {o["metadata"]["namespace"] for o in orders} == {applier.ns("orders")}
