"""The work queue: reconcile requests by object key, as in controller-runtime.

A key is never reconciled twice at once: two overlapping runs would both see the old
status and both write. Asked again while it runs, it runs once more afterwards. Each run
is one ``Reconciler.submit`` (batched with whatever else is asked for meanwhile) and a
status write; not-ready objects are retried after ``retry_delay``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from .. import metrics
from .conditions import TOPIC_NOT_FOUND
from .objects import Declared, Key
from .runtime import State, write_status

log = logging.getLogger("redistreams.operator")

TOPIC_GRACE = 3.0  # seconds a new group waits for its Topic before TopicNotFound is written


def request_reconcile(state: State, key: Key) -> None:
    """Reconcile an object soon (once, however often asked while it runs)."""
    spawn(state, _reconcile(state, key))


def reconcile_if_behind(state: State, previous: Declared | None, declared: Declared) -> None:
    """A watch event's object is reconciled if its status lags its generation; not when a
    reconcile of this generation is running, or wrote status that this body predates
    (kopf's finalizer PATCH crossing ours: a second run would write the figures again)."""
    if declared.status.get("observedGeneration") == declared.generation:
        state.written_version.pop(declared.key, None)  # our write's own event (or a later one)
        return
    same = previous is not None and previous.version == declared.version
    if state.status_written_for(declared):
        if previous is not None and same and previous.status.get("observedGeneration") == declared.generation:
            declared.body["status"] = previous.status  # ours is newer than this body's
        return
    if same and declared.key in state.in_flight:
        return  # a change of generation meanwhile would have asked for another run
    request_reconcile(state, declared.key)


def spawn(state: State, coroutine: Coroutine[Any, Any, None]) -> None:
    """Runs a coroutine as a task the State keeps (a task nobody holds may be collected)."""
    task = asyncio.get_running_loop().create_task(coroutine)
    state.tasks.add(task)
    task.add_done_callback(state.tasks.discard)


async def _reconcile(state: State, key: Key) -> None:
    if key in state.in_flight:
        state.again.add(key)
        return
    state.in_flight.add(key)
    try:
        await _reconcile_once(state, key)
    finally:
        state.in_flight.discard(key)
        if key in state.again:
            state.again.discard(key)
            request_reconcile(state, key)


async def _reconcile_once(state: State, key: Key) -> None:
    reconciler = state.get_reconciler()
    state.fence()
    try:
        computed = await reconciler.submit(key)
    except Exception as exc:  # noqa: BLE001 - the resync loop tries again
        metrics.ERRORS.labels("reconcile", type(exc).__name__).inc()
        log.exception("reconcile of %s/%s failed", key[0].lower(), key[2])
        return
    declared = reconciler.objects.get(key)
    if computed is None or declared is None:
        return
    outcome = computed.outcome
    loop = asyncio.get_running_loop()
    if outcome.reason == TOPIC_NOT_FOUND and not declared.status.get("conditions"):
        # Topics and groups come through separate watches: a group applied together with
        # its Topic is often seen first. Its Topic's arrival reconciles it again; only a
        # group still without a Topic after a grace period gets TopicNotFound written.
        first = state.topic_wait.setdefault(key, loop.time())
        if loop.time() - first < TOPIC_GRACE:
            loop.call_later(TOPIC_GRACE, request_reconcile, state, key)
            return
    state.topic_wait.pop(key, None)
    await write_status(state, declared, computed)
    if outcome.ready is False and not outcome.stalled:
        loop.call_later(state.config.retry_delay, request_reconcile, state, key)
    if key[0] == "Topic" and outcome.ready:
        # Groups waiting for this Topic need not wait for the next resync.
        for group in reconciler.groups_of(key):
            if not group.paused and not _is_ready(group):
                request_reconcile(state, group.key)


def _is_ready(declared: Declared) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in declared.status.get("conditions") or [])
