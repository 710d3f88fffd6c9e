"""Day-2 operations without Redis: spec.reset and spec.consumerCleanup in the model, the
plan and the operator's status fields."""

from __future__ import annotations

import pytest

from redistreams.controller.status import day2_fields
from redistreams.engine.apply import Result
from redistreams.engine.intents import GroupIntent, Owner, ResetIntent, TopicIntent, group_intent
from redistreams.engine.ownership import OwnerRecord, ResetRecord
from redistreams.engine.plan import idle_text, make_plan, plan_details
from redistreams.engine.state import ConsumerState, GroupState, StreamState
from redistreams.model import ConsumerGroup, PositionReset, Topic

TOPIC = Owner("c", "ns", "orders")
GROUP = Owner("c", "ns", "billing")
HOUR = 3_600_000


def reset(token: str = "t1", to: str = "0") -> ResetIntent:
    return ResetIntent.from_spec(PositionReset(token=token, to=to))


def group(**kwargs: object) -> GroupIntent:
    return GroupIntent("consumergroup/billing", GROUP, TOPIC, "orders", "billing", "$", **kwargs)  # type: ignore[arg-type]


def state(consumers: list[ConsumerState] | None = None, resets: dict[str, ResetRecord] | None = None,
          exists: bool = True) -> StreamState:
    groups = {}
    if exists:
        groups["billing"] = GroupState("billing", consumers=len(consumers or []), last_delivered_id="5-0",
                                       consumer_states=consumers)
    return StreamState("orders", type="stream", length=5, first_id="1-0", last_id="5-0", last_generated_id="5-0",
                       entries_added=5, groups=groups, server_time_ms=100 * HOUR,
                       topic_owner=OwnerRecord(TOPIC, True), group_owners={"billing": OwnerRecord(GROUP, True)},
                       reset_records=resets or {})


def plan_for(intent: GroupIntent, observed: StreamState):  # type: ignore[no-untyped-def]
    plan = make_plan([TopicIntent("topic/orders", TOPIC, "orders")], [intent], {"orders": observed})
    return plan, plan.groups[0]


# -- the model ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("to", "target"),
    [
        ("$", "$"),
        ("0", "0"),
        ("1700000000000-3", "1700000000000-3"),
        # Just before <ms>-0: an entry added at exactly that millisecond is delivered again.
        ("2023-11-14T22:13:20Z", "1699999999999-18446744073709551615"),
        ("2023-11-14T23:13:20+01:00", "1699999999999-18446744073709551615"),
        ("2023-11-14T22:13:20.5Z", "1700000000499-18446744073709551615"),
        ("1970-01-01T00:00:00Z", "0"),
    ],
)
def test_reset_targets(to: str, target: str) -> None:
    assert reset(to=to).target == target


def test_group_intent_carries_reset_and_cleanup() -> None:
    topic = Topic.model_validate(
        {"apiVersion": "redistreams.dev/v1alpha1", "kind": "Topic", "metadata": {"name": "orders"}})
    cg = ConsumerGroup.model_validate({
        "apiVersion": "redistreams.dev/v1alpha1", "kind": "ConsumerGroup", "metadata": {"name": "billing"},
        "spec": {"topicRef": {"name": "orders"}, "reset": {"token": "2026-11-27-replay", "to": "0"},
                 "consumerCleanup": {"idleAfter": "1d12h"}},
    })
    intent = group_intent(cg, topic, "c")
    assert intent.reset == ResetIntent("2026-11-27-replay", "0", "0")
    assert intent.cleanup_idle_ms == 36 * HOUR
    plain = ConsumerGroup.model_validate({**cg.model_dump(exclude_none=True), "spec": {"topicRef": {"name": "orders"}}})
    assert group_intent(plain, topic, "c").reset is None and group_intent(plain, topic, "c").cleanup_idle_ms is None


# -- the plan ------------------------------------------------------------------------


def test_reset_is_planned_once_per_token() -> None:
    plan, gp = plan_for(group(reset=reset("t1")), state())
    assert gp.reset == reset("t1") and plan.changes and gp.verb == "configure"
    assert gp.notes == ['reset group "billing" to 0 (token "t1")']
    assert plan_details(gp)["reset"] == {"token": "t1", "to": "0", "target": "0"}
    applied = {"billing": ResetRecord("t1", "0", "0-0", "2026-11-27T09:00:00Z")}
    plan, gp = plan_for(group(reset=reset("t1")), state(resets=applied))
    assert gp.reset is None and not plan.changes and gp.notes == []
    assert plan_details(gp)["lastReset"]["id"] == "0-0"
    plan, gp = plan_for(group(reset=reset("t2", "$")), state(resets=applied))
    assert gp.reset == reset("t2", "$") and plan.changes


def test_reset_of_a_new_group_only_records_its_token() -> None:
    plan, gp = plan_for(group(reset=reset("t1")), state(exists=False))
    assert gp.create_at is not None and gp.reset is None and gp.record_reset
    assert any("recorded as applied" in n for n in gp.notes)


def test_time_and_future_targets_are_explained() -> None:
    _, gp = plan_for(group(reset=reset("t", "2023-11-14T22:13:20Z")), state())
    assert gp.notes[0] == 'reset group "billing" to 2023-11-14T22:13:20Z (entries from 1700000000000-0 on) (token "t")'
    assert any("after the stream's last entry" in n for n in gp.notes)  # 5-0 is the last entry


def test_cleanup_removes_only_idle_consumers_without_pending_entries() -> None:
    consumers = [
        ConsumerState("fresh", 0, idle_ms=HOUR),
        ConsumerState("gone-a", 0, idle_ms=30 * HOUR),
        ConsumerState("holding", 4, idle_ms=72 * HOUR),
        ConsumerState("gone-b", 0, idle_ms=50 * HOUR),
        # Redis >= 7.2: a consumer polling a quiet stream (idle low, inactive high) is alive.
        ConsumerState("polling", 0, idle_ms=1000, inactive_ms=48 * HOUR),
    ]
    plan, gp = plan_for(group(cleanup_idle_ms=24 * HOUR), state(consumers))
    assert [c.name for c in gp.remove_consumers] == ["gone-b", "gone-a"]  # longest idle first
    assert [c.name for c in gp.keep_consumers] == ["holding"]
    assert plan.changes and gp.verb == "configure"
    assert 'remove consumer "gone-b" (idle 2d2h, 0 pending)' in gp.notes
    assert 'keep consumer "holding" (idle 3d, 4 pending: removing it would drop them)' in gp.notes
    details = plan_details(gp)["consumerCleanup"]
    assert details["keep"] == [{"name": "holding", "pending": 4, "idleSeconds": 72 * 3600}]
    assert len(details["remove"]) == 2


def test_cleanup_with_only_pending_consumers_changes_nothing() -> None:
    plan, gp = plan_for(group(cleanup_idle_ms=HOUR), state([ConsumerState("holding", 1, idle_ms=9 * HOUR)]))
    assert not plan.changes and gp.keep_consumers and not gp.remove_consumers


def test_cleanup_notes_are_bounded() -> None:
    consumers = [ConsumerState(f"pod-{i:03}", 0, idle_ms=2 * HOUR) for i in range(40)]
    _, gp = plan_for(group(cleanup_idle_ms=HOUR), state(consumers))
    assert len(gp.remove_consumers) == 40
    assert len(gp.notes) == 6 and gp.notes[-1] == "remove 35 more idle consumers"


def test_cleanup_without_consumer_detail_says_so() -> None:
    observed = state()
    observed.groups["billing"].consumers = 20_000  # too many to inspect: consumer_states stays None
    plan, gp = plan_for(group(cleanup_idle_ms=HOUR), observed)
    assert not plan.changes and "too many to inspect" in gp.notes[0]


def test_idle_text_is_coarse() -> None:
    idle = (750, 90_000, 3 * HOUR + 61_000, 50 * HOUR + 61_000)
    assert [idle_text(ms) for ms in idle] == ["0s", "1m30s", "3h1m", "2d2h"]


# -- operator status ---------------------------------------------------------------


def result(**kwargs: object) -> Result:
    return Result("consumergroup/billing", "ConsumerGroup", "ns", "billing", "orders", "billing", **kwargs)  # type: ignore[arg-type]


def test_status_fields_are_bounded_and_stable() -> None:
    kept = [ConsumerState(f"w-{i}", 3, idle_ms=(30 + i) * HOUR) for i in range(12)]
    kept += [ConsumerState("x" * 300, 1, idle_ms=HOUR)]
    _, gp = plan_for(group(cleanup_idle_ms=HOUR, reset=reset()), state())
    first = day2_fields(gp, result(consumers_removed=[f"old-{i}" for i in range(15)], consumers_kept=kept,
                                   reset=ResetRecord("t1", "0", "0-0", "2026-11-27T09:00:00Z")), {})
    assert first["lastReset"] == {"token": "t1", "to": "0", "id": "0-0", "at": "2026-11-27T09:00:00Z"}
    cleanup = first["consumerCleanup"]
    assert cleanup["removed"] == 15 and len(cleanup["lastRemoved"]) == 10 and cleanup["lastRemovedTime"]
    assert cleanup["retainedCount"] == 13 and len(cleanup["retained"]) == 10
    assert cleanup["retained"][0] == {"name": "w-0", "pending": 3, "idleSince": "1970-01-03T22:00:00Z"}
    # The next pass, nothing removed: the figures and the idle times read the same.
    again = day2_fields(gp, result(consumers_kept=kept), {"consumerCleanup": cleanup})
    assert again["consumerCleanup"] == cleanup
    more = day2_fields(gp, result(consumers_removed=["y"]), {"consumerCleanup": cleanup})
    assert more["consumerCleanup"]["removed"] == 16 and more["consumerCleanup"]["lastRemoved"] == ["y"]
    long_name = day2_fields(gp, result(consumers_kept=kept[-1:]), {})["consumerCleanup"]["retained"][0]["name"]
    assert len(long_name) == 257 and long_name.endswith("…")
    # Cleanup switched off: the old figures are removed from status (merge patch null).
    _, plain = plan_for(group(), state())
    assert day2_fields(plain, result(), {"consumerCleanup": cleanup}) == {"consumerCleanup": None}
    assert day2_fields(plain, result(), {}) == {}


def test_status_fields_fit_the_status_model() -> None:
    from redistreams.model_status import ConsumerGroupStatus

    _, gp = plan_for(group(cleanup_idle_ms=HOUR), state())
    fields = day2_fields(gp, result(consumers_removed=["a"], consumers_kept=[ConsumerState("b", 2, idle_ms=HOUR)],
                                    reset=ResetRecord("t1", "$", "5-0", "2026-11-27T09:00:00Z")), {})
    status = ConsumerGroupStatus.model_validate(fields)
    assert status.lastReset is not None and status.lastReset.id == "5-0"
    assert status.consumerCleanup is not None and status.consumerCleanup.retained[0].pending == 2
