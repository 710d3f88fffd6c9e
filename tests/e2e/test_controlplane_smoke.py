"""Smoke test of the test control plane: real TLS, token auth, RBAC, TokenRequest.

By default it starts etcd + kube-apiserver on loopback (first run builds them:
10-25 minutes). With REDISTREAMS_E2E_USE_KUBECONFIG=1 and KUBECONFIG set it
runs against that cluster instead.
"""

from __future__ import annotations

import re
import time
import uuid

import pytest

from tests.support.controlplane import Cluster, ControlPlane, cluster_for_tests

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def env() -> tuple[Cluster, ControlPlane | None]:
    with cluster_for_tests() as pair:
        yield pair


@pytest.fixture(scope="module")
def cluster(env) -> Cluster:
    return env[0]


@pytest.fixture(scope="module")
def namespace(cluster: Cluster) -> str:
    name = f"e2e-smoke-{uuid.uuid4().hex[:8]}"
    cluster.post("/api/v1/namespaces", {
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name},
    }).raise_for_status()
    yield name
    # Never waited for: without kube-controller-manager it stays Terminating.
    cluster.delete(f"/api/v1/namespaces/{name}")


@pytest.fixture(scope="module")
def sa_token(cluster: Cluster, namespace: str) -> str:
    cluster.post(f"/api/v1/namespaces/{namespace}/serviceaccounts", {
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "smoke"},
    }).raise_for_status()
    return cluster.create_token(namespace, "smoke", expiration_seconds=600)


def test_version_is_the_built_one(env) -> None:
    cluster, cp = env
    info = cluster.version()
    assert re.fullmatch(r"v1\.\d+\.\d+.*", info["gitVersion"]), info
    assert info["major"] == "1"
    if cp is not None:
        assert info["gitVersion"] == cp.version
        assert info["minor"] == cp.version.split(".")[1]


def test_admin_token_is_cluster_admin(cluster: Cluster) -> None:
    resp = cluster.post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"verb": "*", "group": "*", "resource": "*"}},
    }).raise_for_status()
    assert resp.json["status"]["allowed"] is True


def test_anonymous_is_denied(cluster: Cluster) -> None:
    assert cluster.get("/api/v1/secrets", anonymous=True).status in (401, 403)


def test_service_account_token_authenticates(cluster: Cluster, namespace: str, sa_token: str) -> None:
    resp = cluster.post("/apis/authentication.k8s.io/v1/selfsubjectreviews", {
        "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
    }, token=sa_token).raise_for_status()
    assert resp.json["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:smoke"


def test_rbac_denies_the_service_account(cluster: Cluster, namespace: str, sa_token: str) -> None:
    resp = cluster.get(f"/api/v1/namespaces/{namespace}/secrets", token=sa_token)
    assert resp.status == 403, resp.text
    assert resp.json["reason"] == "Forbidden"


def test_rbac_grants_what_a_role_allows(cluster: Cluster, namespace: str, sa_token: str) -> None:
    """RBAC is really evaluated (not deny-all): a Role opens configmaps only."""
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
    cluster.post(f"{rbac}/roles", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "read-configmaps"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}],
    }).raise_for_status()
    cluster.post(f"{rbac}/rolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "smoke-read-configmaps"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-configmaps"},
        "subjects": [{"kind": "ServiceAccount", "name": "smoke", "namespace": namespace}],
    }).raise_for_status()
    # The RBAC authorizer reads bindings from an informer: allow it a moment (more when loaded).
    deadline = time.monotonic() + 60
    while (status := cluster.get(f"/api/v1/namespaces/{namespace}/configmaps", token=sa_token).status) != 200:
        assert status == 403 and time.monotonic() < deadline, status
        time.sleep(0.1)
    assert cluster.get(f"/api/v1/namespaces/{namespace}/secrets", token=sa_token).status == 403


def test_kubeconfig_round_trip(env) -> None:
    """The written kubeconfig reads back into an equivalent Cluster."""
    cluster, cp = env
    if cp is None:
        pytest.skip("uses the ControlPlane's kubeconfig")
    again = Cluster.from_kubeconfig(cp.kubeconfig_path)
    assert (again.server, again.token, again.ca_data) == (cp.server, cp.admin_token, cp.ca_data)
    assert again.get("/api/v1/namespaces").status == 200
