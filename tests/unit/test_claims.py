"""What a resource owns, read from registry entries, and the refusal of a moved name: pure."""

from __future__ import annotations

from redistreams.engine.claims import IMMUTABLE, new_claims, read_claims, refuse_moves
from redistreams.engine.intents import GroupIntent, Owner, TopicIntent
from redistreams.engine.ownership import OwnerRecord, group_field, topic_field
from redistreams.engine.plan import Plan, make_plan
from redistreams.engine.state import StreamState

TOPIC = Owner("c", "ns", "orders")
GROUP = Owner("c", "ns", "billing")
REGISTRY = "redistreams:owners"


def entries(*records: tuple[str, Owner | str]) -> list[tuple[str, str, str]]:
    return [(REGISTRY, name, record if isinstance(record, str) else OwnerRecord(record, True).encode())
            for name, record in records]


def test_records_of_the_owners_asked_for() -> None:
    claims = read_claims(entries(
        (topic_field("orders/v1"), TOPIC),
        (group_field("orders/v1", "billing"), GROUP),
        (topic_field("other"), Owner("c", "ns", "other")),
        (topic_field("elsewhere"), Owner("another-cluster", "ns", "orders")),  # same name, other cluster
        (group_field("orders/v1", "orders"), TOPIC),  # a group named like the Topic: asked as a Topic only
        ('["epoch"]', '{"epoch":"abc"}'),
        ('["reset","orders/v1","billing"]', '{"token":"t"}'),
        ("not json", TOPIC),
        (topic_field("unreadable"), "{not a record orders"),
    ), {TOPIC}, {GROUP})
    assert claims.topics == {TOPIC: ["orders/v1"]}
    assert claims.groups == {GROUP: [("orders/v1", "billing")]}


def test_many_owners_are_matched_after_decoding() -> None:
    owners = {Owner("c", "ns", f"t{i}") for i in range(20)}
    records = entries(*((topic_field(f"s{i}"), Owner("c", "ns", f"t{i}")) for i in range(25)))
    assert set(read_claims(records, owners, set()).topics) == owners


def plan_for(stream: str, group_name: str = "billing") -> Plan:
    topic = TopicIntent("topic/orders", TOPIC, stream)
    group = GroupIntent("consumergroup/billing", GROUP, TOPIC, stream, group_name)
    return make_plan([topic], [group], {stream: StreamState(stream)})


def test_a_moved_stream_fails_the_topic_and_its_groups() -> None:
    plan = plan_for("orders/v2")
    assert new_claims(plan) == ({TOPIC}, {GROUP})
    refuse_moves(plan, read_claims(entries((topic_field("orders/v1"), TOPIC)), {TOPIC}, {GROUP}))
    (tp,), (gp,) = plan.topics, plan.groups
    assert tp.failure is not None and gp.failure is not None
    assert tp.failure.reason == IMMUTABLE and not tp.changes
    assert tp.failure.message.startswith('spec.streamName is immutable: Topic "ns/orders" (cluster "c") owns stream '
                                         '"orders/v1" (its ownership record), not "orders/v2".')
    assert gp.failure.reason == IMMUTABLE and gp.failure.message.startswith("topic/orders: spec.streamName")
    assert not plan.changes


def test_a_renamed_group_fails_alone() -> None:
    plan = plan_for("orders", "billing-v2")
    claims = read_claims(entries((topic_field("orders"), TOPIC), (group_field("orders", "billing"), GROUP)),
                         {TOPIC}, {GROUP})
    refuse_moves(plan, claims)
    (tp,), (gp,) = plan.topics, plan.groups
    assert tp.failure is None and gp.failure is not None
    assert gp.failure.message.startswith('spec.groupName is immutable: ConsumerGroup "ns/billing" (cluster "c") owns '
                                         'group "billing" on stream "orders"')


def test_another_stream_means_another_topic_ref() -> None:
    plan = plan_for("payments")
    refuse_moves(plan, read_claims(entries((group_field("orders", "billing"), GROUP)), set(), {GROUP}))
    failure = plan.groups[0].failure
    assert failure is not None and failure.message.startswith("spec.topicRef is immutable")


def test_nothing_owned_elsewhere_is_no_refusal() -> None:
    plan = plan_for("orders")
    refuse_moves(plan, read_claims(entries((topic_field("orders"), TOPIC)), {TOPIC}, {GROUP}))
    assert not plan.failures and plan.changes
