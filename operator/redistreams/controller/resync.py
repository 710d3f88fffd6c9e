"""The periodic pass: one read of every stream per interval serves everything the
operator does between events.

Every min(--resync-interval, --observe-interval) (±10% jitter; just --resync-interval
with observation off), ``Reconciler.sweep`` reads each connection's streams once, in
pipelined engine batches, and from that read: drift and data loss (a Redis reset, a
group destroyed by hand) are planned and repaired, spec.consumerCleanup runs, recovery
checkpoints move, and only what drifted is written. Status is written only when it
changed, runtime figures at most every --status-interval. With observation on, the same
read then feeds the stream metrics and retention (observation.py).

Objects the work queue holds (queue.py) are only read here, for the figures: their own
reconcile writes their status.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from .. import metrics
from .objects import Declared, Key
from .observation import publish
from .runtime import OperatorConfig, State, build_status, give_back_memory, post_events, status_changed, write_status
from .status import Computed

log = logging.getLogger("redistreams.operator")

BURST_WINDOW = 2.0  # status writes this recent mean a burst is being reconciled
PARALLEL_WRITES = 16  # many figures change at once on a busy cluster
FIRST_PASS_DELAY = 2.0  # with observation on: metrics soon after start
BURST_POLL = 0.5  # seconds between looks for the end of a burst


def pass_interval(config: OperatorConfig) -> float:
    """Seconds between passes: each interval is the longest its work may wait."""
    if config.observe_interval > 0:
        return min(config.resync_interval, config.observe_interval)
    return config.resync_interval


async def resync_loop(state: State) -> None:
    """Every interval (±10%), one pass; the loop survives any failure of a pass. With
    observation on, the first pass comes soon after start (metrics, retention)."""
    interval = pass_interval(state.config)
    delay = min(interval, FIRST_PASS_DELAY) if state.config.observe_interval > 0 else interval
    while True:
        await asyncio.sleep(delay * random.uniform(0.9, 1.1))
        delay = interval
        try:
            await resync_once(state)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the loop must survive anything
            metrics.ERRORS.labels("resync", "Exception").inc()
            log.exception("resync failed; will try again")


async def resync_once(state: State) -> None:
    """One pass: one read per connection, repairs and status from it, then (observation
    on) metrics and retention from the same read."""
    await _after_burst(state, pass_interval(state.config))
    await _pass(state)
    # Only now is everything the pass read garbage: give its pages back (RSS would stay
    # at the pass's peak otherwise); not in a burst, which would take them again at once.
    if not _bursting(state):
        give_back_memory()


def _bursting(state: State) -> bool:
    """The work queue is reconciling a burst (new objects: a GitOps sync, kubectl apply)."""
    return bool(state.in_flight or state.again) or time.monotonic() - state.last_any_status_write < BURST_WINDOW


async def _after_burst(state: State, limit: float) -> None:
    """Waits (at most ``limit`` seconds) for a burst to end: the pass would read every
    stream and hold the queue's batches back while the queue is already writing the new
    objects' status (py-spy: ~10% of the operator's CPU in a 4,000-object burst)."""
    deadline = time.monotonic() + limit
    while _bursting(state) and time.monotonic() < deadline:
        await asyncio.sleep(BURST_POLL)


async def _pass(state: State) -> None:
    reconciler = state.get_reconciler()
    queued = state.in_flight | state.again | state.topic_wait.keys()
    keys: list[Key] = []
    watch: list[Key] = []  # Topics only read (for their figures)
    for key, declared in list(reconciler.objects.items()):
        if declared.body["metadata"].get("deletionTimestamp"):
            continue
        if declared.paused or key in queued:
            if key[0] == "Topic":
                watch.append(key)
        else:
            keys.append(key)
    observing = state.config.observe_interval > 0
    if not (keys or (observing and watch)) or reconciler.kube is None:
        return
    started = time.monotonic()
    # A burst being reconciled (asked before the sweep: the sweep holds the queue's
    # batches back, so the status writes pause because of us, not because it is over).
    busy = bool(state.in_flight or state.again) or started - state.last_any_status_write < BURST_WINDOW
    trips, writes = reconciler.redis_work()
    state.fence()
    computed, observed = await reconciler.sweep(keys, watch if observing else None)
    status_writes = await _write_statuses(state, {k: computed[k] for k in keys if k in computed}, busy)
    if observing:
        await publish(state, observed)
    trips_after, writes_after = reconciler.redis_work()
    metrics.RESYNC_SECONDS.observe(time.monotonic() - started)
    log.info("resync: %d objects, %d Redis round trips, %d Redis writes, %d status writes in %.2fs",
             len(keys), trips_after - trips, writes_after - writes, status_writes, time.monotonic() - started)


async def _write_statuses(state: State, computed: dict[Key, Computed], busy: bool) -> int:
    """Status of each object that changed, and the Events of repairs even when status reads
    the same. While reconciles are writing (``busy``: a burst of new objects), figures-only
    updates wait for a later pass: the API server's time goes to the writes kubectl wait and
    GitOps tools read."""
    reconciler = state.get_reconciler()
    now = time.monotonic()
    parallel = asyncio.Semaphore(PARALLEL_WRITES)
    busy = busy or now - state.last_any_status_write < BURST_WINDOW

    async def write(declared: Declared, result: Computed, runtime_due: bool) -> bool:
        async with parallel:
            written = await write_status(state, declared, result, runtime=runtime_due)
        if not written and (result.drift or result.reset):
            post_events(state, declared.body, result)  # repaired, though status reads the same
        return written

    writes = []
    for key, result in computed.items():
        declared = reconciler.objects.get(key)
        if declared is None:
            continue
        runtime_due = not busy and now - state.last_status_write.get(key, 0) >= state.config.status_interval
        # Most objects of an idle pass have nothing to write: no task for them.
        if result.drift or result.reset or status_changed(declared, build_status(declared, result),
                                                          runtime=runtime_due):
            writes.append(write(declared, result, runtime_due))
    return sum(await asyncio.gather(*writes))
