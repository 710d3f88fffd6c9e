"""Planning: compare what is declared with what was observed. Pure, no Redis here."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..model import format_duration
from .errors import CONFLICT, WRONG_TYPE, Failure
from .ids import StreamId
from .intents import GroupIntent, Owner, TopicIntent
from .ownership import OwnerRecord
from .state import GroupState, StreamState


def plural(count: int, word: str, words: str | None = None) -> str:
    return f"{count} {word if count == 1 else (words or word + 's')}"


def describe_owner(owner: Owner, kind: str) -> str:
    return f'{kind} "{owner.namespace}/{owner.name}" (cluster "{owner.cluster}")'


@dataclass
class TopicPlan:
    intent: TopicIntent
    state: StreamState
    create_stream: bool = False
    record: OwnerRecord | None = None  # ownership record to write
    record_is_new: bool = False  # HSETNX (claim) rather than HSET (update our own)
    trim: bool = False
    notes: list[str] = field(default_factory=list)
    failure: Failure | None = None

    @property
    def changes(self) -> bool:
        return self.failure is None and (self.create_stream or self.record is not None or self.trim)

    @property
    def verb(self) -> str:
        if self.failure:
            return "fail"
        if self.create_stream:
            return "create"
        return "configure" if self.changes else "unchanged"


@dataclass
class GroupPlan:
    intent: GroupIntent
    state: StreamState
    existing: GroupState | None = None
    create_at: str | None = None  # start ID for XGROUP CREATE
    entries_read: int | None = None
    record: OwnerRecord | None = None
    record_is_new: bool = False
    notes: list[str] = field(default_factory=list)
    start_id_note: str | None = None  # plan output only: startId differs from the group
    failure: Failure | None = None

    @property
    def changes(self) -> bool:
        return self.failure is None and (self.create_at is not None or self.record is not None)

    @property
    def verb(self) -> str:
        if self.failure:
            return "fail"
        if self.create_at is not None:
            return "create"
        return "configure" if self.changes else "unchanged"


@dataclass
class Plan:
    topics: list[TopicPlan]
    groups: list[GroupPlan]

    @property
    def changes(self) -> bool:
        return any(p.changes for p in self.topics) or any(p.changes for p in self.groups)

    @property
    def failures(self) -> bool:
        return any(p.failure for p in self.topics) or any(p.failure for p in self.groups)


def _claim(plan: TopicPlan | GroupPlan, current: OwnerRecord | None, desired: OwnerRecord) -> None:
    if current is None:
        plan.record, plan.record_is_new = desired, True
    elif current != desired:
        plan.record = desired


def plan_topic(intent: TopicIntent, state: StreamState) -> TopicPlan:
    plan = TopicPlan(intent, state)
    if state.failure:
        plan.failure = state.failure
        return plan
    if state.type not in ("stream", "none"):
        plan.failure = Failure(
            WRONG_TYPE, f'key "{intent.stream}" holds a {state.type}, not a stream; it is left untouched'
        )
        return plan
    current = state.topic_owner
    if current is not None and current.owner != intent.owner:
        plan.failure = Failure(
            CONFLICT,
            f'stream "{intent.stream}" is already managed by {describe_owner(current.owner, "Topic")}',
        )
        return plan
    plan.create_stream = not state.exists
    created = plan.create_stream or (current is not None and current.created)
    _claim(plan, current, OwnerRecord(intent.owner, created))
    if state.exists and current is None:
        plan.notes.append(
            f"adopted existing stream ({plural(state.length, 'entry', 'entries')}, "
            f"{plural(len(state.groups), 'group')})"
        )
    elif plan.create_stream and current is not None:
        plan.notes.append("stream was deleted outside redistreams; re-creating it")
    if intent.retention and state.exists:
        _plan_retention(plan)
    return plan


def _plan_retention(plan: TopicPlan) -> None:
    retention, state = plan.intent.retention, plan.state
    assert retention is not None
    if state.length == 0 or state.first_id is None:
        return
    reasons = []
    if retention.max_length is not None and state.length > retention.max_length:
        reasons.append(f"{state.length - retention.max_length} entries over maxLength {retention.max_length}")
    if retention.max_age_seconds is not None and state.server_time_ms is not None:
        cutoff = state.server_time_ms - retention.max_age_seconds * 1000
        if StreamId.parse(state.first_id).ms < cutoff:
            reasons.append(f"entries older than maxAge {format_duration(retention.max_age_seconds)}")
    if not reasons:
        return
    bound = None if retention.allow_trimming_unconsumed else state.safe_bound()
    if bound is not None and StreamId.parse(state.first_id) >= bound[0]:
        plan.notes.append(_blocked_note(state, bound[1], bound[2]))
        return
    plan.trim = True
    plan.notes.append("trim " + " and ".join(reasons))


def _blocked_note(state: StreamState, group: str, reason: str) -> str:
    g = state.groups.get(group)
    if reason == "pending" and g is not None:
        return f'retention blocked by group "{group}": {g.pending} entries delivered but not acknowledged'
    return f'retention blocked by group "{group}": entries not yet delivered to it'


def plan_group(intent: GroupIntent, state: StreamState, topic: TopicPlan | None) -> GroupPlan:
    plan = GroupPlan(intent, state, existing=state.groups.get(intent.group))
    if topic is not None and topic.failure:
        plan.failure = Failure(topic.failure.reason, f"{topic.intent.label}: {topic.failure.message}")
        return plan
    if state.failure:
        plan.failure = state.failure
        return plan
    current = state.group_owners.get(intent.group)
    if current is not None and current.owner != intent.owner:
        plan.failure = Failure(
            CONFLICT,
            f'group "{intent.group}" on stream "{intent.stream}" is already managed by '
            f'{describe_owner(current.owner, "ConsumerGroup")}',
        )
        return plan
    if plan.existing is None:
        plan.create_at, plan.entries_read = _start(intent.start_id, state)
        _claim(plan, current, OwnerRecord(intent.owner, True))
        if current is not None:
            plan.notes.append("group was deleted outside redistreams; re-creating it")
        return plan
    _claim(plan, current, OwnerRecord(intent.owner, current.created if current else False))
    if current is None:
        plan.notes.append(
            f"adopted existing group at {plan.existing.last_delivered_id} without moving it "
            f"({plan.existing.pending} pending, {plural(plan.existing.consumers, 'consumer')})"
        )
    if intent.start_id != "$":
        plan.start_id_note = (
            f"startId {intent.start_id} applies only when the group is created; "
            f"the existing group stays at {plan.existing.last_delivered_id}"
        )
    return plan


def _start(start_id: str, state: StreamState) -> tuple[str, int | None]:
    """XGROUP CREATE arguments. ``$`` on a stream with history is pinned to its last ID
    with ENTRIESREAD so that Redis can report lag from the start."""
    if start_id == "$" and state.exists and state.entries_added is not None:
        return state.last_generated_id, state.entries_added
    return start_id, None


def make_plan(topics: list[TopicIntent], groups: list[GroupIntent], states: dict[str, StreamState]) -> Plan:
    topic_plans = [plan_topic(t, states[t.stream]) for t in topics]
    by_owner = {p.intent.owner: p for p in topic_plans}
    group_plans = []
    for g in groups:
        topic = by_owner.get(g.topic)
        group_plans.append(plan_group(g, states[g.stream], topic))
    # A group on a stream created by this plan starts on an empty stream.
    created = {p.intent.stream for p in topic_plans if p.create_stream}
    for gp in group_plans:
        if gp.intent.stream in created and gp.create_at is not None and gp.intent.start_id == "$":
            gp.create_at, gp.entries_read = "$", None
    return Plan(topic_plans, group_plans)
