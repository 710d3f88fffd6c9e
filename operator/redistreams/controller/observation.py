"""The observation pass: every --observe-interval, one pipelined read of every Topic's
stream (groups, oldest pending entry, consumers) feeds the stream metrics; then each
Topic's retention runs in bounded steps.

Retention here never goes past the safe point (trim.lua decides it atomically), removes
at most trim_step entries per Lua call, sends short pipelines with a pause between
rounds, and stops at a per-pass step budget: a huge backlog is worked off over several
passes instead of in one long burst. Only streams this operator owns are trimmed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import kopf
from pydantic import ValidationError

from .. import metrics
from ..connection import ConnectionConfigError
from ..engine import Engine, Owner, StreamState, TopicIntent, TrimStep
from ..engine.ids import StreamId
from ..engine.intents import topic_intent
from ..engine.plan import data_lost, plan_topic
from ..model import Topic
from ..printable import printable
from .reconciler import Declared, Key, Reconciler, Source

if TYPE_CHECKING:
    from .handlers import State

log = logging.getLogger("redistreams.operator")


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
class RetentionMemo:
    """What status.retention says (as last written by us, or as first read): the
    watch may still deliver bodies older than our last write, so they are not trusted."""

    written: dict[str, Any]
    total: int = 0
    last_trimmed: int | None = None
    last_time: str | None = None


@dataclass
class Observation:
    """Per-operator memory of the observation loop."""

    memos: dict[Key, RetentionMemo] = field(default_factory=dict)


def _ms(entry_id: str | None) -> float | None:
    return None if not entry_id else float(StreamId.parse(entry_id).ms)


def stream_rows(state: StreamState, db: str, namespace: str, topic: str) -> list[metrics.Row]:
    """Exporter-style samples for one observed stream (nothing for a missing one)."""
    if not state.exists or state.failure:
        return []
    s = (db, state.key, namespace, topic)
    rows: list[metrics.Row] = [
        ("redis_stream_length", s, state.length),
        ("redis_stream_groups", s, len(state.groups)),
        ("redis_stream_last_generated_id", s, _ms(state.last_generated_id) or 0.0),
    ]
    for name, value in (("redis_stream_radix_tree_keys", state.radix_tree_keys),
                        ("redis_stream_radix_tree_nodes", state.radix_tree_nodes),
                        ("redis_stream_first_entry_id", _ms(state.first_id)),
                        ("redis_stream_last_entry_id", _ms(state.last_id)),
                        ("redis_stream_max_deleted_entry_id", _ms(state.max_deleted_id)),
                        ("redis_stream_entries_added", state.entries_added)):
        if value is not None:
            rows.append((name, s, value))
    first = StreamId.parse(state.first_id) if state.first_id else None
    for g in state.groups.values():
        gl = (db, state.key, g.name, namespace, topic)
        rows += [
            ("redis_stream_group_consumers", gl, g.consumers),
            ("redis_stream_group_messages_pending", gl, g.pending),
            ("redis_stream_group_last_delivered_id", gl, _ms(g.last_delivered_id) or 0.0),
            ("redis_stream_group_lag_valid", gl, 0 if g.lag is None else 1),
        ]
        if g.lag is not None:  # NULL lag: no sample, never a misleading 0
            rows.append(("redis_stream_group_lag", gl, g.lag))
        if g.entries_read is not None:
            rows.append(("redis_stream_group_entries_read", gl, g.entries_read))
        if g.pending and g.oldest_pending_idle_ms is not None:
            rows.append(("redistreams_stream_group_oldest_pending_seconds", gl, g.oldest_pending_idle_ms / 1000))
            if g.oldest_pending_id is not None:
                below = first is None or StreamId.parse(g.oldest_pending_id) < first
                rows.append(("redistreams_stream_group_pending_below_first_entry", gl, 1 if below else 0))
        for c in g.consumer_states or ():
            cl = (db, state.key, g.name, c.name, namespace, topic)
            rows += [
                ("redis_stream_group_consumer_messages_pending", cl, c.pending),
                ("redis_stream_group_consumer_idle_seconds", cl, c.idle_ms / 1000),
            ]
            if c.inactive_ms is not None:
                rows.append(("redistreams_stream_group_consumer_inactive_seconds", cl, c.inactive_ms / 1000))
    return rows


def _ready_rows(objects: dict[Key, Declared]) -> dict[Any, list[metrics.Row]]:
    out: dict[Any, list[metrics.Row]] = {}
    for key, declared in objects.items():
        conditions = {c.get("type"): c.get("status") for c in declared.status.get("conditions") or []}
        if "Ready" in conditions:  # Unknown until the first reconcile: no sample yet
            out[("ready", key)] = [("redistreams_resource_ready", key, 1 if conditions["Ready"] == "True" else 0)]
    return out


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


async def observe_once(state: State) -> None:
    """One pass: observe every Topic's stream, publish metrics, run retention."""
    from .handlers import _reconciler

    reconciler = _reconciler(state)
    config = state.config
    memo: Observation = state.observation
    started = time.monotonic()
    topics: list[tuple[Key, Declared, Topic]] = []
    for key, declared in list(reconciler.objects.items()):
        if key[0] != "Topic" or declared.body["metadata"].get("deletionTimestamp"):
            continue
        try:
            model = declared.model()
        except ValidationError:
            continue
        assert isinstance(model, Topic)
        topics.append((key, declared, model))

    # Connections: one Secret read per distinct Secret per pass.
    sources: dict[tuple[str, str, str], Source | None] = {}
    by_source: dict[Source, list[tuple[Key, Declared, Topic]]] = {}
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

    rows: dict[Any, list[metrics.Row]] = _ready_rows(reconciler.objects)
    trims: list[tuple[Engine, list[Trimming]]] = []
    skipped = 0
    repair: set[Key] = set()
    for source, items in by_source.items():
        # One connection's trouble (a malformed URL, odd data) stays that connection's.
        try:
            skipped += await _observe_source(state, reconciler, source, items, rows, trims, repair)
        except Exception as exc:  # noqa: BLE001 - logged with its traceback; the other connections go on
            metrics.ERRORS.labels("observe", type(exc).__name__).inc()
            log.exception("observing %d Topics failed", len(items))
    if repair:
        # Redis lost data, or a group we made is gone: repaired now, not at the next resync.
        from .handlers import request_reconcile

        for key in repair:
            request_reconcile(state, key)

    metrics.CONSUMERS_SKIPPED.set(skipped)
    for engine, todo in trims:
        await _retain(engine, todo, config, reconciler.lock)
        for t in todo:
            if t.blocked:
                rows[("blocked", t.key)] = [("redistreams_retention_blocked",
                                             (t.key[1], t.key[2], t.blocked[0], t.blocked[1]), 1)]
    metrics.SNAPSHOT.replace_all(rows)
    for gone in [k for k in memo.memos if k not in reconciler.objects]:
        del memo.memos[gone]
    for _, todo in trims:
        for t in todo:
            await _record_retention(state, reconciler, t, memo)
    metrics.OBSERVE_SECONDS.observe(time.monotonic() - started)
    metrics.OBSERVE_LAST.set(time.time())


async def _observe_source(state: State, reconciler: Reconciler, source: Source,
                          items: list[tuple[Key, Declared, Topic]], rows: dict[Any, list[metrics.Row]],
                          trims: list[tuple[Engine, list[Trimming]]], repair: set[Key]) -> int:
    """Observes one connection's streams: metrics, loss detection, recovery checkpoints
    and the retention to run. Returns how many groups got no consumer detail."""
    config = state.config
    try:
        engine = reconciler.engine(source)
    except ConnectionConfigError:
        metrics.ERRORS.labels("observe", "InvalidSpec").inc()
        return 0
    intents = [topic_intent(model, config.cluster_id) for _, _, model in items]
    keys = [i.stream for i in intents]
    groups: dict[str, list[tuple[Declared, str]]] = {}
    for (key, _, _), intent in zip(items, intents):
        for g in reconciler.groups_of(key):
            if not g.paused and not g.body["metadata"].get("deletionTimestamp"):
                spec = g.body.get("spec") or {}
                groups.setdefault(intent.stream, []).append((g, spec.get("groupName") or g.key[2]))
    owner_groups = {stream: [name for _, name in found] for stream, found in groups.items()}
    # Under the reconciler's lock: one engine pass at a time, so each pass's Redis
    # figures (the resync's log line) stay its own.
    async with reconciler.lock:
        trips, writes = engine.stats.round_trips, engine.stats.writes
        states = await asyncio.to_thread(engine.observe, keys, owner_groups=owner_groups, detail_keys=keys,
                                         consumer_keys=keys)
        checkpoints = [(stream, name, Owner(config.cluster_id, g.key[1], g.key[2]))
                       for stream, found in groups.items() for g, name in found]
        await asyncio.to_thread(engine.checkpoint, states, checkpoints)
        metrics.REDIS_ROUND_TRIPS.inc(engine.stats.round_trips - trips)
        metrics.REDIS_WRITES.inc(engine.stats.writes - writes)
    db = engine.db_label
    failures = {s.failure.reason for s in states.values() if s.failure}
    for reason in failures:
        metrics.ERRORS.labels("observe", reason).inc()
    todo: list[Trimming] = []
    for (key, declared, _), intent in zip(items, intents):
        stream = states[intent.stream]
        rows[("topic", key)] = stream_rows(stream, db, key[1], key[2])
        if not stream.failure:
            repair.update(_needing_repair(declared, stream, groups.get(intent.stream, [])))
        if intent.retention is None or declared.paused or not stream.exists or stream.failure:
            continue
        owner = stream.topic_owner
        if owner is None or owner.owner != intent.owner:
            continue  # not ours (yet): the reconcile claims it or reports the conflict
        plan = plan_topic(intent, stream)
        if plan.failure:
            continue
        todo.append(Trimming(key, intent, wanted=plan.trim, blocked=plan.retention_blocked))
    trims.append((engine, todo))
    return engine.consumers_skipped


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


async def _retain(engine: Engine, todo: list[Trimming], config: Any, lock: asyncio.Lock) -> None:
    """Round-robin steps over the streams that need trimming, within the pass budget;
    reconciles may run between rounds."""
    active = [t for t in todo if t.wanted]
    budget = config.retention_steps_per_pass
    while active and budget > 0:
        batch = active[:budget]
        async with lock:
            trips, writes = engine.stats.round_trips, engine.stats.writes
            steps: list[TrimStep] = await asyncio.to_thread(engine.trim_round, [t.intent for t in batch])
            metrics.REDIS_ROUND_TRIPS.inc(engine.stats.round_trips - trips)
            metrics.REDIS_WRITES.inc(engine.stats.writes - writes)
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


async def _record_retention(state: State, reconciler: Any, t: Trimming, observation: Observation) -> None:
    """status.retention on change (a new blocker at once, counts at most every
    --status-interval) and one Event per blocked/unblocked transition."""
    declared = reconciler.objects.get(t.key)
    if declared is None or t.failure:
        return
    memo = observation.memos.get(t.key)
    if memo is None:
        seen = {k: v for k, v in (declared.status.get("retention") or {}).items() if v is not None}
        memo = observation.memos[t.key] = RetentionMemo(
            seen, int(seen.get("trimmedTotal") or 0), seen.get("lastTrimmed"), seen.get("lastTrimTime"))
    if t.removed:
        memo.total += t.removed
        memo.last_trimmed, memo.last_time = t.removed, _now()
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
    from .handlers import patch_status

    if not await patch_status(state, reconciler, declared, {"retention": desired}):
        return  # the next pass tries again
    memo.written = {k: v for k, v in desired.items() if v is not None}
    if transition and t.blocked:
        group, why = t.blocked
        what = "entries delivered but not acknowledged" if why == "pending" else "entries not yet delivered to it"
        kopf.warn(declared.body, reason="RetentionBlocked",
                  message=f'retention of stream "{t.intent.stream}" is held back by group "{group}": {what}')
    elif transition:
        kopf.info(declared.body, reason="RetentionUnblocked",
                  message=f'retention of stream "{t.intent.stream}" is no longer held back')


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
