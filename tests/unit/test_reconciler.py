"""Pure parts of the operator: object cache, reset detection, status content and change tests."""

from __future__ import annotations

from redistreams.controller.conditions import Outcome
from redistreams.controller.handlers import build_status, status_changed
from redistreams.controller.reconciler import Computed, Declared, Reconciler, _looks_reset
from redistreams.engine.intents import Owner, TopicIntent
from redistreams.engine.ownership import OwnerRecord
from redistreams.engine.plan import TopicPlan
from redistreams.engine.state import StreamState


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


def test_reset_is_seen_from_the_recorded_entry_count() -> None:
    intent = TopicIntent("topic/orders", Owner("c", "team-a", "orders"), "topics/1")
    owned = OwnerRecord(intent.owner, True)
    after_flush = TopicPlan(intent, StreamState("topics/1", topic_owner=None))
    assert _looks_reset({"entriesAdded": 5}, after_flush)  # the stream is gone
    republished = TopicPlan(intent, StreamState("topics/1", type="stream", entries_added=2, topic_owner=owned))
    assert _looks_reset({"entriesAdded": 5}, republished)  # fewer entries ever added than we saw
    grown = TopicPlan(intent, StreamState("topics/1", type="stream", entries_added=9, topic_owner=owned))
    assert not _looks_reset({"entriesAdded": 5}, grown)
    assert not _looks_reset({}, after_flush)  # nothing recorded yet: a first creation, not a reset
    assert not _looks_reset({"entriesAdded": 0}, after_flush)


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
