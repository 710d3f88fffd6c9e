"""Planning is pure: observed state in, decisions out."""

from __future__ import annotations

from redistreams.engine.ids import StreamId
from redistreams.engine.intents import GroupIntent, Memory, Owner, RetentionPolicy, TopicIntent
from redistreams.engine.ownership import OwnerRecord, group_field, topic_field
from redistreams.engine.plan import make_plan
from redistreams.engine.state import GroupState, StreamState

ME = Owner("c", "ns", "orders")
OTHER = Owner("c", "other-ns", "orders")
GROUP_OWNER = Owner("c", "ns", "billing")


def topic(retention: RetentionPolicy | None = None) -> TopicIntent:
    return TopicIntent("topic/orders", ME, "orders", retention)


def group(start: str = "$") -> GroupIntent:
    return GroupIntent("consumergroup/billing", GROUP_OWNER, ME, "orders", "billing", start)


def stream(**kwargs: object) -> StreamState:
    state = StreamState("orders", type="stream", server_time_ms=10_000_000, **kwargs)  # type: ignore[arg-type]
    return state


def test_missing_stream_is_created_and_claimed() -> None:
    plan = make_plan([topic()], [group()], {"orders": StreamState("orders")})
    (tp,), (gp,) = plan.topics, plan.groups
    assert tp.create_stream and tp.record == OwnerRecord(ME, True) and tp.record_is_new
    # A stream this plan creates: its groups get everything ever added to it ("$" would
    # skip what a publisher adds between the two steps).
    assert gp.create_at == "0"
    assert plan.changes and not plan.failures


def test_dollar_on_history_is_left_to_the_script() -> None:
    state = stream(length=5, first_id="1-0", last_id="5-0", last_generated_id="5-0", entries_added=5)
    plan = make_plan([topic()], [group()], {"orders": state})
    assert plan.groups[0].create_at == "$"  # claim_group.lua pins it to the last ID atomically
    assert plan.topics[0].record == OwnerRecord(ME, False)  # adopted, not created
    assert "adopted existing stream (5 entries, 0 groups)" in plan.topics[0].notes


def test_explicit_start_is_used_as_is() -> None:
    state = stream(length=5, first_id="1-0", last_generated_id="5-0", entries_added=5)
    plan = make_plan([topic()], [group("0")], {"orders": state})
    assert plan.groups[0].create_at == "0"


def test_in_sync_has_no_changes() -> None:
    state = stream(
        groups={"billing": GroupState("billing")},
        topic_owner=OwnerRecord(ME, True),
        group_owners={"billing": OwnerRecord(GROUP_OWNER, True)},
    )
    plan = make_plan([topic()], [group("0")], {"orders": state})
    assert not plan.changes
    assert plan.topics[0].verb == plan.groups[0].verb == "unchanged"
    note = plan.groups[0].start_id_note
    assert note is not None and "applies only when the group is created" in note


def test_conflicts() -> None:
    state = stream(topic_owner=OwnerRecord(OTHER, True))
    plan = make_plan([topic()], [group()], {"orders": state})
    assert plan.topics[0].failure and plan.topics[0].failure.reason == "Conflict"
    assert 'Topic "other-ns/orders" (cluster "c")' in plan.topics[0].failure.message
    assert plan.groups[0].failure and plan.groups[0].failure.message.startswith("topic/orders: ")
    state = stream(topic_owner=OwnerRecord(ME, True), group_owners={"billing": OwnerRecord(OTHER, True)})
    plan = make_plan([topic()], [group()], {"orders": state})
    assert plan.topics[0].failure is None
    assert plan.groups[0].failure and plan.groups[0].failure.reason == "Conflict"


def test_wrong_type_fails_without_actions() -> None:
    plan = make_plan([topic()], [group()], {"orders": StreamState("orders", type="zset")})
    assert plan.topics[0].failure and plan.topics[0].failure.reason == "WrongType"
    assert not plan.topics[0].changes and not plan.groups[0].changes


def test_recreates_what_was_deleted_behind_our_back() -> None:
    state = StreamState("orders", topic_owner=OwnerRecord(ME, False),
                        group_owners={"billing": OwnerRecord(GROUP_OWNER, False)})
    plan = make_plan([topic()], [group()], {"orders": state})
    assert plan.topics[0].create_stream
    assert plan.topics[0].record == OwnerRecord(ME, True) and not plan.topics[0].record_is_new
    assert plan.groups[0].create_at == "0" and plan.groups[0].record == OwnerRecord(GROUP_OWNER, True)
    assert plan.groups[0].lost and "deleted outside redistreams; re-creating it from 0" in plan.groups[0].lost


def test_a_missing_group_comes_back_from_its_known_position_never_the_end() -> None:
    history = dict(length=9, first_id="1-0", last_id="9-0", last_generated_id="9-0", entries_added=9)
    recorded = OwnerRecord(GROUP_OWNER, True, start="2-0", at="6-0")
    state = stream(topic_owner=OwnerRecord(ME, True), group_owners={"billing": recorded}, **history)
    plan = make_plan([topic()], [group()], {"orders": state})
    assert plan.groups[0].create_at == "6-0"
    # The caller's memory (the operator's status) wins when it is further.
    remembered = GroupIntent("consumergroup/billing", GROUP_OWNER, ME, "orders", "billing",
                             memory=Memory(epoch=None, position="7-0"))
    assert make_plan([topic()], [remembered], {"orders": state}).groups[0].create_at == "7-0"
    # A stream newer than the position (re-created with lower IDs): all of it.
    newer = stream(topic_owner=OwnerRecord(ME, True), group_owners={"billing": recorded}, length=1,
                   first_id="3-0", last_id="3-0", last_generated_id="3-0", entries_added=1)
    assert make_plan([topic()], [group()], {"orders": newer}).groups[0].create_at == "0"


def test_memory_tells_a_redis_reset_apart_from_a_new_group() -> None:
    memory = Memory(epoch="e1")
    t = TopicIntent("topic/orders", ME, "orders", memory=memory)
    g = GroupIntent("consumergroup/billing", GROUP_OWNER, ME, "orders", "billing", memory=memory)
    refilled = dict(length=3, first_id="5-0", last_id="7-0", last_generated_id="7-0", entries_added=3)
    # The registry is new (another epoch, or none): everything was lost, publishers came first.
    for epoch in (None, "e2"):
        plan = make_plan([t], [g], {"orders": stream(registry_epoch=epoch, **refilled)})
        assert plan.topics[0].lost and plan.groups[0].create_at == "0"
    # Same registry, records in place: nothing lost; a new group keeps its startId.
    same = stream(registry_epoch="e1", topic_owner=OwnerRecord(ME, True), **refilled)
    fresh = GroupIntent("consumergroup/billing", GROUP_OWNER, ME, "orders", "billing")
    plan = make_plan([t], [fresh], {"orders": same})
    assert plan.topics[0].lost is None and plan.groups[0].create_at == "$"


def test_retention_blocked_by_undelivered_and_pending() -> None:
    retention = RetentionPolicy(max_length=2)
    behind = GroupState("slow", last_delivered_id="0-0")
    state = stream(length=10, first_id="1-0", last_generated_id="10-0", groups={"slow": behind})
    plan = make_plan([topic(retention)], [], {"orders": state})
    assert not plan.topics[0].trim
    assert 'retention blocked by group "slow": entries not yet delivered to it' in plan.topics[0].notes
    pending = GroupState("busy", pending=3, last_delivered_id="9-0", oldest_pending_id="1-0")
    state = stream(length=10, first_id="1-0", last_generated_id="10-0", groups={"busy": pending})
    plan = make_plan([topic(retention)], [], {"orders": state})
    assert not plan.topics[0].trim
    assert 'group "busy": entries delivered but not acknowledged (3 pending)' in plan.topics[0].notes[-1]
    partly = GroupState("ok", last_delivered_id="4-0")
    state = stream(length=10, first_id="1-0", last_generated_id="10-0", groups={"ok": partly})
    assert make_plan([topic(retention)], [], {"orders": state}).topics[0].trim
    allowed = RetentionPolicy(max_length=2, allow_trimming_unconsumed=True)
    state = stream(length=10, first_id="1-0", last_generated_id="10-0", groups={"slow": behind})
    assert make_plan([topic(allowed)], [], {"orders": state}).topics[0].trim


def test_retention_by_age_uses_server_time() -> None:
    retention = RetentionPolicy(max_age_seconds=60)
    fresh = stream(length=3, first_id=f"{10_000_000 - 1000}-0", last_generated_id="10000000-0")
    assert not make_plan([topic(retention)], [], {"orders": fresh}).topics[0].trim
    old = stream(length=3, first_id=f"{10_000_000 - 61_000}-0", last_generated_id="10000000-0")
    plan = make_plan([topic(retention)], [], {"orders": old})
    assert plan.topics[0].trim and "entries older than maxAge 1m" in plan.topics[0].notes[-1]


def test_stream_ids_and_registry_fields() -> None:
    assert StreamId.parse("5-18446744073709551615").successor() == StreamId(6, 0)
    assert StreamId.parse("5").successor() == StreamId(5, 1)
    assert StreamId.parse("10-0") > StreamId.parse("9-99")
    # Field names stay unambiguous whatever the names contain.
    assert group_field("a:b", "c") != group_field("a", "b:c")
    assert topic_field('we"ird') == '["topic","we\\"ird"]'
    assert OwnerRecord.decode(OwnerRecord(ME, True).encode()) == OwnerRecord(ME, True)
    garbage = OwnerRecord.decode("not json")
    assert garbage is not None and garbage.owner != ME  # an unreadable record still blocks others
