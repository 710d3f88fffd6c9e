"""The Helm chart, rendered by the real helm (built by hack/helm.sh) and checked by the
real API server (server-side dry run, strict field validation)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from redistreams.controller.rbac import LEADER_ELECTION_RULES, OPERATOR_RULES, SECRET_RULES
from tests.support.controlplane import Cluster, cluster_for_tests, wait_for
from tests.support.kube import wait_allowed
from tests.support.net import free_port
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "redistreams"
PLURALS = {"Service": "services", "ServiceAccount": "serviceaccounts", "Secret": "secrets", "Deployment": "deployments",
           "ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings", "Role": "roles",
           "RoleBinding": "rolebindings", "CustomResourceDefinition": "customresourcedefinitions",
           "ConfigMap": "configmaps", "PodDisruptionBudget": "poddisruptionbudgets"}
VALUE_SETS = {
    "defaults": [],
    "redis-url": ["--set", "redis.url=redis://redis.data:6379/0"],
    "namespaced": ["--set", "watchNamespaces={team-a,team-b}", "--set", "redis.existingSecret=my-redis"],
    "no-secrets-json-logs": ["--set", "rbac.readSecrets=false", "--set", "logFormat=json", "--set", "verbose=true",
                             "--set", "rbac.aggregateToViewEdit=false", "--set", "metrics.service.enabled=true"],
    "dashboard-observe-off": ["--set", "metrics.dashboard.enabled=true", "--set", "observeInterval=off"],
}


@pytest.fixture(scope="module")
def helm() -> str:
    out = subprocess.run([str(ROOT / "hack" / "helm.sh"), "--print-env"], check=True, capture_output=True, text=True)
    return out.stdout.strip().split("=", 1)[1]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with cluster_for_tests() as (cluster, _):
        yield cluster


def render(helm: str, *args: str, namespace: str = "redistreams-system") -> list[dict[str, Any]]:
    out = subprocess.run([helm, "template", "rs", str(CHART), "--namespace", namespace, "--include-crds", *args],
                         check=True, capture_output=True, text=True)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def path_for(doc: dict[str, Any]) -> str:
    group_version = doc["apiVersion"]
    base = f"/api/{group_version}" if "/" not in group_version else f"/apis/{group_version}"
    namespace = doc["metadata"].get("namespace")
    scope = f"/namespaces/{namespace}" if namespace else ""
    return f"{base}{scope}/{PLURALS[doc['kind']]}"


def test_lint(helm: str) -> None:
    result = subprocess.run([helm, "lint", str(CHART), "--strict"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_rendered_manifests_pass_the_api_server(helm: str, cluster: Cluster, name: str) -> None:
    suffix = uuid.uuid4().hex[:6]
    release_ns = f"rs-{suffix}"
    args = [a.replace("team-a", f"team-a-{suffix}").replace("team-b", f"team-b-{suffix}") for a in VALUE_SETS[name]]
    docs = render(helm, *args, namespace=release_ns)
    for ns in {release_ns, *(d["metadata"].get("namespace") for d in docs if d["metadata"].get("namespace"))}:
        cluster.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "ServiceAccount", "CustomResourceDefinition"} <= kinds
    for doc in docs:
        response = cluster.post(f"{path_for(doc)}?dryRun=All&fieldValidation=Strict", doc)
        assert response.status in (200, 201), f"{doc['kind']}/{doc['metadata']['name']}: {response.text}"


def _normal(rules: list[dict[str, Any]]) -> list[tuple]:
    return sorted((tuple(r["apiGroups"]), tuple(sorted(r["resources"])), tuple(sorted(r["verbs"]))) for r in rules)


def test_operator_rules_are_exactly_the_tested_ones(helm: str) -> None:
    docs = render(helm)
    (role,) = [d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "rs-redistreams"]
    assert _normal(role["rules"]) == _normal(OPERATOR_RULES + SECRET_RULES)
    without = render(helm, "--set", "rbac.readSecrets=false")
    (role,) = [d for d in without if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "rs-redistreams"]
    assert _normal(role["rules"]) == _normal(OPERATOR_RULES)
    namespaced = render(helm, "--set", "watchNamespaces={a,b}")
    assert not [d for d in namespaced if d["kind"] == "ClusterRoleBinding"]
    assert sorted(d["metadata"]["namespace"] for d in namespaced if d["kind"] == "RoleBinding") == \
        ["a", "b", "redistreams-system"]
    # Leader election: a Role in the release namespace only, exactly LEADER_ELECTION_RULES.
    (lease_role,) = [d for d in docs if d["kind"] == "Role"]
    assert lease_role["metadata"]["namespace"] == "redistreams-system"
    assert _normal(lease_role["rules"]) == _normal(LEADER_ELECTION_RULES)
    (binding,) = [d for d in docs if d["kind"] == "RoleBinding"]
    assert binding["roleRef"]["name"] == lease_role["metadata"]["name"]
    single = render(helm, "--set", "replicaCount=1", "--set", "leaderElection.enabled=false")
    assert not [d for d in single if d["kind"] in ("Role", "RoleBinding")]


def test_deployment_shape(helm: str) -> None:
    docs = render(helm, "--set", "redis.url=redis://r:6379/0", "--set", "watchNamespaces={a}")
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    spec = deployment["spec"]
    # Two replicas, one reconciling (the Lease holder): rolling updates are safe.
    assert spec["replicas"] == 2 and spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert "--namespace=a" in container["args"] and container["args"][0] == "operator"
    assert {"--leader-elect", "--lease-name=rs-redistreams", "--lease-duration=10s", "--renew-deadline=7s",
            "--retry-period=2s"} <= set(container["args"])
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert container["readinessProbe"]["httpGet"]["path"] == container["livenessProbe"]["httpGet"]["path"]
    (pdb,) = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]
    single = render(helm, "--set", "replicaCount=1", "--set", "leaderElection.enabled=false")
    (one,) = [d for d in single if d["kind"] == "Deployment"]
    assert one["spec"]["replicas"] == 1 and one["spec"]["strategy"]["type"] == "Recreate"
    assert "--leader-elect" not in one["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not [d for d in single if d["kind"] == "PodDisruptionBudget"]
    both = subprocess.run([helm, "template", "rs", str(CHART), "--set", "leaderElection.enabled=false"],
                          capture_output=True, text=True)
    assert both.returncode != 0 and "needs leaderElection.enabled" in both.stderr
    assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"]["key"] == "url"  # never a plain value
    assert "redis://" not in json.dumps(deployment)
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert security["capabilities"]["drop"] == ["ALL"]
    pod_security = pod["securityContext"]
    assert pod_security["runAsNonRoot"] and pod_security["seccompProfile"]["type"] == "RuntimeDefault"
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    crds = {d["metadata"]["name"] for d in docs if d["kind"] == "CustomResourceDefinition"}
    assert crds == {"topics.redistreams.dev", "consumergroups.redistreams.dev"}


def test_values_schema_rejects_typos(helm: str) -> None:
    for bad in (["--set", "replicas=2"], ["--set", "redis.uri=redis://x"], ["--set", "logFormat=yaml"],
                ["--set", "resyncInterval=1 minute"]):
        result = subprocess.run([helm, "template", "rs", str(CHART), *bad], capture_output=True, text=True)
        assert result.returncode != 0, bad
        assert "values don't meet the specifications of the schema" in result.stderr, result.stderr


def test_publisher_example_passes_the_api_server(cluster: Cluster) -> None:
    ns = f"pub-{uuid.uuid4().hex[:6]}"
    cluster.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    manifest = ROOT / "gitops" / "publisher" / "deployment.yaml"
    (deployment,) = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
    response = cluster.post(f"/apis/apps/v1/namespaces/{ns}/deployments?dryRun=All&fieldValidation=Strict", deployment)
    assert response.status == 201, response.text


def _ready(cluster: Cluster, ns: str, plural: str, name: str) -> bool:
    body = cluster.get(f"/apis/redistreams.dev/v1alpha1/namespaces/{ns}/{plural}/{name}").json
    return any(c["type"] == "Ready" and c["status"] == "True" for c in body.get("status", {}).get("conditions", []))


def test_install_run_as_the_chart_identity_upgrade_uninstall(helm: str, cluster: Cluster, redis: RedisServer,
                                                              tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:6]
    release_ns, watched, other = f"rs-{suffix}", f"apps-{suffix}", f"other-{suffix}"
    for ns in (watched, other):
        cluster.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    kubeconfig = cluster.kubeconfig_path or cluster.kubeconfig_for_token(cluster.token or "", tmp_path / "admin")
    env = {**os.environ, "KUBECONFIG": kubeconfig}

    def run_helm(*args: str) -> str:
        result = subprocess.run([helm, *args], capture_output=True, text=True, env=env, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    run_helm("install", "rs", str(CHART), "--namespace", release_ns, "--create-namespace",
             "--set", f"watchNamespaces={{{watched}}}", "--set", f"redis.url={redis.url}", "--set", "clusterId=chart")
    deployment = cluster.get(f"/apis/apps/v1/namespaces/{release_ns}/deployments/rs-redistreams").json
    assert f"--namespace={watched}" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]

    # The operator, run here, as the chart's ServiceAccount: the chart's RBAC must be enough.
    token = cluster.create_token(release_ns, "rs-redistreams")
    # The bindings helm just made, seen by the RBAC authorizer (an informer) before the
    # operator's first request: a 403 there would be logged and fail the "Forbidden" check.
    wait_allowed(cluster, token, "watch", "topics", "redistreams.dev", namespace=watched)
    wait_allowed(cluster, token, "update", "leases", "coordination.k8s.io", namespace=release_ns)
    metrics_port = free_port()
    sa_config = cluster.kubeconfig_for_token(token, tmp_path / "sa")
    with open(tmp_path / "operator.log", "wb") as log:
        operator = subprocess.Popen(
            [sys.executable, "-m", "redistreams.cli", "operator", "--namespace", watched, "--redis-url", redis.url,
             "--liveness", "", "--cluster-id", "chart", "--resync-interval", "2s", "--metrics-port", str(metrics_port),
             "--leader-elect", "--lease-name", "rs-redistreams"],  # as the chart runs it
            env={**os.environ, "KUBECONFIG": sa_config, "POD_NAMESPACE": release_ns},
            stdout=log, stderr=subprocess.STDOUT)
        try:
            api = f"/apis/redistreams.dev/v1alpha1/namespaces/{watched}"
            cluster.post(f"{api}/topics", {"apiVersion": "redistreams.dev/v1alpha1", "kind": "Topic",
                                           "metadata": {"name": "t"},
                                           "spec": {"streamName": f"{watched}/t", "deletionPolicy": "Delete"}}
                         ).raise_for_status()
            cluster.post(f"{api}/consumergroups", {"apiVersion": "redistreams.dev/v1alpha1", "kind": "ConsumerGroup",
                                                   "metadata": {"name": "g"},
                                                   # Delete too: a Retain group would keep the Topic's stream.
                                                   "spec": {"topicRef": {"name": "t"}, "deletionPolicy": "Delete"}}
                         ).raise_for_status()
            wait_for(lambda: _ready(cluster, watched, "topics", "t")
                     and _ready(cluster, watched, "consumergroups", "g"), "Ready under the chart's identity", 60)
            assert [g["name"] for g in redis.client().xinfo_groups(f"{watched}/t")] == ["g"]
            cluster.delete(f"{api}/consumergroups/g").raise_for_status()
            cluster.delete(f"{api}/topics/t").raise_for_status()
            wait_for(lambda: cluster.get(f"{api}/topics/t").status == 404, "Topic deleted through its finalizer", 60)
            assert redis.client().exists(f"{watched}/t") == 0
            scrape = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
            assert 'redistreams_reconciles_total{kind="Topic",outcome="ready"}' in scrape
            assert re.search(r'redistreams_status_writes_total\{kind="ConsumerGroup"\} [1-9]', scrape)
            assert re.search(r"redistreams_redis_round_trips_total [1-9]", scrape)
            assert "redistreams_leader 1.0" in scrape
            lease = cluster.get(f"/apis/coordination.k8s.io/v1/namespaces/{release_ns}/leases/rs-redistreams").json
            assert lease["spec"]["holderIdentity"]
        finally:
            operator.terminate()
            operator.wait(30)
        assert b"Forbidden" not in (tmp_path / "operator.log").read_bytes()

    # ...and minimal: nothing outside its namespaces, nothing but what it needs.
    def status(method: str, path: str, body: Any = None) -> int:
        return cluster.request(method, path, body, token=token).status

    assert status("GET", f"/api/v1/namespaces/{watched}/secrets/absent") == 404  # may read Secrets where it works
    assert status("GET", f"/api/v1/namespaces/{other}/secrets/absent") == 403
    assert status("GET", f"/api/v1/namespaces/{watched}/secrets") == 403  # get, never list
    assert status("GET", "/api/v1/secrets") == 403
    assert status("GET", f"/apis/redistreams.dev/v1alpha1/namespaces/{other}/topics") == 403
    assert status("DELETE", f"/apis/redistreams.dev/v1alpha1/namespaces/{watched}/topics/x") == 403
    assert status("GET", f"/api/v1/namespaces/{watched}/pods") == 403
    assert status("GET", f"/apis/coordination.k8s.io/v1/namespaces/{watched}/leases/x") == 403  # its own only
    assert status("DELETE", f"/apis/coordination.k8s.io/v1/namespaces/{release_ns}/leases/rs-redistreams") == 403
    assert status("POST", f"/api/v1/namespaces/{watched}/configmaps",
                  {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}) == 403

    run_helm("upgrade", "rs", str(CHART), "--namespace", release_ns, "--reuse-values", "--set", "resyncInterval=30s")
    deployment = cluster.get(f"/apis/apps/v1/namespaces/{release_ns}/deployments/rs-redistreams").json
    assert "--resync-interval=30s" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    run_helm("uninstall", "rs", "--namespace", release_ns)
    assert cluster.get(f"/apis/apps/v1/namespaces/{release_ns}/deployments/rs-redistreams").status == 404
    assert cluster.get(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{watched}/roles/rs-redistreams").status == 404
    # CRDs stay: deleting them would delete every Topic and ConsumerGroup in the cluster.
    assert cluster.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/topics.redistreams.dev").status == 200


def test_service_monitor_selects_the_metrics_service(helm: str) -> None:
    docs = render(helm, "--set", "metrics.serviceMonitor.enabled=true",
                  "--set", "metrics.serviceMonitor.labels.release=prom")
    (service,) = [d for d in docs if d["kind"] == "Service"]
    (monitor,) = [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"] == "metrics"
    assert all(service["metadata"]["labels"].get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    ports = deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert {"name": "metrics", "containerPort": 8081} in ports
    assert not [d for d in render(helm) if d["kind"] in ("Service", "ServiceMonitor")]


def _exported() -> dict[str, set[str]]:
    """Sample names the operator exports, with their label names (from its registry)."""
    from redistreams import metrics

    names: dict[str, set[str]] = {}
    for family in metrics.REGISTRY.collect():
        labels = set(metrics.FAMILIES.get(family.name, ("", "", ()))[2]) | {"le"}
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(family.type, [""])
        for suffix in suffixes:
            names[family.name + suffix] = labels
    for collector in (metrics.RECONCILES, metrics.STATUS_WRITES, metrics.ERRORS):
        names[collector._name + "_total"] = set(collector._labelnames)
    return names


def test_alerts_and_dashboard_use_metrics_the_operator_exports(helm: str) -> None:
    """Fails when a metric or label name drifts between the operator and the chart."""
    docs = render(helm, "--set", "metrics.prometheusRule.enabled=true", "--set", "metrics.dashboard.enabled=true",
                  "--set", "metrics.dashboard.labels.team=data",
                  "--set", "metrics.prometheusRule.groupLag.threshold=50")
    exported = _exported()
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {"RedisStreamGroupLagGrowing", "RedisStreamOldestPendingTooOld", "RedistreamsResourceNotReady",
            "RedistreamsRetentionBlocked"} <= set(alerts)
    assert "> 50" in alerts["RedisStreamGroupLagGrowing"]["expr"]
    # Two replicas, one observing: staleness is the leader's only, and no leader is an alert.
    assert "redistreams_leader == 1" in alerts["RedistreamsObservationStale"]["expr"]
    assert "redistreams_leader" in alerts["RedistreamsNoLeader"]["expr"]
    metric = re.compile(r"\b(redis_[a-z_]+|redistreams_[a-z_]+)")
    for name, alert in alerts.items():
        used = set(metric.findall(alert["expr"]))
        assert used and used <= set(exported), f"{name}: {used - set(exported)} not exported"
        labels = set(re.findall(r"\$labels\.([a-z_]+)", json.dumps(alert["annotations"])))
        assert all(labels <= exported[m] for m in used), f"{name}: labels {labels} not on {used}"
    (dashboard_map,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")]
    assert dashboard_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard_map["metadata"]["labels"]["team"] == "data"
    dashboard = json.loads(dashboard_map["data"]["redistreams.json"])
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for word in ("length", "lag", "pending", "oldest pending", "consumers", "reconciles"):
        assert word in titles
    for expr in exprs:
        used = set(metric.findall(expr))
        assert used and used <= set(exported), f"{expr}: {used - set(exported)} not exported"
        for label in re.findall(r"\b(namespace|topic|group|kind|outcome|operation|reason)\b", expr):
            assert any(label in exported[m] for m in used), f"{expr}: no metric has label {label}"
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    assert "--observe-interval=30s" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    bad = subprocess.run([helm, "template", "rs", str(CHART), "--set", "metrics.prometheusRule.typo=1"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "values don't meet the specifications of the schema" in bad.stderr
    assert not [d for d in render(helm)
                if d["kind"] == "PrometheusRule" or d["metadata"]["name"].endswith("-dashboard")]
