"""Planning: compare what is declared with what was observed. Pure, no Redis here."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..units import format_duration
from . import retention
from .errors import CONFLICT, WRONG_TYPE, Failure
from .ids import StreamId
from .intents import GroupIntent, Memory, Owner, ResetIntent, TopicIntent
from .ownership import OwnerRecord, ResetRecord
from .state import ConsumerState, GroupState, StreamState

# Consumers named per note line in plan/apply output; the rest are counted. JSON has all.
NAMED_CONSUMERS = 5


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
    retention_blocked: tuple[str, str] | None = None  # (group, "pending"|"undelivered") holding the head
    notes: list[str] = field(default_factory=list)
    failure: Failure | None = None
    lost: str | None = None  # why Redis is known to have lost data we had made

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
    create_at: str | None = None  # $, 0 or an entry ID for XGROUP CREATE (claim_group.lua resolves $)
    record: OwnerRecord | None = None
    record_is_new: bool = False
    notes: list[str] = field(default_factory=list)
    start_id_note: str | None = None  # plan output only: startId differs from the group
    failure: Failure | None = None
    reset: ResetIntent | None = None  # spec.reset to apply now: its token was never applied
    reset_record: ResetRecord | None = None  # the last reset applied, as recorded in Redis
    record_reset: bool = False  # a group created now: its token is recorded as seen, nothing moves
    remove_consumers: list[ConsumerState] = field(default_factory=list)  # idle, 0 pending
    keep_consumers: list[ConsumerState] = field(default_factory=list)  # idle, but with pending entries
    lost: str | None = None  # a group made before is missing: why, and where it comes back from
    redis_lost: bool = False  # ...because Redis lost data (not a group deleted by hand)

    @property
    def changes(self) -> bool:
        return self.failure is None and (
            self.create_at is not None
            or self.record is not None
            or self.reset is not None
            or self.record_reset
            or bool(self.remove_consumers)
        )

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
    elif not desired.same_claim(current):
        plan.record = desired


REDIS_RESET = (
    "Redis lost this data since the last reconcile (a restart without persistence, FLUSHALL "
    "or a failover to an empty replica)"
)


def data_lost(memory: Memory | None, state: StreamState, record: OwnerRecord | None) -> str | None:
    """Why Redis is known to have lost what we had made, or None.

    Counts cannot tell (publishers refill a stream); the registry can: its epoch changes
    when Redis loses the registry, and a record we wrote does not vanish on its own."""
    if memory is None or memory.epoch is None:
        return None  # never reconciled before: nothing to have lost
    if state.registry_epoch != memory.epoch:
        return f"{REDIS_RESET}: the ownership registry is new"
    if record is None:
        return f"{REDIS_RESET}: its ownership record is gone"
    return None


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
    _claim(plan, current, OwnerRecord(intent.owner, created, deletion_policy=intent.deletion_policy))
    plan.lost = data_lost(intent.memory, state, current)
    if plan.lost:
        plan.notes.append(plan.lost)
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
    assert plan.intent.retention is not None
    decision = retention.decide(plan.intent.retention, plan.state)
    plan.trim, plan.retention_blocked = decision.trim, decision.blocked
    plan.notes.extend(decision.notes)


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
        plan.create_at = intent.start_id
        _claim(plan, current, OwnerRecord(intent.owner, True, deletion_policy=intent.deletion_policy))
        _plan_recovery(plan, current, topic)
        if intent.reset is not None:
            record = plan.reset_record = state.reset_records.get(intent.group)
            if record is None or not record.applied(intent.reset.token):
                plan.record_reset = True
                plan.notes.append(
                    f'reset token "{intent.reset.token}" recorded as applied: a new group starts at startId'
                )
        return plan
    _claim(plan, current, OwnerRecord(intent.owner, current.created if current else False,
                                      deletion_policy=intent.deletion_policy))
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
    if intent.reset is not None:
        _plan_reset(plan, intent.reset)
    if plan.reset is None:
        _plan_rewind(plan, current, topic)
    if intent.cleanup_idle_ms is not None:
        _plan_cleanup(plan, intent.cleanup_idle_ms)
    return plan


def _plan_rewind(plan: GroupPlan, current: OwnerRecord | None, topic: TopicPlan | None) -> None:
    """After Redis lost data, a group re-created since by someone who could not know (the
    CLI at "$") may sit past entries published after the loss: it goes back to 0, once
    per registry epoch, through the reset script (atomic, recorded)."""
    state = plan.state
    lost = data_lost(plan.intent.memory, state, current) or (topic.lost if topic is not None else None)
    if not lost or current is None or not current.created or current.start is None or state.first_id is None:
        return
    if StreamId.parse(current.start) < StreamId.parse(state.first_id):
        return  # created before every entry there now: it skipped nothing
    plan.reset = ResetIntent(f"redis-reset:{state.registry_epoch}", "0", "0")
    plan.redis_lost = True
    plan.lost = (f"{lost}; the group was re-created since at {current.start}, past entries published after the "
                 "loss: moving it back to 0, so none is skipped")
    plan.notes.append(plan.lost)


def _plan_recovery(plan: GroupPlan, current: OwnerRecord | None, topic: TopicPlan | None) -> None:
    """A group made before and now missing never comes back past an entry it could not
    have delivered: from 0 after Redis lost data, else from its last recorded position."""
    intent, state = plan.intent, plan.state
    lost = data_lost(intent.memory, state, current) or (topic.lost if topic is not None else None)
    if lost:
        plan.create_at, plan.redis_lost = "0", True
        plan.lost = f"{lost}; re-creating the group from 0, so nothing published since is skipped"
        plan.notes.append(plan.lost)
        return
    if current is None:
        return  # a new group: its startId
    position = _known_position(current, intent.memory)
    if position is None or not state.exists or StreamId.parse(state.last_generated_id) < StreamId.parse(position):
        # No position, or a stream newer than the position (re-created since): all of it.
        where, plan.create_at = "0", "0"
    else:
        where, plan.create_at = f"{position}, its last recorded position", position
    plan.lost = f"group was deleted outside redistreams; re-creating it from {where}, so nothing is skipped"
    plan.notes.append(plan.lost)


def _known_position(record: OwnerRecord, memory: Memory | None) -> str | None:
    """The furthest position known to lose nothing: the registry's checkpoint (or the
    creation point), or what the caller remembers, whichever is later."""
    known = [p for p in (record.at or record.start, memory.position if memory else None) if p]
    return max(known, key=StreamId.parse) if known else None


def idle_text(ms: int) -> str:
    """A coarse duration for people: 3d4h, 5h12m, 12m30s."""
    seconds = max(ms, 0) // 1000
    if seconds >= 86400:
        seconds -= seconds % 3600
    elif seconds >= 3600:
        seconds -= seconds % 60
    return format_duration(seconds)


def consumer_idle_ms(consumer: ConsumerState) -> int:
    """Since its last attempted read or claim: a consumer polling a quiet stream is alive
    (Redis 7.2's `inactive`, since the last successful one, would call it dead)."""
    return consumer.idle_ms


def reset_text(reset: ResetIntent, group: str) -> str:
    where = reset.to
    if reset.target not in ("$", "0") and reset.target != reset.to:  # a time
        ms = int(reset.target.partition("-")[0]) + 1
        where = f"{reset.to} (entries from {ms}-0 on)"
    return f'reset group "{group}" to {where} (token "{reset.token}")'


def _plan_reset(plan: GroupPlan, reset: ResetIntent) -> None:
    record = plan.reset_record = plan.state.reset_records.get(plan.intent.group)
    if record is not None and record.applied(reset.token):
        if record.token != reset.token:
            plan.notes.append(f'reset token "{reset.token}" was applied before "{record.token}"; not moved again')
        return  # applied before, by the CLI or the operator
    plan.reset = reset
    plan.notes.append(reset_text(reset, plan.intent.group))
    if reset.target not in ("$", "0") and StreamId.parse(reset.target) > StreamId.parse(plan.state.last_generated_id):
        plan.notes.append("the reset target is after the stream's last entry: entries added before it are skipped")


def _plan_cleanup(plan: GroupPlan, idle_after_ms: int) -> None:
    existing = plan.existing
    assert existing is not None
    if existing.consumer_states is None:
        if existing.consumers:
            plan.notes.append(f"consumer cleanup skipped: {existing.consumers} consumers are too many to inspect")
        return
    idle = sorted(
        (c for c in existing.consumer_states if consumer_idle_ms(c) >= idle_after_ms),
        key=lambda c: (-consumer_idle_ms(c), c.name),
    )
    plan.remove_consumers = [c for c in idle if c.pending == 0]
    plan.keep_consumers = [c for c in idle if c.pending > 0]
    plan.notes.extend(consumer_notes("remove", plan.remove_consumers))
    plan.notes.extend(consumer_notes("keep", plan.keep_consumers))


def consumer_notes(verb: str, consumers: list[ConsumerState]) -> list[str]:
    """'remove consumer "a" (idle 3d, 0 pending)'…, a bounded number of lines."""
    notes = []
    for c in consumers[:NAMED_CONSUMERS]:
        text = f'{verb} consumer "{c.name}" (idle {idle_text(consumer_idle_ms(c))}, {c.pending} pending'
        if verb == "keep":
            text += ": removing it would drop them"
        notes.append(text + ")")
    if len(consumers) > NAMED_CONSUMERS:
        rest = len(consumers) - NAMED_CONSUMERS
        notes.append(f"{verb} {plural(rest, 'more idle consumer')}")
    return notes


def plan_details(item: TopicPlan | GroupPlan) -> dict[str, object]:
    """Machine-readable parts of a plan item for `plan -o json` (reset, consumer cleanup)."""
    if not isinstance(item, GroupPlan) or item.failure:
        return {}
    out: dict[str, object] = {}
    if item.reset is not None:
        out["reset"] = {"token": item.reset.token, "to": item.reset.to, "target": item.reset.target}
    if item.reset_record is not None:
        r = item.reset_record
        out["lastReset"] = {"token": r.token, "to": r.to, "id": r.id, "at": r.at}
    if item.intent.cleanup_idle_ms is not None and item.existing is not None:
        out["consumerCleanup"] = {
            "remove": [consumer_dict(c) for c in item.remove_consumers],
            "keep": [consumer_dict(c) for c in item.keep_consumers],
        }
    return out


def consumer_dict(c: ConsumerState) -> dict[str, object]:
    return {"name": c.name, "pending": c.pending, "idleSeconds": consumer_idle_ms(c) // 1000}


def make_plan(topics: list[TopicIntent], groups: list[GroupIntent], states: dict[str, StreamState]) -> Plan:
    topic_plans = [plan_topic(t, states[t.stream]) for t in topics]
    by_owner = {p.intent.owner: p for p in topic_plans}
    group_plans = []
    for g in groups:
        topic = by_owner.get(g.topic)
        group_plans.append(plan_group(g, states[g.stream], topic))
    # A group on a stream this plan creates gets everything ever added to it: "$" would
    # skip what a publisher adds between the stream's creation and the group's.
    created = {p.intent.stream for p in topic_plans if p.create_stream}
    for gp in group_plans:
        if gp.intent.stream in created and gp.create_at == "$":
            gp.create_at = "0"
    return Plan(topic_plans, group_plans)
