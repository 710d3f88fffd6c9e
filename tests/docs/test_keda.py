"""examples/keda/scaledobject.yaml and the KEDA page: the ScaledObject's triggers are the
redis-streams scaler's (metadata keys from KEDA's documentation), name a stream and group
that examples/ declares, and use the figures our status reports; the Redis user the page
gives KEDA can read exactly those figures from a real redis-server, and they equal what
`redistreams status` shows."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from redistreams.crds import generate
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "keda" / "scaledobject.yaml"
# KEDA's redis-streams trigger metadata (keda.sh/docs/latest/scalers/redis-streams/).
TRIGGER_KEYS = {"address", "host", "port", "addressFromEnv", "hostFromEnv", "portFromEnv", "usernameFromEnv",
                "passwordFromEnv", "stream", "consumerGroup", "pendingEntriesCount", "streamLength", "lagCount",
                "activationLagCount", "enableTLS", "unsafeSsl", "databaseIndex"}
# Which status field each threshold corresponds to.
THRESHOLD_STATUS = {"lagCount": "lag", "pendingEntriesCount": "pending"}


def _documents() -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d}


def _examples() -> list[dict[str, Any]]:
    return [d for f in ("topics.yaml", "consumergroups.yaml")
            for d in yaml.safe_load_all((ROOT / "examples" / f).read_text()) if d]


def test_scaled_object_shape() -> None:
    docs = _documents()
    assert set(docs) == {"ScaledObject", "TriggerAuthentication"}
    scaled = docs["ScaledObject"]
    assert scaled["apiVersion"] == docs["TriggerAuthentication"]["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] and 0 <= spec["minReplicaCount"] < spec["maxReplicaCount"]
    triggers = spec["triggers"]
    topics = {t["metadata"]["name"]: t["spec"].get("streamName", t["metadata"]["name"])
              for t in _examples() if t["kind"] == "Topic"}
    groups = {(topics[g["spec"]["topicRef"]["name"]], g["spec"].get("groupName", g["metadata"]["name"]))
              for g in _examples() if g["kind"] == "ConsumerGroup"}
    used = set()
    for trigger in triggers:
        assert trigger["type"] == "redis-streams"
        metadata = trigger["metadata"]
        assert set(metadata) <= TRIGGER_KEYS, set(metadata) - TRIGGER_KEYS
        assert all(isinstance(v, str) for v in metadata.values())  # KEDA's metadata is strings
        assert re.fullmatch(r"[^/:]+:\d+", metadata["address"]), "host:port, not a URL"
        assert (metadata["stream"], metadata["consumerGroup"]) in groups
        assert trigger["authenticationRef"]["name"] == docs["TriggerAuthentication"]["metadata"]["name"]
        thresholds = set(metadata) & set(THRESHOLD_STATUS)
        assert len(thresholds) == 1, "one figure per trigger"
        (threshold,) = thresholds
        assert int(metadata[threshold]) > 0
        used.add(threshold)
        if threshold == "lagCount":
            assert int(metadata["activationLagCount"]) >= 0
    assert used == set(THRESHOLD_STATUS)
    if spec["minReplicaCount"] == 0:  # only the lag can wake a deployment scaled to zero
        assert "lagCount" in used
    # The status fields the thresholds stand for exist in the generated CRD.
    (group_crd,) = [c for c in generate() if c["spec"]["names"]["kind"] == "ConsumerGroup"]
    status = group_crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert {"lag", "pending"} <= set(status)
    auth = docs["TriggerAuthentication"]["spec"]["secretTargetRef"]
    assert {a["parameter"] for a in auth} == {"username", "password"}


def _keda_acl() -> list[str]:
    text = (ROOT / "docs" / "keda.md").read_text()
    (line,) = re.findall(r"^ACL SETUSER keda .*$", text, re.M)
    return line.split()[2:]


@pytest.mark.integration
def test_keda_user_reads_the_figures_status_shows() -> None:
    server = RedisServer().start()
    try:
        admin = server.client()
        subprocess.run([sys.executable, "-m", "redistreams.cli", "--redis-url", server.url, "apply", "-f",
                        str(ROOT / "examples" / "topics.yaml"), "-f", str(ROOT / "examples" / "consumergroups.yaml")],
                       check=True, capture_output=True)
        for i in range(5):
            admin.xadd("orders", {"headers": "null", "body": str(i)})
        admin.xreadgroup("billing", "worker-1", {"orders": ">"}, count=2)  # 2 pending, 3 not delivered
        admin.execute_command("ACL", "SETUSER", *[a.replace(">SECRET", ">pw") for a in _keda_acl()])
        keda = redis.Redis(host="127.0.0.1", port=server.port, username="keda", password="pw", decode_responses=True)
        (billing,) = [g for g in keda.xinfo_groups("orders") if g["name"] == "billing"]
        pending = keda.xpending("orders", "billing")["pending"]
        length = keda.xlen("orders")
        with pytest.raises(redis.exceptions.NoPermissionError):
            keda.xadd("orders", {"body": "x"})  # reads only
        out = subprocess.run([sys.executable, "-m", "redistreams.cli", "--redis-url", server.url, "status", "orders",
                              "-o", "json"], check=True, capture_output=True, text=True).stdout
        (stream,) = json.loads(out)["streams"]
        (ours,) = [g for g in stream["groups"] if g["name"] == "billing"]
        assert (billing["lag"], pending, length) == (3, 2, 5)
        assert (ours["lag"], ours["pending"], stream["length"]) == (billing["lag"], pending, length)
    finally:
        server.close()


@pytest.mark.e2e
def test_example_passes_keda_s_crds_strictly(tmp_path: Path) -> None:
    """Server-side apply with strict field validation against KEDA's own CRDs (from its Go
    module, hack/keda-crds.sh) on a real kube-apiserver: a misspelt field or a number where
    KEDA wants a string is refused; and a mistake of that kind is caught (the check can fail)."""
    from tests.support.controlplane import cluster_for_tests, install_crds

    out = subprocess.run([str(ROOT / "hack" / "keda-crds.sh"), "--print-env"], check=True, capture_output=True,
                         text=True)
    crds_dir = Path(out.stdout.strip().splitlines()[-1].split("=", 1)[1])
    crds = [yaml.safe_load(p.read_text()) for p in sorted(crds_dir.glob("*.yaml"))]
    with cluster_for_tests() as (cluster, _):
        install_crds(cluster, crds)
        cluster.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})

        def apply(doc: dict[str, Any]) -> Any:
            plural = {"ScaledObject": "scaledobjects", "TriggerAuthentication": "triggerauthentications"}[doc["kind"]]
            return cluster.request(
                "PATCH", f"/apis/keda.sh/v1alpha1/namespaces/shop/{plural}/{doc['metadata']['name']}"
                "?fieldManager=docs-test&fieldValidation=Strict&force=true",
                json.dumps(doc).encode(), content_type="application/apply-patch+yaml")

        for doc in _documents().values():
            response = apply(doc)
            assert response.status in (200, 201), f"{doc['kind']}: {response.text}"
        scaled = _documents()["ScaledObject"]
        scaled["spec"]["triggers"][0]["metadata"]["lagCount"] = 100  # a number: KEDA's metadata is strings
        response = apply(scaled)
        assert response.status >= 400 and "lagCount" in response.text, response.text
        scaled = _documents()["ScaledObject"]
        scaled["spec"]["minReplicas"] = 0  # not a ScaledObject field
        response = apply(scaled)
        # Server-side apply answers a patch its schema cannot type with 500 ("field not declared in schema").
        assert response.status >= 400 and "minReplicas" in response.text, response.text
