"""spec.reset and spec.consumerCleanup through the operator, on the real API server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.controlplane import Cluster, wait_for
from tests.support.kube import API, create, events, get, wait_passes, wait_ready
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.e2e


def patch_spec(cluster: Cluster, ns: str, name: str, spec: dict[str, Any]) -> None:
    cluster.request("PATCH", f"{API}/namespaces/{ns}/consumergroups/{name}", {"spec": spec},
                    content_type="application/merge-patch+json").raise_for_status()


def status(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    return get(cluster, ns, "ConsumerGroup", name).get("status") or {}


def consume_all(r: Any, key: str) -> list[str]:
    got = r.xreadgroup("g", "reader", {key: ">"})
    ids = [entry_id for entry_id, _ in got[0][1]] if got else []
    if ids:
        r.xack(key, "g", *ids)
    return ids


def test_reset_once_per_token_with_an_event_and_cli_first(cluster: Cluster, ns: str, redis: RedisServer,
                                                          tmp_path: Path) -> None:
    key = f"{ns}/orders"
    create(cluster, ns, "Topic", "orders", {"streamName": key})
    create(cluster, ns, "ConsumerGroup", "g", {"topicRef": {"name": "orders"}})
    wait_ready(cluster, ns, "ConsumerGroup", "g")
    r = redis.client()
    ids = [r.xadd(key, {"body": str(i)}) for i in range(3)]
    assert consume_all(r, key) == ids

    patch_spec(cluster, ns, "g", {"reset": {"token": "replay-1", "to": "0"}})
    wait_for(lambda: (status(cluster, ns, "g").get("lastReset") or {}).get("token") == "replay-1", "lastReset", 60)
    last = status(cluster, ns, "g")["lastReset"]
    assert (last["to"], last["id"]) == ("0", "0-0") and last["at"]
    assert r.xinfo_groups(key)[0]["lag"] == 3
    wait_for(lambda: events(cluster, ns, "g", "PositionReset"), "PositionReset event", 60)
    assert consume_all(r, key) == ids  # replayed

    # Several resyncs later: not reset again, one event.
    wait_passes(3)
    assert r.xinfo_groups(key)[0]["last-delivered-id"] == ids[-1]
    assert consume_all(r, key) == []
    (event,) = events(cluster, ns, "g", "PositionReset")
    assert event.get("count", 1) == 1 and 'moved group "g" to 0 (token "replay-1")' in event["message"]

    # The CLI applies the next token first; the operator sees it was applied and does not move.
    manifest = tmp_path / "g.yaml"
    manifest.write_text("\n---\n".join(json.dumps(doc) for doc in (
        {"apiVersion": "redistreams.dev/v1alpha1", "kind": "Topic", "metadata": {"name": "orders"},
         "spec": {"streamName": key}},
        {"apiVersion": "redistreams.dev/v1alpha1", "kind": "ConsumerGroup", "metadata": {"name": "g"},
         "spec": {"topicRef": {"name": "orders"}, "reset": {"token": "replay-2", "to": ids[0]}}},
    )))
    applied = subprocess.run([sys.executable, "-m", "redistreams.cli", "apply", "-f", str(manifest), "-n", ns,
                              "--cluster-id", "e2e", "--redis-url", redis.url], capture_output=True, text=True)
    assert applied.returncode == 0 and "moved group" in applied.stdout, applied.stdout + applied.stderr
    assert consume_all(r, key) == ids[1:]
    patch_spec(cluster, ns, "g", {"reset": {"token": "replay-2", "to": ids[0]}})
    wait_for(lambda: (status(cluster, ns, "g").get("lastReset") or {}).get("token") == "replay-2", "lastReset 2", 60)
    assert status(cluster, ns, "g")["lastReset"]["id"] == ids[0]
    wait_passes(2)
    assert r.xinfo_groups(key)[0]["last-delivered-id"] == ids[-1]
    assert len(events(cluster, ns, "g", "PositionReset")) == 1


def test_consumer_cleanup_is_visible_in_status(cluster: Cluster, ns: str, redis: RedisServer) -> None:
    key = f"{ns}/jobs"
    create(cluster, ns, "Topic", "jobs", {"streamName": key})
    create(cluster, ns, "ConsumerGroup", "g", {"topicRef": {"name": "jobs"}})
    wait_ready(cluster, ns, "ConsumerGroup", "g")
    r = redis.client()
    held = r.xadd(key, {"body": "work"})
    assert r.xreadgroup("g", "holding", {key: ">"}, count=1)  # never acknowledged
    for name in ("stale-1", "stale-2"):
        r.xgroup_createconsumer(key, "g", name)
    time.sleep(2.2)
    patch_spec(cluster, ns, "g", {"consumerCleanup": {"idleAfter": "2s"}})

    def cleaned() -> dict[str, Any] | None:
        cleanup = status(cluster, ns, "g").get("consumerCleanup") or {}
        return cleanup if cleanup.get("removed") == 2 and cleanup.get("retained") else None

    cleanup = wait_for(cleaned, "consumerCleanup in status", 60)
    assert status(cluster, ns, "g")["consumers"] == 1  # written with the removal
    assert sorted(cleanup["lastRemoved"]) == ["stale-1", "stale-2"] and cleanup["lastRemovedTime"]
    assert cleanup["retainedCount"] == 1
    (kept,) = cleanup["retained"]
    assert (kept["name"], kept["pending"]) == ("holding", 1) and kept["idleSince"]
    assert [c["name"] for c in r.xinfo_consumers(key, "g")] == ["holding"]
    assert r.xpending_range(key, "g", "-", "+", 10)[0]["message_id"] == held  # never dropped
    wait_for(lambda: events(cluster, ns, "g", "ConsumersRemoved"), "ConsumersRemoved event", 60)
    # Quiet resyncs leave the status alone (idleSince is stable).
    first = get(cluster, ns, "ConsumerGroup", "g")
    wait_passes(3)
    later = get(cluster, ns, "ConsumerGroup", "g")
    assert later["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"], {
        k: (first["status"].get(k), later["status"].get(k)) for k in set(first["status"]) | set(later["status"])
        if first["status"].get(k) != later["status"].get(k)}
