"""Tenancy: namespaces mapped to the stream-name prefixes they may declare, and the
reconciler refusing the rest before any Redis work (no connection is even made)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from redistreams.controller.conditions import OUTSIDE_TENANT_PREFIX, conditions
from redistreams.controller.reconciler import Reconciler
from redistreams.tenancy import Tenancy, TenancyError


def test_off_without_entries() -> None:
    assert Tenancy().refusal("anyone", "any/stream") is None
    assert Tenancy.parse([]).enabled is False


def test_listed_namespaces_get_their_prefixes_only() -> None:
    tenancy = Tenancy.parse(["team-a=team-a/", "team-a=shared/a-", "team-b=team-b/"])
    assert tenancy.refusal("team-a", "team-a/orders") is None
    assert tenancy.refusal("team-a", "shared/a-events") is None
    refusal = tenancy.refusal("team-a", "team-b/orders")
    assert refusal is not None and '"team-b/orders"' in refusal and '"team-a/", "shared/a-"' in refusal
    assert tenancy.refusal("team-b", "team-a/orders") is not None
    assert tenancy.refusal("team-a", "team-a") is not None  # a prefix, not a name: "team-a/" needs the slash


def test_unlisted_namespaces_are_denied_unless_a_wildcard_says_otherwise() -> None:
    strict = Tenancy.parse(["team-a=team-a/"])
    refusal = strict.refusal("intruder", "intruder/x")
    assert refusal is not None and "may declare no streams" in refusal
    open_rest = Tenancy.parse(["team-a=team-a/", "*={namespace}/"])
    assert open_rest.refusal("team-c", "team-c/orders") is None
    assert open_rest.refusal("team-c", "team-a/orders") is not None
    assert open_rest.refusal("team-a", "team-c/x") is not None  # listed: the wildcard is not for it
    everything = Tenancy.parse(["team-a=team-a/", "*="])  # an empty prefix allows any name
    assert everything.refusal("ops", "whatever") is None


def test_file_and_entries_combine(tmp_path: Path) -> None:
    path = tmp_path / "tenancy.yaml"
    path.write_text("tenancy:\n  team-a: team-a/\n  team-b: [team-b/, legacy-b.]\n")
    tenancy = Tenancy.load(["team-c=team-c/"], str(path))
    assert tenancy.allowed("team-b") == ("team-b/", "legacy-b.")
    assert tenancy.allowed("team-c") == ("team-c/",)
    bare = tmp_path / "bare.yaml"
    bare.write_text("team-a: team-a/\n")
    assert Tenancy.load([], str(bare)).allowed("team-a") == ("team-a/",)


@pytest.mark.parametrize("entry", ["team-a", "=team-a/", ""])
def test_malformed_entries_are_start_up_errors(entry: str) -> None:
    with pytest.raises(TenancyError, match="NAMESPACE=PREFIX"):
        Tenancy.parse([entry])


def test_malformed_files_are_start_up_errors(tmp_path: Path) -> None:
    for text in ("- a\n- b\n", "team-a: {x: 1}\n", "team-a: [1]\n", ": :\n  - ["):
        path = tmp_path / "t.yaml"
        path.write_text(text)
        with pytest.raises(TenancyError):
            Tenancy.load([], str(path))
    with pytest.raises(TenancyError):
        Tenancy.load([], str(tmp_path / "missing.yaml"))


def _topic(ns: str, name: str, stream: str) -> dict:
    return {"apiVersion": "redistreams.dev/v1alpha1", "kind": "Topic",
            "metadata": {"name": name, "namespace": ns, "generation": 1, "uid": name},
            "spec": {"streamName": stream}}


def _group(ns: str, name: str, topic: str) -> dict:
    return {"apiVersion": "redistreams.dev/v1alpha1", "kind": "ConsumerGroup",
            "metadata": {"name": name, "namespace": ns, "generation": 1, "uid": name},
            "spec": {"topicRef": {"name": topic}}}


def test_reconciler_stalls_what_is_outside_without_touching_redis() -> None:
    # Port 1: any Redis work would fail as RedisUnavailable, not as the tenancy reason.
    reconciler = Reconciler(cluster_id="c", default_url="redis://127.0.0.1:1/0",
                            tenancy=Tenancy.parse(["team-a=team-a/"]))
    reconciler.remember("Topic", _topic("team-a", "theirs", "team-b/orders"))
    reconciler.remember("ConsumerGroup", _group("team-a", "billing", "theirs"))
    reconciler.remember("Topic", _topic("team-b", "orders", "team-b/orders"))
    computed = asyncio.run(reconciler.run([("Topic", "team-a", "theirs"), ("ConsumerGroup", "team-a", "billing"),
                                           ("Topic", "team-b", "orders")]))
    topic = computed[("Topic", "team-a", "theirs")].outcome
    assert topic.reason == OUTSIDE_TENANT_PREFIX and topic.stalled and "team-b/orders" in topic.message
    group = computed[("ConsumerGroup", "team-a", "billing")].outcome
    assert group.reason == OUTSIDE_TENANT_PREFIX and group.stalled
    assert computed[("Topic", "team-b", "orders")].outcome.reason == OUTSIDE_TENANT_PREFIX  # team-b unlisted
    stalled = {c["type"]: c for c in conditions(topic, 1, None)}["Stalled"]
    assert stalled["status"] == "True" and stalled["reason"] == OUTSIDE_TENANT_PREFIX
    assert reconciler.redis_work() == (0, 0)
    # Deleting what was never provisioned does nothing in Redis either.
    assert asyncio.run(reconciler.delete(reconciler.objects[("Topic", "team-a", "theirs")])) is None
    assert asyncio.run(reconciler.delete(reconciler.objects[("ConsumerGroup", "team-a", "billing")])) is None
