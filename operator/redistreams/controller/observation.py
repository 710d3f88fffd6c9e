"""The observation pass: every --observe-interval, one pipelined read of every Topic's
stream (groups, oldest pending entry, consumers) feeds the stream metrics, finds data
Redis lost, moves recovery checkpoints; then each Topic's retention runs in bounded steps.

Retention here never goes past the safe point (trim.lua decides it atomically), removes
at most trim_step entries per Lua call, sends short pipelines with a pause between
rounds, and stops at a per-pass step budget: a huge backlog is worked off over several
passes instead of in one long burst. Only streams this operator owns are trimmed.

A pass: ``_by_connection`` (Topics grouped by Redis, one Secret read per Secret),
``_observe_connection`` for each (metrics, ``_needing_repair``, ``_trimming``), then
``_retain`` (rounds of steps) and ``_record_retention`` (status.retention and Events).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import kopf
from pydantic import ValidationError

from .. import metrics
from ..connection import ConnectionConfigError
from ..engine import Engine, Owner, StreamState, TopicIntent, TrimStep
from ..engine.intents import topic_intent
from ..engine.plan import data_lost, plan_topic
from ..engine.retention import PENDING
from ..model import Topic
from ..printable import printable
from ..units import rfc3339
from .objects import Declared, Key
from .queue import request_reconcile
from .reconciler import Reconciler, Source
from .runtime import OperatorConfig, RetentionMemo, State, patch_status
from .samples import ready_rows, stream_rows

log = logging.getLogger("redistreams.operator")

Item = tuple[Key, Declared, Topic]  # a Topic to observe: its key, latest body and model
Groups = dict[str, list[tuple[Declared, str]]]  # stream -> its live ConsumerGroups and their group names


@dataclass
class Trimming:
    """Retention progress of one Topic in one pass."""

    key: Key
    intent: TopicIntent
    wanted: bool = False  # over a limit and not blocked, as observed
    removed: int = 0
    more: bool = False
    blocked: tuple[str, str] | None = None  # (group, "pending"|"undelivered")
    failure: str | None = None


@dataclass
class _Pass:
    """What one pass gathers over all connections."""

    rows: dict[Any, list[metrics.Row]]
    trims: list[tuple[Engine, list[Trimming]]] = field(default_factory=list)
    repair: set[Key] = field(default_factory=set)
    skipped: int = 0  # groups left without per-consumer detail


async def observe_loop(state: State) -> None:
    """Every --observe-interval, one observation pass (the first one soon after start)."""
    delay = min(state.config.observe_interval, 2.0)
    while True:
        await asyncio.sleep(delay)
        delay = state.config.observe_interval
        try:
            await observe_once(state)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the loop must survive anything
            metrics.ERRORS.labels("observe", "Exception").inc()
            log.exception("observation pass failed; will try again")


async def observe_once(state: State) -> None:
    """One pass: observe every Topic's stream, publish metrics, run retention."""
    reconciler = state.get_reconciler()
    started = time.monotonic()
    state.fence()
    by_connection = await _by_connection(reconciler, _topics(reconciler))
    gathered = _Pass(ready_rows(reconciler.objects))
    for source, items in by_connection.items():
        # One connection's trouble (a malformed URL, odd data) stays that connection's.
        try:
            await _observe_connection(state, source, items, gathered)
        except Exception as exc:  # noqa: BLE001 - logged with its traceback; the other connections go on
            metrics.ERRORS.labels("observe", type(exc).__name__).inc()
            log.exception("observing %d Topics failed", len(items))
    # Redis lost data, or a group we made is gone: repaired now, not at the next resync.
    for key in gathered.repair:
        request_reconcile(state, key)

    metrics.CONSUMERS_SKIPPED.set(gathered.skipped)
    for engine, todo in gathered.trims:
        await _retain(engine, todo, state.config, reconciler.lock)
        gathered.rows.update(_blocked_rows(todo))
    metrics.SNAPSHOT.replace_all(gathered.rows)
    for gone in [k for k in state.retention if k not in reconciler.objects]:
        del state.retention[gone]
    for _, todo in gathered.trims:
        for t in todo:
            await _record_retention(state, t)
    metrics.OBSERVE_SECONDS.observe(time.monotonic() - started)
    metrics.OBSERVE_LAST.set(time.time())


# -- which streams, on which connection --------------------------------------------

def _topics(reconciler: Reconciler) -> list[Item]:
    """The Topics to observe: valid ones not being deleted."""
    topics: list[Item] = []
    for key, declared in list(reconciler.objects.items()):
        if key[0] != "Topic" or declared.body["metadata"].get("deletionTimestamp"):
            continue
        try:
            model = declared.model()
        except ValidationError:
            continue
        assert isinstance(model, Topic)
        if reconciler.tenant_refusal(model.namespace, model.stream) is not None:
            continue  # outside its namespace's prefixes: never read, never trimmed
        topics.append((key, declared, model))
    return topics


async def _by_connection(reconciler: Reconciler, topics: list[Item]) -> dict[Source, list[Item]]:
    """Topics grouped by Redis connection, reading each distinct Secret once. A Topic whose
    Secret cannot be read is left out: its status says why."""
    sources: dict[tuple[str, str, str], Source | None] = {}
    by_source: dict[Source, list[Item]] = {}
    for key, declared, model in topics:
        ref = model.spec.connection.secretRef if model.spec.connection else None
        cache_key = (model.namespace, ref.name, ref.key) if ref else ("", "", "")
        if cache_key not in sources:
            try:
                sources[cache_key] = await reconciler.source_for(model)
            except Exception as exc:  # noqa: BLE001 - the Topic's status says why; counted here
                metrics.ERRORS.labels("observe", "KubernetesError").inc()
                log.debug("cannot read the connection of %s: %s", key, printable(str(exc)))
                sources[cache_key] = None
        source = sources[cache_key]
        if source is not None:
            by_source.setdefault(source, []).append((key, declared, model))
    return by_source


def _live_groups(reconciler: Reconciler, items: list[Item], intents: list[TopicIntent]) -> Groups:
    """Per stream, the ConsumerGroups naming its Topic that are neither paused nor being deleted."""
    groups: Groups = {}
    for (key, _, _), intent in zip(items, intents):
        for g in reconciler.groups_of(key):
            if not g.paused and not g.body["metadata"].get("deletionTimestamp"):
                spec = g.body.get("spec") or {}
                groups.setdefault(intent.stream, []).append((g, spec.get("groupName") or g.key[2]))
    return groups


# -- one connection ---------------------------------------------------------------

async def _observe_connection(state: State, source: Source, items: list[Item], gathered: _Pass) -> None:
    """Observes one connection's streams: metrics, loss detection, recovery checkpoints
    and the retention to run."""
    reconciler = state.get_reconciler()
    cluster_id = state.config.cluster_id
    try:
        engine = reconciler.engine(source)
    except ConnectionConfigError:
        metrics.ERRORS.labels("observe", "InvalidSpec").inc()
        return
    intents = [topic_intent(model, cluster_id) for _, _, model in items]
    keys = [i.stream for i in intents]
    groups = _live_groups(reconciler, items, intents)
    owner_groups = {stream: [name for _, name in members] for stream, members in groups.items()}
    # Under the reconciler's lock: one engine pass at a time, so each pass's Redis
    # figures (the resync's log line) stay its own.
    async with reconciler.lock:
        with _counted(engine):
            states = await asyncio.to_thread(engine.observe, keys, owner_groups=owner_groups, detail_keys=keys,
                                             consumer_keys=keys)
            checkpoints = [(stream, name, Owner(cluster_id, g.key[1], g.key[2]))
                           for stream, members in groups.items() for g, name in members]
            await asyncio.to_thread(engine.checkpoint, states, checkpoints)
    db = engine.db_label
    for reason in {s.failure.reason for s in states.values() if s.failure}:
        metrics.ERRORS.labels("observe", reason).inc()
    todo: list[Trimming] = []
    for (key, declared, _), intent in zip(items, intents):
        stream = states[intent.stream]
        gathered.rows[("topic", key)] = stream_rows(stream, db, key[1], key[2])
        if not stream.failure:
            gathered.repair.update(_needing_repair(declared, stream, groups.get(intent.stream, [])))
        trimming = _trimming(key, declared, intent, stream)
        if trimming is not None:
            todo.append(trimming)
    gathered.trims.append((engine, todo))
    gathered.skipped += engine.consumers_skipped


@contextmanager
def _counted(engine: Engine) -> Iterator[None]:
    """Adds the Redis work done inside to the operator's counters."""
    trips, writes = engine.stats.round_trips, engine.stats.writes
    yield
    metrics.REDIS_ROUND_TRIPS.inc(engine.stats.round_trips - trips)
    metrics.REDIS_WRITES.inc(engine.stats.writes - writes)


def _needing_repair(topic: Declared, stream: StreamState, groups: list[tuple[Declared, str]]) -> set[Key]:
    """Objects whose Redis side is gone although status says it was made: Redis lost
    data (another registry epoch, a record gone) or a group was deleted by hand."""
    found: set[Key] = set()
    memory = topic.memory()
    if memory is not None and not topic.paused and data_lost(memory, stream, stream.topic_owner):
        found.add(topic.key)
        found.update(g.key for g, _ in groups)
        return found
    for group, name in groups:
        remembered = group.memory()
        if remembered is None:
            continue  # never made: its own reconcile creates it
        if name not in stream.groups or data_lost(remembered, stream, stream.group_owners.get(name)):
            found.add(group.key)
    return found


def _trimming(key: Key, declared: Declared, intent: TopicIntent, stream: StreamState) -> Trimming | None:
    """The retention to run on an observed stream; None without retention, for a paused
    Topic, a missing or failing stream, or one that is not ours."""
    if intent.retention is None or declared.paused or not stream.exists or stream.failure:
        return None
    owner = stream.topic_owner
    if owner is None or owner.owner != intent.owner:
        return None  # not ours (yet): the reconcile claims it or reports the conflict
    plan = plan_topic(intent, stream)
    if plan.failure:
        return None
    return Trimming(key, intent, wanted=plan.trim, blocked=plan.retention_blocked)


# -- retention --------------------------------------------------------------------

async def _retain(engine: Engine, todo: list[Trimming], config: OperatorConfig, lock: asyncio.Lock) -> None:
    """Round-robin steps over the streams that need trimming, within the pass budget;
    reconciles may run between rounds."""
    active = [t for t in todo if t.wanted]
    budget = config.retention_steps_per_pass
    while active and budget > 0:
        batch = active[:budget]
        async with lock:
            with _counted(engine):
                steps: list[TrimStep] = await asyncio.to_thread(engine.trim_round, [t.intent for t in batch])
        budget -= len(batch)
        for t, step in zip(batch, steps):
            if step.failure is not None:
                t.failure, t.more = step.failure.reason, False
                metrics.ERRORS.labels("retention", step.failure.reason).inc()
                continue
            t.removed += step.removed
            t.more = step.more
            t.blocked = (step.blocker, step.reason or "") if step.blocker else None
        metrics.RETENTION_TRIMMED.inc(sum(s.removed for s in steps))
        active = [t for t in active if t.more]
        if active and budget > 0:
            await asyncio.sleep(config.retention_pause)  # let other clients' commands in


def _blocked_rows(todo: list[Trimming]) -> dict[Any, list[metrics.Row]]:
    """redistreams_retention_blocked for the Topics a group holds back."""
    return {("blocked", t.key): [("redistreams_retention_blocked", (t.key[1], t.key[2], *t.blocked), 1)]
            for t in todo if t.blocked}


async def _record_retention(state: State, t: Trimming) -> None:
    """status.retention on change (a new blocker at once, counts at most every
    --status-interval) and one Event per blocked/unblocked transition."""
    reconciler = state.get_reconciler()
    declared = reconciler.objects.get(t.key)
    if declared is None or t.failure:
        return
    memo = _retention_memo(state, declared)
    if t.removed:
        memo.total += t.removed
        memo.last_trimmed, memo.last_time = t.removed, rfc3339()
    previous = memo.written
    desired: dict[str, Any] = {
        "trimmedTotal": memo.total or previous.get("trimmedTotal"),  # no write just to say 0
        "lastTrimmed": memo.last_trimmed,
        "lastTrimTime": memo.last_time,
        "blockedBy": t.blocked[0] if t.blocked else None,
        "blockedReason": t.blocked[1] if t.blocked else None,
        "backlog": True if t.more else None,
    }
    transition = (previous.get("blockedBy"), previous.get("blockedReason")) != \
        (desired["blockedBy"], desired["blockedReason"])
    changed = any(previous.get(k) != v for k, v in desired.items())
    due = time.monotonic() - state.last_status_write.get(t.key, 0) >= state.config.status_interval
    if not changed or not (transition or due) or reconciler.kube is None:
        return
    if not await patch_status(state, declared, {"retention": desired}):
        return  # the next pass tries again
    memo.written = {k: v for k, v in desired.items() if v is not None}
    if transition:
        _post_retention_event(declared.body, t)


def _retention_memo(state: State, declared: Declared) -> RetentionMemo:
    """Ours, or taken from status.retention the first time the Topic is seen."""
    memo = state.retention.get(declared.key)
    if memo is None:
        seen = {k: v for k, v in (declared.status.get("retention") or {}).items() if v is not None}
        memo = state.retention[declared.key] = RetentionMemo(
            seen, int(seen.get("trimmedTotal") or 0), seen.get("lastTrimmed"), seen.get("lastTrimTime"))
    return memo


def _post_retention_event(body: Any, t: Trimming) -> None:
    """RetentionBlocked or RetentionUnblocked (kopf needs only our slim body's metadata)."""
    if t.blocked:
        group, why = t.blocked
        what = "entries delivered but not acknowledged" if why == PENDING else "entries not yet delivered to it"
        kopf.warn(body, reason="RetentionBlocked",
                  message=f'retention of stream "{t.intent.stream}" is held back by group "{group}": {what}')
    else:
        kopf.info(body, reason="RetentionUnblocked",
                  message=f'retention of stream "{t.intent.stream}" is no longer held back')
