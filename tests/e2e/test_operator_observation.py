"""The operator's observation pass against a real kube-apiserver and redis-server:
exporter-style metrics, continuous retention, blocked retention in status and Events."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.controlplane import Cluster, wait_for
from tests.support.kube import API, create, events, get, new_namespace, reasons, run_operator, wait_passes, wait_ready
from tests.support.redis_server import RedisServer
from tests.support.workloads import BusyStream

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def operator(cluster: Cluster, redis: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    from redistreams.controller.runtime import OperatorConfig

    # As the chart's ServiceAccount: the observation pass needs no extra permission.
    config = OperatorConfig(cluster_id="e2e-obs", redis_url=redis.url, resync_interval=5.0, status_interval=1.0,
                            retry_delay=1.0, observe_interval=0.5, retention_steps_per_pass=20, retention_pause=0.0)
    yield from run_operator(cluster, tmp_path_factory, config)


@pytest.fixture
def ns(cluster: Cluster, operator: None) -> str:
    return new_namespace(cluster, "o")


def scrape() -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """The operator's /metrics text, parsed: {sample name: {sorted labels: value}}."""
    from redistreams.metrics import REGISTRY

    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(generate_latest(REGISTRY).decode()):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def series(metric: str, /, **labels: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {k: v for k, v in scrape().get(metric, {}).items() if set(labels.items()) <= set(k)}


def value(metric: str, /, **labels: str) -> float | None:
    found = series(metric, **labels)
    assert len(found) <= 1, found
    return next(iter(found.values()), None)


def test_stream_metrics_follow_redis_and_vanish_with_the_topic(cluster: Cluster, ns: str, redis: RedisServer) -> None:
    key = f"{ns}/orders"
    create(cluster, ns, "Topic", "orders", {"streamName": key})
    create(cluster, ns, "ConsumerGroup", "billing", {"topicRef": {"name": "orders"}})
    wait_ready(cluster, ns, "ConsumerGroup", "billing")
    r = redis.client()
    ids = [r.xadd(key, {"headers": "null", "body": str(i)}) for i in range(10)]
    r.xreadgroup("billing", "c1", {key: ">"}, count=6)
    r.xack(key, "billing", *ids[:2])
    r.xgroup_create(key, "audit", ids[3])  # Redis reports NULL lag for this one
    sel = dict(namespace=ns, topic="orders", stream=key, db="db0")

    def settled() -> bool:
        return (value("redis_stream_groups", **sel) == 2
                and value("redis_stream_group_entries_read", group="billing", **sel) == 6)
    wait_for(settled, "metrics of the scripted workload", 60)
    assert value("redis_stream_length", **sel) == 10
    assert value("redis_stream_entries_added_total", **sel) == 10
    assert value("redis_stream_group_lag", group="billing", **sel) == 4
    assert value("redis_stream_group_lag_valid", group="billing", **sel) == 1
    assert value("redis_stream_group_lag", group="audit", **sel) is None  # NULL: no sample, not 0
    assert value("redis_stream_group_lag_valid", group="audit", **sel) == 0
    assert value("redis_stream_group_messages_pending", group="billing", **sel) == 4
    assert value("redis_stream_group_consumers", group="billing", **sel) == 1
    assert value("redis_stream_group_consumer_messages_pending", group="billing", consumer="c1", **sel) == 4
    assert value("redistreams_stream_group_oldest_pending_seconds", group="billing", **sel) is not None
    assert value("redistreams_stream_group_oldest_pending_seconds", group="audit", **sel) is None
    assert value("redistreams_resource_ready", kind="Topic", namespace=ns, name="orders") == 1
    assert value("redistreams_observation_last_success_timestamp_seconds") > time.time() - 30

    # Deleted resources: their series go away (the stream stays: deletionPolicy Retain).
    cluster.delete(f"{API}/namespaces/{ns}/consumergroups/billing").raise_for_status()
    cluster.delete(f"{API}/namespaces/{ns}/topics/orders").raise_for_status()
    wait_for(lambda: not series("redis_stream_length", **sel) and not series("redis_stream_group_lag", **sel)
             and not series("redistreams_resource_ready", namespace=ns), "series of deleted resources gone", 60)
    assert r.xlen(key) == 10


def test_retention_blocked_is_reported_once_then_resumes(cluster: Cluster, ns: str, redis: RedisServer) -> None:
    key = f"{ns}/logs"
    create(cluster, ns, "Topic", "logs", {"streamName": key, "retention": {"maxLength": 5}})
    create(cluster, ns, "ConsumerGroup", "slow", {"topicRef": {"name": "logs"}})
    wait_ready(cluster, ns, "ConsumerGroup", "slow")
    r = redis.client()
    ids = [r.xadd(key, {"headers": "null", "body": str(i)}) for i in range(30)]
    body = wait_for(lambda: (b := get(cluster, ns, "Topic", "logs")).get("status", {}).get("retention", {})
                    .get("blockedBy") and b, "blockedBy in status", 60)
    assert body["status"]["retention"]["blockedBy"] == "slow"
    assert body["status"]["retention"]["blockedReason"] == "undelivered"
    assert r.xlen(key) == 30  # nothing the group has not received is trimmed
    wait_for(lambda: "RetentionBlocked" in reasons(cluster, ns, "logs"), "RetentionBlocked event", 60)
    assert value("redistreams_retention_blocked", namespace=ns, topic="logs", group="slow") == 1
    wait_passes(3)  # several passes later: still one Event, no status churn
    assert reasons(cluster, ns, "logs").count("RetentionBlocked") == 1
    # Posted by our aggregating recorder (kopf's posts say "kopf"), so a burst of blocked
    # Topics is posted many at a time, not drained one by one.
    blocked = [e for e in events(cluster, ns, "logs") if e["reason"] == "RetentionBlocked"]
    assert blocked[0]["source"]["component"] == "redistreams-operator" and blocked[0]["type"] == "Warning"

    # The group reads 20 and acknowledges 12: retention moves up to its oldest pending entry.
    read = r.xreadgroup("slow", "c1", {key: ">"}, count=20)
    r.xack(key, "slow", *[e[0] for e in read[0][1]][:12])
    wait_for(lambda: r.xlen(key) == 18, "trimmed up to the oldest pending entry", 60)
    assert [e[0] for e in r.xrange(key)] == ids[12:]
    wait_for(lambda: get(cluster, ns, "Topic", "logs")["status"]["retention"].get("blockedReason") == "pending",
             "blocked by pending entries", 60)
    # Everything acknowledged and delivered: down to maxLength, unblocked, counted.
    rest = r.xreadgroup("slow", "c1", {key: ">"}, count=100)
    r.xack(key, "slow", *[e[0] for e in read[0][1]][12:], *[e[0] for e in rest[0][1]])
    status = wait_for(lambda: (s := get(cluster, ns, "Topic", "logs")["status"]["retention"]).get("trimmedTotal") == 25
                      and "blockedBy" not in s and s, "retention resumed", 60)
    assert status["lastTrimmed"] > 0 and status["lastTrimTime"]
    assert r.xlen(key) == 5
    wait_for(lambda: "RetentionUnblocked" in reasons(cluster, ns, "logs"), "RetentionUnblocked event", 60)
    assert not series("redistreams_retention_blocked", namespace=ns, topic="logs")


def test_operator_trims_a_busy_stream_without_losing_unacknowledged_entries(
        cluster: Cluster, ns: str, redis: RedisServer) -> None:
    """A publisher and consumers run while the operator trims in bounded steps (20 steps
    of at most 1000 entries per pass); every entry reaches a consumer with its body."""
    key = f"{ns}/busy"
    create(cluster, ns, "Topic", "busy", {"streamName": key, "retention": {"maxLength": 100}})
    create(cluster, ns, "ConsumerGroup", "w", {"topicRef": {"name": "busy"}})
    wait_ready(cluster, ns, "ConsumerGroup", "w")
    with BusyStream(redis.client, key, "w", messages=30000, consumers={"a": 0.0, "b": 0.5}, read_count=100,
                    quiet_rounds=30) as busy:
        busy.wait(240)
    published, delivered = busy.published, busy.delivered
    assert len(published) == 30000 and sorted(delivered) == sorted(published)
    assert all(delivered[i] == f"m{n}" for n, i in enumerate(published))
    retention = wait_for(lambda: (get(cluster, ns, "Topic", "busy")["status"].get("retention") or {})
                         .get("trimmedTotal") == 29900 and redis.client().xlen(key) == 100 and
                         get(cluster, ns, "Topic", "busy")["status"]["retention"], "trimmed down to maxLength", 60)
    assert "blockedBy" not in retention
