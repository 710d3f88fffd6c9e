"""Pure parts of the operator: object cache, reset detection, status content and change tests."""

from __future__ import annotations

from redistreams.controller.conditions import Outcome
from redistreams.controller.objects import Declared
from redistreams.controller.reconciler import Reconciler
from redistreams.controller.runtime import build_status, status_changed
from redistreams.controller.status import Computed, scrubbed
from redistreams.engine import Failure, Memory, Result


def body(status: dict | None = None, generation: int = 2, **annotations: str) -> dict:
    return {
        "apiVersion": "redistreams.dev/v1alpha1", "kind": "Topic",
        "metadata": {"name": "orders", "namespace": "team-a", "generation": generation, "uid": "u",
                     "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
                     "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}", **annotations}},
        "spec": {"streamName": "topics/1"},
        "status": status or {},
    }


def test_cache_keeps_only_what_reconciling_needs() -> None:
    reconciler = Reconciler(cluster_id="c", default_url="redis://localhost:6379/0")
    declared = reconciler.remember("Topic", body(**{"redistreams.dev/paused": "true"}))
    assert declared.key == ("Topic", "team-a", "orders")
    assert "managedFields" not in declared.body["metadata"]
    assert declared.body["metadata"]["annotations"] == {"redistreams.dev/paused": "true"}
    assert declared.paused and declared.generation == 2
    assert declared.model().stream == "topics/1"
    reconciler.forget("Topic", "team-a", "orders")
    assert reconciler.objects == {}


def test_memory_comes_from_status() -> None:
    assert Declared("Topic", body()).memory() is None  # never reconciled: nothing to remember
    topic = Declared("Topic", body(status={"registryEpoch": "e1", "lastDeliveredId": "5-0", "pending": 0}))
    assert topic.memory() == Memory("e1", "5-0")
    group = Declared("ConsumerGroup", body(status={"registryEpoch": "e1", "lastDeliveredId": "5-0", "pending": 2}))
    assert group.memory() == Memory("e1", None)  # pending entries: the position is not safe
    odd = Declared("ConsumerGroup", body(status={"registryEpoch": "e1", "lastDeliveredId": "x", "pending": 0}))
    assert odd.memory() == Memory("e1", None)


def test_results_of_a_secret_connection_never_show_its_value() -> None:
    url = "redis://app:hunter22@redis-a.team-b.svc:6390/0"
    failure = Failure("RedisUnavailable", "Redis at Secret \"ns/s\" key \"url\" is unreachable: "
                      "Error 111 connecting to redis-a.team-b.svc:6390. Connection refused.")
    result = Result("topic/orders", "Topic", "ns", "orders", "orders", failure=failure,
                    details=["on redis-a.team-b.svc"])
    computed = scrubbed(Computed(Outcome(False, failure.reason, failure.message), result=result), url)
    for text in (computed.outcome.message, computed.result.failure.message, *computed.result.details):
        assert "redis-a" not in text and "6390" not in text and "hunter22" not in text
    assert 'Secret "ns/s" key "url"' in computed.outcome.message


def test_status_changes_that_deserve_a_write() -> None:
    ready = Computed(Outcome(True, "StreamReady", "ok"), {"streamName": "topics/1", "length": 3})
    declared = Declared("Topic", body())
    status = build_status(declared, ready)
    assert status["observedGeneration"] == 2 and status["length"] == 3
    assert status_changed(declared, status, runtime=False)  # never written: observedGeneration differs
    written = Declared("Topic", body(status=status))
    assert not status_changed(written, build_status(written, ready), runtime=True)
    busier = Computed(ready.outcome, {"streamName": "topics/1", "length": 40})
    assert not status_changed(written, build_status(written, busier), runtime=False)  # figures wait
    assert status_changed(written, build_status(written, busier), runtime=True)
    failing = Computed(Outcome(False, "RedisUnavailable", "down"), {"streamName": "topics/1"})
    assert status_changed(written, build_status(written, failing), runtime=False)  # conditions never wait
