"""Applying a plan (and deleting) with pipelined, idempotent commands.

Round trips for a batch: one to claim ownership of new resources (HSETNX), one for the
changes, and more only for races, failures and long trims. A plan without changes
sends nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..units import rfc3339
from .errors import CONFLICT, REDIS_ERROR, TOPIC_NOT_READY, WRONG_TYPE, Failure
from .intents import GroupIntent, Owner, RetentionPolicy, TopicIntent
from .ownership import (
    EPOCH_FIELD,
    OwnerRecord,
    ResetRecord,
    decode_epoch,
    group_field,
    new_epoch,
    reset_field,
    topic_field,
)
from .pipeline import Call, Pipeliner, run_calls
from .plan import (
    GroupPlan,
    Plan,
    TopicPlan,
    consumer_dict,
    consumer_notes,
    describe_owner,
    plural,
    reset_text,
)
from .registry import Registry
from .retention import Trimmer, TrimStep, blocked_text
from .scripts import (
    CHECKPOINT,
    CLAIM_GROUP,
    CLAIM_TOPIC,
    DELETE_GROUP,
    DELETE_STREAM,
    INIT_GROUP,
    REMOVE_CONSUMERS,
    RESET_GROUP,
)
from .state import ConsumerState, StreamState

# Entries the reset script counts to give Redis a valid lag (beyond: lag unknown until read).
RESET_COUNT_CAP = 10_000
# Earlier reset tokens remembered per group (besides the last one).
RESET_TOKENS_KEPT = 50
# Consumer names per removal script call: each call stays short.
REMOVE_CHUNK = 500

# Outcomes, as printed after the resource: "topic/orders created".
CREATED = "created"
CONFIGURED = "configured"
UNCHANGED = "unchanged"
FAILED = "failed"
DELETED = "deleted"
PRUNED = "pruned"  # deleted by apply --prune
RELEASED = "released"
SKIPPED = "skipped"
NOT_FOUND = "not found"


@dataclass
class Result:
    label: str
    kind: str  # "Topic" or "ConsumerGroup"
    namespace: str
    name: str
    stream: str
    group: str | None = None
    outcome: str = UNCHANGED
    details: list[str] = field(default_factory=list)
    failure: Failure | None = None
    trimmed: int = 0
    reset: ResetRecord | None = None  # the last reset applied to the group (now or before)
    reset_applied: bool = False  # ...and it was applied by this run
    consumers_removed: list[str] = field(default_factory=list)
    consumers_kept: list[ConsumerState] = field(default_factory=list)  # idle, but with pending entries
    kept_by: list[str] = field(default_factory=list)  # groups that kept a deleted Topic's stream
    epoch: str | None = None  # the registry's identity after this run
    created_at: str | None = None  # where this run created the group
    dry_run: bool = False  # a delete that was only predicted: nothing was sent
    pruned: bool = False  # deleted or released by apply --prune (no longer declared)

    @property
    def ok(self) -> bool:
        return self.failure is None

    def fail(self, failure: Failure) -> None:
        if self.failure is None:
            self.failure = failure
            self.outcome = FAILED

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "stream": self.stream,
            "outcome": self.outcome,
            "details": self.details,
        }
        if self.group is not None:
            data["group"] = self.group
        if self.trimmed:
            data["trimmed"] = self.trimmed
        if self.reset is not None:
            r = self.reset
            data["lastReset"] = {"token": r.token, "to": r.to, "id": r.id, "at": r.at, "appliedNow": self.reset_applied}
        if self.consumers_removed:
            data["consumersRemoved"] = self.consumers_removed
        if self.consumers_kept:
            data["consumersKept"] = [consumer_dict(c) for c in self.consumers_kept]
        if self.kept_by:
            data["keptBy"] = self.kept_by
        if self.pruned:
            data["pruned"] = True
        if self.dry_run:
            data["dryRun"] = True
        if self.failure:
            data["reason"] = self.failure.reason
            data["error"] = self.failure.message
        return data


def _topic_result(intent: TopicIntent) -> Result:
    return Result(intent.label, "Topic", intent.owner.namespace, intent.owner.name, intent.stream)


def _group_result(intent: GroupIntent) -> Result:
    return Result(
        intent.label, "ConsumerGroup", intent.owner.namespace, intent.owner.name, intent.stream, intent.group
    )


class Applier:
    def __init__(self, io: Pipeliner, registry_key: str, *, trim_step: int = 1000, chunk: int = 5000) -> None:
        self._epochs: dict[str, str | None] = {}
        self.io = io
        self.registry_key = registry_key
        self.registry = Registry(registry_key)  # per slot on a Redis Cluster (the engine sets it)
        self.epoch = new_epoch()  # recorded only where the registry has none; fresh per apply
        self.chunk = chunk
        self.trimmer = Trimmer(io, trim_step, chunk)
        # The operator trims in its own bounded loop (trim_round), not while applying.
        self.trim_on_apply = True

    # -- plumbing -----------------------------------------------------------------

    def run(self, calls: list[Call]) -> None:
        run_calls(self.io, calls, self.chunk)

    # -- apply ----------------------------------------------------------------------

    def apply(self, plan: Plan) -> list[Result]:
        # A registry lost twice under one process must get a new identity each time.
        self.epoch = new_epoch()
        self._epochs = {}  # registry key -> its epoch, as a claim script of this apply read it
        topic_results = [_topic_result(p.intent) for p in plan.topics]
        group_results = [_group_result(p.intent) for p in plan.groups]
        pairs: list[tuple[TopicPlan | GroupPlan, Result]] = [
            *zip(plan.topics, topic_results),
            *zip(plan.groups, group_results),
        ]
        for p, result in pairs:
            result.details.extend(p.notes)
            if p.failure:
                result.fail(p.failure)
            elif isinstance(p, GroupPlan):
                result.reset = p.reset_record
                result.consumers_kept = list(p.keep_consumers)
        fixups: list[Call] = []
        calls: list[Call] = []
        for tplan, tresult in zip(plan.topics, topic_results):
            if tresult.ok and tplan.changes:
                calls.extend(self._topic_calls(tplan, tresult))
        for gplan, gresult in zip(plan.groups, group_results):
            if gresult.ok and gplan.changes:
                calls.extend(self._group_calls(gplan, gresult, fixups))
        trims = [(p, r) for p, r in zip(plan.topics, topic_results) if p.trim and r.ok]
        if not self.trim_on_apply:
            trims = []
            for r in topic_results:
                r.details = [d for d in r.details if not d.startswith("trim ")]
        self.run(calls)
        self.run(fixups)
        self._trim(trims)
        self._record_epoch(pairs)
        for p, result in pairs:
            if not result.ok or result.outcome != UNCHANGED:
                continue
            # A trim that removed nothing (blocked meanwhile) changed nothing.
            if p.record is not None or result.trimmed or result.reset_applied or result.consumers_removed:
                result.outcome = CONFIGURED
        return [*topic_results, *group_results]

    def _record_epoch(self, pairs: list[tuple[TopicPlan | GroupPlan, Result]]) -> None:
        """Tells each result its registry's identity, giving a registry key one if it has
        none (new, from an older version, or lost with Redis' data): one more round trip
        then. Each registry key has its own (one key, except on a Redis Cluster)."""
        by_registry: dict[str, list[tuple[TopicPlan | GroupPlan, Result]]] = {}
        for pair in pairs:
            by_registry.setdefault(self.registry.key_for(pair[0].intent.stream), []).append(pair)
        # As observed (a registry lost since then shows next time), else as a claim script
        # of this apply found or set it, else read (and set when there is none).
        epochs = {registry: next((p.state.registry_epoch for p, _ in some if p.state.registry_epoch),
                                 self._epochs.get(registry))
                  for registry, some in by_registry.items()}
        missing = [registry for registry, some in by_registry.items()
                   if epochs[registry] is None and any(r.ok for _, r in some)]
        if missing:
            replies: dict[str, Any] = {}
            self.run([call for registry in missing for call in self._epoch_calls(registry, replies)])
            epochs.update({registry: decode_epoch(replies.get(registry)) for registry in missing})
        for registry, some in by_registry.items():
            for _, result in some:
                result.epoch = epochs[registry]

    def _epoch_calls(self, registry: str, replies: dict[str, Any]) -> list[Call]:
        def done(reply: Any) -> None:
            replies[registry] = reply

        return [
            Call(build=lambda pipe: pipe.hsetnx(registry, EPOCH_FIELD, self.epoch),
                 done=lambda _: None, fail=lambda _: None),
            Call(build=lambda pipe: pipe.hget(registry, EPOCH_FIELD), done=done, fail=lambda _: None, write=False),
        ]

    def _field(self, p: TopicPlan | GroupPlan) -> str:
        if isinstance(p, TopicPlan):
            return topic_field(p.intent.stream)
        return group_field(p.intent.stream, p.intent.group)

    def _claim_args(self, p: TopicPlan | GroupPlan) -> list[str]:
        owner = p.intent.owner
        return [self._field(p), owner.cluster, owner.namespace, owner.name]

    def _conflict(self, p: TopicPlan | GroupPlan, raw: str, of_topic: bool = False) -> Failure:
        current = OwnerRecord.decode(raw)
        assert current is not None
        kind = "Topic" if of_topic or isinstance(p, TopicPlan) else "ConsumerGroup"
        what = f'stream "{p.intent.stream}" is' if of_topic else "claimed concurrently:"
        return Failure(CONFLICT, f"{what} managed by {describe_owner(current.owner, kind)}")

    def _topic_calls(self, p: TopicPlan, result: Result) -> list[Call]:
        if p.record is None and not p.create_stream:
            return []
        key = p.intent.stream

        registry = self.registry.key_for(key)

        def done(reply: Any) -> None:
            outcome = reply[0]
            if outcome not in ("conflict", "wrongtype") and len(reply) > 1:
                self._epochs[registry] = decode_epoch(reply[1])
            if outcome == "created":
                result.outcome = CREATED
                result.details.insert(0, "created empty stream")
            elif outcome == "conflict":
                result.fail(self._conflict(p, reply[1]))
            elif outcome == "wrongtype":
                result.fail(Failure(WRONG_TYPE, f'key "{key}" holds a {reply[1]}, not a stream; it is left untouched'))
            elif p.create_stream:
                result.outcome = CONFIGURED
                result.details.append("stream appeared meanwhile; adopted as is")

        args = [*self._claim_args(p), INIT_GROUP, EPOCH_FIELD, self.epoch, p.intent.deletion_policy]
        return [Call(build=lambda pipe: CLAIM_TOPIC.call(pipe, [key, registry], args),
                     done=done, fail=result.fail, script=CLAIM_TOPIC)]

    def _group_calls(self, p: GroupPlan, result: Result, fixups: list[Call]) -> list[Call]:
        calls = []
        if p.reset is not None:
            calls.append(self._reset_call(p, result))
        if p.remove_consumers:
            calls.extend(self._remove_consumer_calls(p, result))
        if p.create_at is None and p.record is None:
            return calls
        intent = p.intent
        start = p.create_at or "$"
        registry = self.registry.key_for(intent.stream)

        def done(reply: Any) -> None:
            outcome = reply[0]
            if outcome in ("created", "exists", "adopted") and len(reply) > 2:
                self._epochs[registry] = decode_epoch(reply[2])
            if outcome == "conflict":
                result.fail(self._conflict(p, reply[1], of_topic=len(reply) > 2))
                return
            if outcome == "wrongtype":
                result.fail(Failure(WRONG_TYPE, f'key "{intent.stream}" holds a {reply[1]}, not a stream'))
                return
            if outcome == "nostream":
                topic = f"{intent.topic.namespace}/{intent.topic.name}"
                result.fail(Failure(TOPIC_NOT_READY,
                                    f'stream "{intent.stream}" does not exist: its Topic ({topic}) creates it first'))
                return
            if outcome != "created":
                if p.create_at is not None:
                    result.outcome = CONFIGURED
                    result.details.append("group appeared meanwhile; adopted as is")
                return
            at = result.created_at = reply[1]
            result.outcome = CREATED
            where = "the end of the stream" if intent.start_id == "$" and not p.lost else at
            result.details.insert(0, f"created group at {where}")
            if p.record_reset and intent.reset is not None:
                # The new group's position is its startId; a later apply must not move it.
                prev = p.reset_record
                earlier = (*prev.earlier, prev.token)[-RESET_TOKENS_KEPT:] if prev and prev.token else ()
                record = ResetRecord(intent.reset.token, intent.reset.to, at, _now(), earlier)
                fixups.append(Call(
                    build=lambda pipe: pipe.hset(
                        registry, reset_field(intent.stream, intent.group), record.encode()),
                    done=lambda _: setattr(result, "reset", record),
                    fail=result.fail,
                ))

        def failed(failure: Failure) -> None:
            if failure.reason == WRONG_TYPE:
                failure = Failure(WRONG_TYPE, f'key "{intent.stream}" holds another type, not a stream')
            result.fail(failure)

        topic = intent.topic
        args = [*self._claim_args(p), intent.group, start, EPOCH_FIELD, self.epoch, topic_field(intent.stream),
                topic.cluster, topic.namespace, topic.name, intent.deletion_policy]
        calls.append(Call(build=lambda pipe: CLAIM_GROUP.call(pipe, [intent.stream, registry], args),
                          done=done, fail=failed, script=CLAIM_GROUP))
        return calls

    def _reset_call(self, p: GroupPlan, result: Result) -> Call:
        reset, intent = p.reset, p.intent
        assert reset is not None
        planned = reset_text(reset, intent.group)
        at = _now()

        def done(reply: Any) -> None:
            status, rid = reply[0], reply[1]
            details = [d for d in result.details if d != planned]
            if status == "applied":
                previous = p.reset_record
                earlier = (*previous.earlier, previous.token)[-RESET_TOKENS_KEPT:] if previous else ()
                result.reset = ResetRecord(reset.token, reset.to, rid, at, earlier)
                result.reset_applied = True
                lag = "" if int(reply[2]) >= 0 else "; lag unknown until the group reaches its position"
                details.insert(0, f"{planned.replace('reset group', 'moved group', 1)}: now at {rid}{lag}")
            elif status == "seen":  # another applier (the CLI, the operator) was first
                details.append(f'reset token "{reset.token}" was applied meanwhile; not moved again')
            elif status == "nogroup":
                result.fail(Failure(REDIS_ERROR, f'group "{intent.group}" disappeared before its reset; apply again'))
            else:
                result.fail(Failure(WRONG_TYPE, f'key "{intent.stream}" holds a {status}, not a stream'))
            result.details = details

        args = [intent.group, reset_field(intent.stream, intent.group), reset.token, reset.target, reset.to, at,
                RESET_COUNT_CAP, RESET_TOKENS_KEPT, group_field(intent.stream, intent.group)]
        registry = self.registry.key_for(intent.stream)
        return Call(
            build=lambda pipe: RESET_GROUP.call(pipe, [intent.stream, registry], args),
            done=done,
            fail=result.fail,
            script=RESET_GROUP,
        )

    def _remove_consumer_calls(self, p: GroupPlan, result: Result) -> list[Call]:
        intent = p.intent
        assert intent.cleanup_idle_ms is not None
        planned = set(consumer_notes("remove", p.remove_consumers))
        names = [c.name for c in p.remove_consumers]
        removed: list[ConsumerState] = []
        chunks = [names[i : i + REMOVE_CHUNK] for i in range(0, len(names), REMOVE_CHUNK)]
        replies_left = [len(chunks)]

        def done(reply: Any) -> None:
            for name, outcome, pending, idle in reply:
                if outcome == "removed":
                    removed.append(ConsumerState(name, 0, int(idle)))
                    result.consumers_removed.append(name)
                elif outcome == "pending":  # it received entries since it was observed
                    kept = ConsumerState(name, int(pending), int(idle))
                    result.consumers_kept.append(kept)
                    received = plural(int(pending), "entry", "entries")
                    result.details.append(f'kept consumer "{name}": it received {received} meanwhile')
            replies_left[0] -= 1
            if replies_left[0] == 0:
                details = [d for d in result.details if d not in planned]
                notes = consumer_notes("removed", removed)
                result.details = notes + details

        def build(chunk: list[str]) -> Callable[[Any], None]:  # one closure per chunk
            return lambda pipe: REMOVE_CONSUMERS.call(
                pipe, [intent.stream], [intent.group, intent.cleanup_idle_ms, *chunk])

        return [
            Call(
                build=build(chunk),
                done=done,
                fail=result.fail,
                script=REMOVE_CONSUMERS,
            )
            for chunk in chunks
        ]

    def _trim(self, trims: list[tuple[TopicPlan, Result]]) -> None:
        totals = self.trimmer.to_end([(p.intent.stream, _policy(p.intent)) for p, _ in trims])
        for (p, result), total in zip(trims, totals):
            if total.failure is not None:
                result.fail(total.failure)
                continue
            retention = p.intent.retention
            assert retention is not None
            result.trimmed += total.removed
            result.details = [d for d in result.details if not d.startswith("trim ")]
            if result.trimmed:
                result.details.append(f"trimmed {plural(result.trimmed, 'entry', 'entries')} ({retention.describe()})")
            if total.blocker and total.reason:
                group = p.state.groups.get(total.blocker)
                result.details.append(blocked_text(total.blocker, total.reason, group.pending if group else None))

    def remove_consumer(self, stream: str, group: str, consumer: str) -> bool:
        removed: list[bool] = []

        def done(reply: Any) -> None:
            removed.extend(outcome == "removed" for _, outcome, _, _ in reply)

        self.run([Call(build=lambda pipe: REMOVE_CONSUMERS.call(pipe, [stream], [group, 0, consumer]),
                       done=done, fail=lambda _: None, script=REMOVE_CONSUMERS)])
        return any(removed)

    def trim_round(self, topics: list[TopicIntent], per_pipeline: int = 50) -> list[TrimStep]:
        return self.trimmer.round([(t.stream, _policy(t)) for t in topics], per_pipeline)

    def checkpoint(self, positions: list[tuple[str, str, Owner, str]], per_call: int = 500) -> int:
        """Moves the recovery positions of group records: (stream, group, owner, position).
        Records of another owner are left alone (checked in the script). Returns how
        many were updated; failures are left for the next pass."""
        updated = [0]

        def call(registry: str, items: list[tuple[str, str, Owner, str]]) -> Call:
            args = [x for stream, group, owner, at in items
                    for x in (group_field(stream, group), f"{owner.cluster}\n{owner.namespace}\n{owner.name}", at)]

            def done(reply: Any) -> None:
                updated[0] += int(reply)

            return Call(build=lambda pipe: CHECKPOINT.call(pipe, [registry], args), done=done,
                        fail=lambda _: None, script=CHECKPOINT)

        by_registry: dict[str, list[tuple[str, str, Owner, str]]] = {}
        for item in positions:
            by_registry.setdefault(self.registry.key_for(item[0]), []).append(item)
        self.run([call(registry, some[i:i + per_call]) for registry, some in by_registry.items()
                  for i in range(0, len(some), per_call)])
        return updated[0]

    # -- delete ---------------------------------------------------------------------

    def delete(
        self,
        topics: list[TopicIntent],
        groups: list[GroupIntent],
        states: dict[str, StreamState],
        *,
        dry_run: bool = False,
    ) -> list[Result]:
        """Groups first, then streams: a Topic's stream goes only when every group on it
        is deleted under deletionPolicy Delete in this same call (checked atomically).

        ``dry_run``: nothing is sent; each script's answer is predicted from ``states``
        by the same rules, so the results say what deleting now would do."""
        calls: list[Call] = []
        group_results = [self._delete_group(g, states[g.stream], calls, dry_run) for g in groups]
        intents_by_label = {g.label: g for g in groups}
        self.run(calls)  # empty in a dry run
        # Only groups actually destroyed may go with their stream: one refused (ACL) keeps it.
        leaving: dict[str, list[str]] = {}
        stuck: dict[str, Result] = {}
        for result in group_results:
            if result.group is None:
                continue
            if result.outcome == DELETED:
                leaving.setdefault(result.stream, []).append(result.group)
            elif result.failure is not None and intents_by_label[result.label].deletion_policy == "Delete":
                stuck.setdefault(result.stream, result)
        calls = []
        topic_results = []
        for t in topics:
            if t.stream in stuck and t.deletion_policy == "Delete":
                # Its group is still there: keep the stream and the record, so a retry finishes.
                blocked = stuck[t.stream]
                assert blocked.failure is not None
                result = _topic_result(t)
                result.fail(Failure(blocked.failure.reason, f"{blocked.label} could not be deleted first, so the "
                                    f"stream stays: {blocked.failure.message}"))
                topic_results.append(result)
                continue
            topic_results.append(self._delete_topic(t, states[t.stream], leaving.get(t.stream, []), calls, dry_run))
        self.run(calls)
        results = [*group_results, *topic_results]
        for result in results:
            result.dry_run = dry_run
        return results

    def _release(self, fields: Iterable[str], result: Result) -> Call:
        names = list(fields)
        registry = self.registry.key_for(result.stream)
        return Call(build=lambda pipe: pipe.hdel(registry, *names), done=lambda _: None, fail=result.fail)

    def _delete_group(self, intent: GroupIntent, state: StreamState, calls: list[Call], dry_run: bool) -> Result:
        result = _group_result(intent)
        if state.failure:
            result.fail(state.failure)
            return result
        record = state.group_owners.get(intent.group)
        existing = state.groups.get(intent.group)
        if record is None:
            result.outcome = SKIPPED if existing else NOT_FOUND
            if existing:
                result.details.append("not managed by redistreams; left as is")
            return result
        if record.owner != intent.owner:
            result.fail(
                Failure(CONFLICT, f'group is managed by {describe_owner(record.owner, "ConsumerGroup")}; left as is')
            )
            return result
        field_name = group_field(intent.stream, intent.group)
        if intent.deletion_policy == "Delete" and record.created:
            result.outcome = DELETED
            # The reset record goes too: a group made anew starts fresh.
            fields = [field_name, reset_field(intent.stream, intent.group)]

            def done(reply: Any) -> None:
                if reply[0] == "destroyed":
                    if int(reply[1]):
                        result.details.append(f"destroyed with {int(reply[1])} pending entries")
                else:
                    result.details.append("group was already gone")

            if dry_run:
                existing = state.groups.get(intent.group) if state.type == "stream" else None
                done(["destroyed", existing.pending] if existing is not None else ["gone", 0])
                return result
            calls.append(Call(
                build=lambda pipe: DELETE_GROUP.call(
                    pipe, [intent.stream, self.registry.key_for(intent.stream)], [intent.group, *fields]),
                done=done, fail=result.fail, script=DELETE_GROUP,
            ))
            return result
        result.outcome = RELEASED
        result.details.append(
            "deletionPolicy Retain: group left in place"
            if intent.deletion_policy == "Retain"
            else "group was adopted, not created by redistreams: left in place"
        )
        # The reset record stays with a group left in place: declaring it again with the
        # same token must not move it a second time.
        if not dry_run:
            calls.append(self._release([field_name], result))
        return result

    def _delete_topic(self, intent: TopicIntent, state: StreamState, leaving: list[str], calls: list[Call],
                      dry_run: bool) -> Result:
        result = _topic_result(intent)
        if state.failure:
            result.fail(state.failure)
            return result
        record = state.topic_owner
        if record is None:
            result.outcome = SKIPPED if state.type != "none" else NOT_FOUND
            if state.type != "none":
                result.details.append("not managed by redistreams; left as is")
            return result
        if record.owner != intent.owner:
            result.fail(Failure(CONFLICT, f'stream is managed by {describe_owner(record.owner, "Topic")}; left as is'))
            return result
        field_name = topic_field(intent.stream)
        if intent.deletion_policy != "Delete" or not record.created or state.type not in ("stream", "none"):
            result.outcome = RELEASED
            if intent.deletion_policy == "Retain":
                result.details.append("deletionPolicy Retain: stream left in place")
            elif state.type not in ("stream", "none"):
                result.details.append(f"key now holds a {state.type}; left untouched")
            else:
                result.details.append("stream was adopted, not created by redistreams: left in place")
            if not dry_run:
                calls.append(self._release([field_name], result))
            return result

        def done(reply: Any) -> None:
            outcome = reply[0]
            if outcome == "deleted":
                result.outcome = DELETED
                summary = f"removed stream with {plural(int(reply[1]), 'entry', 'entries')}"
                if leaving:
                    summary += f" and {plural(len(leaving), 'group')} deleted with it ({', '.join(sorted(leaving))})"
                result.details.append(summary)
            elif outcome == "kept":
                result.outcome = RELEASED
                result.kept_by = list(reply[1:])
                result.details.append(kept_text(result.kept_by, state))
            elif outcome == "none":
                result.outcome = DELETED
                result.details.append("stream was already gone")
            else:
                result.outcome = RELEASED
                result.details.append(f"key now holds a {outcome}; left untouched")

        if dry_run:
            done(_predicted_delete_stream(state, leaving))
            return result
        calls.append(Call(
            build=lambda pipe: DELETE_STREAM.call(
                pipe, [intent.stream, self.registry.key_for(intent.stream)], [field_name, *leaving]),
            done=done, fail=result.fail, script=DELETE_STREAM,
        ))
        return result


def _predicted_delete_stream(state: StreamState, leaving: list[str]) -> list[Any]:
    """delete_stream.lua's answer, from what was observed (a dry run): the same rules."""
    if state.type != "stream":
        return [state.type]
    going = set(leaving)
    kept = [name for name in state.groups if name not in going]
    if kept:
        return ["kept", *kept[:10]]
    return ["deleted", state.length]


def kept_text(groups: list[str], state: StreamState) -> str:
    """Why a Topic's stream stayed: the groups on it that are not being deleted."""
    reasons = []
    for name in groups:
        record = state.group_owners.get(name)
        if record is None:
            why = "not managed by redistreams"
        elif not record.created:
            why = f"adopted by {describe_owner(record.owner, 'ConsumerGroup')}"
        else:
            why = f"managed by {describe_owner(record.owner, 'ConsumerGroup')}, which is not being deleted"
        reasons.append(f'"{name}" ({why})')
    return (f"stream left in place: {plural(len(groups), 'group')} on it "
            f"{'is' if len(groups) == 1 else 'are'} not being deleted: {', '.join(reasons)}; "
            "deletionPolicy Delete removes a stream only together with all of its groups")


def _policy(intent: TopicIntent) -> RetentionPolicy:
    assert intent.retention is not None, "only Topics with retention are trimmed"
    return intent.retention


def _now() -> str:
    return rfc3339()
