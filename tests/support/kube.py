"""Kubernetes helpers for the e2e tests and bench/operator_burst.py: our resources
(create, get, wait for a condition, kstatus), namespaces and Events, the operator run
under the chart's ClusterRole (once RBAC allows it: ``wait_allowed``) and its periodic
passes counted (``wait_passes``). Talks to the API server through ``Cluster``
(tests/support/controlplane.py), the standard library only."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.support.controlplane import Cluster, wait_for

if TYPE_CHECKING:
    import pytest

API = "/apis/redistreams.dev/v1alpha1"
API_VERSION = "redistreams.dev/v1alpha1"
PLURALS = {"Topic": "topics", "ConsumerGroup": "consumergroups"}


# -- our resources ---------------------------------------------------------------------


def create(cluster: Cluster, ns: str, kind: str, name: str, spec: dict[str, Any], **meta: Any) -> dict[str, Any]:
    body = {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name, **meta}, "spec": spec}
    return cluster.post(f"{API}/namespaces/{ns}/{PLURALS[kind]}", body).raise_for_status().json


def get(cluster: Cluster, ns: str, kind: str, name: str) -> dict[str, Any]:
    """The object, or {} if it does not exist (any non-2xx answer)."""
    response = cluster.get(f"{API}/namespaces/{ns}/{PLURALS[kind]}/{name}")
    return response.json if response.ok else {}


def condition(body: dict[str, Any], kind: str = "Ready") -> dict[str, Any]:
    for c in (body.get("status") or {}).get("conditions") or []:
        if c["type"] == kind:
            return c
    return {}


def wait_ready(cluster: Cluster, ns: str, kind: str, name: str, status: str = "True", reason: str | None = None,
               timeout: float = 60) -> dict[str, Any]:
    """Waits until the Ready condition has ``status`` (and ``reason``); returns the object."""
    def check() -> dict[str, Any] | None:
        body = get(cluster, ns, kind, name)
        c = condition(body)
        if c.get("status") == status and (reason is None or c.get("reason") == reason):
            return body
        return None

    return wait_for(check, f"{kind} {ns}/{name} Ready={status} {reason or ''}", timeout)


def passes() -> int:
    """Periodic passes (resync.py) the operator running in this process has finished."""
    from redistreams.metrics import RESYNC_SECONDS

    return int(next(s.value for m in RESYNC_SECONDS.collect() for s in m.samples if s.name.endswith("_count")))


def wait_passes(count: int, timeout: float = 60) -> None:
    """Waits for ``count`` whole periodic passes of the operator running in this process
    (``run_operator``) begun after the call: "nothing happens over N passes" holds however
    slow or fast the machine, where a fixed sleep may see fewer passes than it assumes."""
    start = passes()
    wait_for(lambda: passes() - start > count, f"{count} periodic passes", timeout)  # the first may be under way


def kstatus(body: dict[str, Any]) -> str:
    """The status Flux, Helm 4 --wait and kpt compute (sigs.k8s.io/cli-utils kstatus rules)."""
    if body["metadata"].get("deletionTimestamp"):
        return "Terminating"
    status = body.get("status") or {}
    if "observedGeneration" in status and status["observedGeneration"] != body["metadata"]["generation"]:
        return "InProgress"
    by_type = {c["type"]: c["status"] for c in status.get("conditions") or []}
    if by_type.get("Reconciling") == "True":
        return "InProgress"
    if by_type.get("Stalled") == "True":
        return "Failed"
    if "Ready" in by_type:
        return "Current" if by_type["Ready"] == "True" else "InProgress"
    return "Current"


# -- namespaces and Events -------------------------------------------------------------


def new_namespace(cluster: Cluster, prefix: str) -> str:
    """Creates ``<prefix>-<8 hex>`` (namespaces never finish deleting on the bare control
    plane, so each test gets a fresh one)."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    cluster.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
                 ).raise_for_status()
    return name


def events(cluster: Cluster, ns: str, name: str, reason: str | None = None) -> list[dict[str, Any]]:
    """The Events about object ``name`` in ``ns`` (only those with ``reason``, if given)."""
    items = cluster.get(f"/api/v1/namespaces/{ns}/events").json["items"]
    return [e for e in items if e["involvedObject"]["name"] == name and reason in (None, e["reason"])]


def reasons(cluster: Cluster, ns: str, name: str) -> list[str]:
    return [e["reason"] for e in events(cluster, ns, name)]


# -- the operator ----------------------------------------------------------------------


def operator_kubeconfig(cluster: Cluster, path: str | os.PathLike[str], system: str | None = None) -> str:
    """A ServiceAccount in namespace ``system`` (default: a fresh ``redistreams-<hex>``)
    bound to exactly the ClusterRole the chart ships; writes a kubeconfig with its token
    to ``path`` and returns that path."""
    from redistreams.controller.rbac import cluster_role

    system = system or f"redistreams-{uuid.uuid4().hex[:6]}"
    cluster.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": system}}
                 ).raise_for_status()
    cluster.post(f"/api/v1/namespaces/{system}/serviceaccounts",
                 {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "operator"}}).raise_for_status()
    cluster.post("/apis/rbac.authorization.k8s.io/v1/clusterroles", cluster_role(system)).raise_for_status()
    cluster.post("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": system},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": system},
        "subjects": [{"kind": "ServiceAccount", "name": "operator", "namespace": system}],
    }).raise_for_status()
    token = cluster.create_token(system, "operator", expiration_seconds=3600)
    wait_allowed(cluster, token, "watch", "topics", "redistreams.dev")
    return cluster.kubeconfig_for_token(token, path)


def wait_allowed(cluster: Cluster, token: str, verb: str, resource: str, group: str = "",
                 namespace: str | None = None) -> None:
    """Waits until the API server allows ``token`` to ``verb`` ``resource``: its RBAC
    authorizer learns of a new (Cluster)RoleBinding from an informer, so what uses the
    token right after the binding is made could meet a 403 on a loaded machine."""
    attributes = {"verb": verb, "resource": resource, "group": group,
                  **({"namespace": namespace} if namespace else {})}
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
              "spec": {"resourceAttributes": attributes}}

    def allowed() -> bool:
        response = cluster.post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review, token=token)
        return response.ok and bool(response.json["status"].get("allowed"))

    wait_for(allowed, f"the token allowed to {verb} {group or 'core'}/{resource}")


def run_operator(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory, config: Any) -> Iterator[None]:
    """The operator in a thread, as a ServiceAccount bound to exactly the rules the chart
    ships; a generator for module fixtures (``yield from run_operator(...)``)."""
    from redistreams.controller.main import run_in_thread

    kubeconfig = operator_kubeconfig(cluster, Path(tmp_path_factory.mktemp("kube")) / "config")
    os.environ["KUBECONFIG"] = str(kubeconfig)
    thread, ready, stop = run_in_thread(config)
    assert ready.wait(60), "operator did not start"
    yield
    stop.set()
    thread.join(30)
