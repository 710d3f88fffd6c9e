"""The pure parts of apply --prune: records that carry deletionPolicy compatibly, and which
registry entries are candidates (never another cluster id's, namespace's or a declared one)."""

from __future__ import annotations

import json

from redistreams.engine.intents import GroupIntent, Owner, TopicIntent
from redistreams.engine.ownership import OwnerRecord, group_field, reset_field, topic_field
from redistreams.engine.prune import find_orphans

REG = "redistreams:owners"
ME = Owner("default", "default", "orders")


def record(owner: Owner, policy: str | None = None, created: bool = True) -> str:
    data: dict[str, object] = {"cluster": owner.cluster, "namespace": owner.namespace, "name": owner.name,
                               "created": created}
    if policy is not None:
        data["deletionPolicy"] = policy
    return json.dumps(data)


def test_records_carry_delete_only_and_older_records_read_as_retain() -> None:
    retain = OwnerRecord(ME, True)
    assert "deletionPolicy" not in retain.encode()  # byte for byte the format before it
    delete = OwnerRecord(ME, True, deletion_policy="Delete")
    assert json.loads(delete.encode())["deletionPolicy"] == "Delete"
    assert OwnerRecord.decode(delete.encode()) == delete
    assert OwnerRecord.decode(record(ME)) == retain  # an older record
    assert OwnerRecord.decode(record(ME, "delete")) == retain  # only exactly "Delete" deletes
    assert not delete.same_claim(retain)  # a changed policy is recorded by the next apply


def test_candidates_are_this_cluster_ids_in_these_namespaces_not_declared() -> None:
    other_cluster = Owner("other", "default", "orders")
    other_ns = Owner("default", "team-b", "orders")
    entries = [
        (REG, topic_field("gone"), record(ME, "Delete")),
        (REG, group_field("gone", "g"), record(Owner("default", "default", "g"), "Delete")),
        (REG, reset_field("gone", "g"), json.dumps({"token": "t", "to": "0", "id": "0-0", "at": "x"})),
        (REG, '["epoch"]', json.dumps({"epoch": "abc"})),
        (REG, topic_field("theirs"), record(other_cluster, "Delete")),
        (REG, topic_field("far"), record(other_ns, "Delete")),
        (REG, topic_field("declared"), record(Owner("default", "default", "renamed"), "Delete")),
        (REG, topic_field("has-declared-group"), record(Owner("default", "default", "t2"), "Delete")),
    ]
    declared_topics = [TopicIntent("topic/x", Owner("default", "default", "x"), "declared")]
    declared_groups = [GroupIntent("consumergroup/c", Owner("default", "default", "c"),
                                   Owner("default", "default", "t2"), "has-declared-group", "c")]
    found = find_orphans(entries, "default", {"default"}, declared_topics, declared_groups)
    assert [(t.stream, t.owner, t.deletion_policy) for t in found.topics] == [("gone", ME, "Delete")]
    assert [(g.stream, g.group, g.topic, g.deletion_policy) for g in found.groups] == [("gone", "g", ME, "Delete")]
    assert found.unreadable == []
    assert find_orphans(entries, "default", set(), [], []).topics == []  # no namespace, nothing


def test_hostile_entries_are_reported_never_candidates() -> None:
    entries = [
        (REG, "\udcff\udcfe", "x"),  # not UTF-8, as redis-py decodes it (surrogateescape)
        (REG, "not json", record(ME, "Delete")),
        (REG, '["topic"]', record(ME, "Delete")),
        (REG, '["topic", 1]', record(ME, "Delete")),
        (REG, '{"topic": "x"}', record(ME, "Delete")),
        (REG, topic_field("a"), "{broken"),
        (REG, topic_field("b"), "caf\udce9"),
        (REG, topic_field("c"), json.dumps([1, 2])),
        (REG, topic_field("d"), json.dumps({"cluster": "default", "namespace": "default", "name": "d"})),
        (REG, topic_field("e"), json.dumps({"cluster": 1, "namespace": "default", "name": "e", "created": True})),
    ]
    found = find_orphans(entries, "default", {"default"}, [], [])
    assert found.topics == [] and found.groups == []
    assert len(found.unreadable) == len(entries)
    assert all(problem.endswith("left alone") for problem in found.unreadable)
