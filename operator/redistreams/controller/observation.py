"""What the periodic pass (resync.py) does with its read besides planning, while
--observe-interval is on: the stream metrics of every Topic, and retention.

The read itself is ``Reconciler.sweep``'s (one pipelined read of each stream per pass:
groups, oldest pending entry, consumers); it has already repaired drift and data loss
and moved the recovery checkpoints. Here, ``publish`` turns each connection's
``Observed`` into metric samples and runs each Topic's retention in bounded steps.

Retention here never goes past the safe point (trim.lua decides it atomically), removes
at most trim_step entries per Lua call, sends short pipelines with a pause between
rounds, and stops at a per-pass step budget: a huge backlog is worked off over several
passes instead of in one long burst. Only streams this operator owns are trimmed.

A pass: ``_gather`` for each connection (metric rows, ``_trimming`` from the plan), then
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

from .. import metrics
from ..engine import Engine, TopicIntent, TopicPlan, TrimStep
from ..engine.retention import PENDING
from ..units import rfc3339
from .objects import Declared, Key
from .reconciler import Observed
from .runtime import OperatorConfig, RetentionMemo, State, patch_status
from .samples import ready_rows, stream_rows

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
class _Pass:
    """What one pass gathers over all connections."""

    rows: dict[Any, list[metrics.Row]]
    trims: list[tuple[Engine, list[Trimming]]] = field(default_factory=list)
    skipped: int = 0  # groups left without per-consumer detail


async def publish(state: State, observed: list[Observed]) -> None:
    """Metrics from the pass's read, then retention (fenced: a replica that lost the
    Lease trims nothing)."""
    reconciler = state.get_reconciler()
    started = time.monotonic()
    gathered = _Pass(ready_rows(reconciler.objects))
    for seen in observed:
        # One connection's trouble (odd data) stays that connection's.
        try:
            _gather(state, seen, gathered)
        except Exception as exc:  # noqa: BLE001 - logged with its traceback; the other connections go on
            metrics.ERRORS.labels("observe", type(exc).__name__).inc()
            log.exception("observing %d Topics failed", len(seen.topics))
    metrics.CONSUMERS_SKIPPED.set(gathered.skipped)
    state.fence()
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


def _gather(state: State, seen: Observed, gathered: _Pass) -> None:
    """One connection's metric rows and the retention to run on it."""
    objects = state.get_reconciler().objects
    db = seen.engine.db_label
    for reason in {s.failure.reason for s in seen.states.values() if s.failure}:
        metrics.ERRORS.labels("observe", reason).inc()
    todo: list[Trimming] = []
    for key, stream in seen.topics.items():
        gathered.rows[("topic", key)] = stream_rows(seen.states[stream], db, key[1], key[2])
        declared, plan = objects.get(key), seen.plans.get(key)
        trimming = _trimming(key, declared, plan) if declared is not None and plan is not None else None
        if trimming is not None:
            todo.append(trimming)
    gathered.trims.append((seen.engine, todo))
    gathered.skipped += seen.consumers_skipped


@contextmanager
def _counted(engine: Engine) -> Iterator[None]:
    """Adds the Redis work done inside to the operator's counters."""
    trips, writes = engine.stats.round_trips, engine.stats.writes
    yield
    metrics.REDIS_ROUND_TRIPS.inc(engine.stats.round_trips - trips)
    metrics.REDIS_WRITES.inc(engine.stats.writes - writes)


def _trimming(key: Key, declared: Declared, plan: TopicPlan) -> Trimming | None:
    """The retention to run on an observed stream; None without retention, for a paused
    Topic, a missing or failing stream, or one that is not ours."""
    intent, stream = plan.intent, plan.state
    if intent.retention is None or declared.paused or not stream.exists or stream.failure:
        return None
    owner = stream.topic_owner
    if owner is None or owner.owner != intent.owner:
        return None  # not ours (yet): this pass's apply claims it or reports the conflict
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
        _post_retention_event(state, declared.body, t)


def _retention_memo(state: State, declared: Declared) -> RetentionMemo:
    """Ours, or taken from status.retention the first time the Topic is seen."""
    memo = state.retention.get(declared.key)
    if memo is None:
        seen = {k: v for k, v in (declared.status.get("retention") or {}).items() if v is not None}
        memo = state.retention[declared.key] = RetentionMemo(
            seen, int(seen.get("trimmedTotal") or 0), seen.get("lastTrimmed"), seen.get("lastTrimTime"))
    return memo


def _post_retention_event(state: State, body: Any, t: Trimming) -> None:
    """RetentionBlocked or RetentionUnblocked, through the aggregating recorder."""
    if t.blocked:
        group, why = t.blocked
        what = "entries delivered but not acknowledged" if why == PENDING else "entries not yet delivered to it"
        state.warn(body, "RetentionBlocked",
                   f'retention of stream "{t.intent.stream}" is held back by group "{group}": {what}')
    else:
        state.info(body, "RetentionUnblocked", f'retention of stream "{t.intent.stream}" is no longer held back')
