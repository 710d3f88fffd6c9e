"""Tenancy on a real kube-apiserver and redis-server: the operator runs with
``--tenant '*={namespace}/'`` (every namespace may declare streams under its own name
only). A Topic outside its prefix, and its ConsumerGroup, are Stalled with reason
StreamOutsideTenantPrefix, Redis is left exactly as it was (no write, no key, no
ownership record), and the namespace's other resources still become Ready. The chart's
``tenancy:`` value renders into the same setting."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from redistreams.controller.conditions import OUTSIDE_TENANT_PREFIX
from redistreams.tenancy import Tenancy
from tests.support.controlplane import Cluster, wait_for
from tests.support.kube import condition, create, get, kstatus, new_namespace, run_operator, wait_passes, wait_ready
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
TENANCY = Tenancy.parse(["*={namespace}/"])


@pytest.fixture(scope="module")
def operator(cluster: Cluster, redis: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    from redistreams.controller.runtime import OperatorConfig

    # Observation off: the only Redis traffic is what reconciling sends.
    config = OperatorConfig(cluster_id="e2e-tenancy", redis_url=redis.url, resync_interval=1.5, status_interval=1.0,
                            retry_delay=1.0, observe_interval=0.0, tenancy=TENANCY)
    yield from run_operator(cluster, tmp_path_factory, config)


@pytest.fixture
def ns(cluster: Cluster, operator: None) -> str:
    return new_namespace(cluster, "tenant")


def test_a_topic_outside_its_prefix_is_stalled_and_redis_untouched(cluster: Cluster, redis: RedisServer,
                                                                  ns: str) -> None:
    r = redis.client()
    keys_before, dirty_before = sorted(r.keys("*")), redis.dirty()
    create(cluster, ns, "Topic", "theirs", {"streamName": "someone-else/orders", "deletionPolicy": "Delete"})
    create(cluster, ns, "ConsumerGroup", "billing", {"topicRef": {"name": "theirs"}})

    topic = wait_ready(cluster, ns, "Topic", "theirs", status="False", reason=OUTSIDE_TENANT_PREFIX)
    assert kstatus(topic) == "Failed"  # Stalled: a person must act, retrying changes nothing
    stalled = condition(topic, "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == OUTSIDE_TENANT_PREFIX
    assert '"someone-else/orders"' in stalled["message"] and f'"{ns}/"' in stalled["message"]
    group = wait_ready(cluster, ns, "ConsumerGroup", "billing", status="False", reason=OUTSIDE_TENANT_PREFIX)
    assert condition(group, "Stalled")["status"] == "True"

    # Several resync passes later, still nothing in Redis: no key, no record, no write.
    wait_passes(2)
    wait_ready(cluster, ns, "Topic", "theirs", status="False", reason=OUTSIDE_TENANT_PREFIX, timeout=5)
    assert sorted(r.keys("*")) == keys_before
    assert redis.dirty() == dirty_before

    # Its neighbours are not held back by it.
    create(cluster, ns, "Topic", "mine", {"streamName": f"{ns}/orders"})
    create(cluster, ns, "ConsumerGroup", "audit", {"topicRef": {"name": "mine"}})
    wait_ready(cluster, ns, "ConsumerGroup", "audit")
    assert [g["name"] for g in r.xinfo_groups(f"{ns}/orders")] == ["audit"]
    assert not r.exists("someone-else/orders")

    # Deleting the refused Topic (deletionPolicy Delete) touches nothing in Redis.
    before = redis.dirty()
    cluster.delete(f"/apis/redistreams.dev/v1alpha1/namespaces/{ns}/consumergroups/billing").raise_for_status()
    cluster.delete(f"/apis/redistreams.dev/v1alpha1/namespaces/{ns}/topics/theirs").raise_for_status()
    wait_for(lambda: not get(cluster, ns, "Topic", "theirs") or None, "refused Topic deleted", 60)
    assert redis.dirty() == before


def test_chart_renders_tenancy_into_the_operator_args(tmp_path: Path) -> None:
    out = subprocess.run([str(ROOT / "hack" / "helm.sh"), "--print-env"], check=True, capture_output=True, text=True)
    helm = out.stdout.strip().split("=", 1)[1]
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"tenancy": {"team-a": "team-a/", "team-b": ["team-b/", "legacy-b."],
                                                  "*": "{namespace}/"}}))
    rendered = subprocess.run([helm, "template", "rs", str(ROOT / "charts" / "redistreams"), "-f", str(values)],
                              check=True, capture_output=True, text=True).stdout
    (deployment,) = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Deployment"]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    tenants = [a.removeprefix("--tenant=") for a in args if a.startswith("--tenant=")]
    tenancy = Tenancy.parse(tenants)
    assert tenancy.allowed("team-b") == ("team-b/", "legacy-b.")
    assert tenancy.allowed("team-z") == ("team-z/",)
    assert tenancy.refusal("team-a", "team-b/x") is not None
    bad = subprocess.run([helm, "template", "rs", str(ROOT / "charts" / "redistreams"), "--set", "tenancy.team-a=1"],
                         capture_output=True, text=True)
    assert bad.returncode != 0  # the schema wants prefixes as strings
