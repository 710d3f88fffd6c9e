"""The periodic resync: every interval (with jitter) one engine pass over every object,
in engine batches. Drift is repaired; status is written only when it changed, and
runtime figures at most every status_interval."""

from __future__ import annotations

import asyncio
import logging
import random
import time

from .. import metrics
from .objects import Key
from .runtime import State, give_back_memory, post_events, write_status
from .status import Computed

log = logging.getLogger("redistreams.operator")

BURST_WINDOW = 2.0  # status writes this recent mean a burst is being reconciled
PARALLEL_WRITES = 16  # many figures change at once on a busy cluster


async def resync_loop(state: State) -> None:
    """Every interval (±10%), one pass; the loop survives any failure of a pass."""
    while True:
        await asyncio.sleep(state.config.resync_interval * random.uniform(0.9, 1.1))
        try:
            await resync_once(state)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the loop must survive anything
            log.exception("resync failed; will try again")


async def resync_once(state: State) -> None:
    reconciler = state.get_reconciler()
    keys = [k for k, d in reconciler.objects.items()
            if not d.paused and not d.body["metadata"].get("deletionTimestamp")]
    if not keys or reconciler.kube is None:
        return
    started = time.monotonic()
    trips, writes = reconciler.redis_work()
    state.fence()
    computed = await reconciler.run(keys)
    now = time.monotonic()
    parallel = asyncio.Semaphore(PARALLEL_WRITES)
    # While reconciles are writing (a burst of new objects), figures-only updates wait for
    # a later pass: the API server's time goes to the writes kubectl wait and GitOps read.
    busy = now - state.last_any_status_write < BURST_WINDOW

    async def write(key: Key, result: Computed) -> bool:
        declared = reconciler.objects.get(key)
        if declared is None:
            return False
        runtime_due = not busy and now - state.last_status_write.get(key, 0) >= state.config.status_interval
        async with parallel:
            written = await write_status(state, declared, result, runtime=runtime_due)
        if not written and (result.drift or result.reset):
            post_events(state, declared.body, result)  # repaired, though status reads the same
        return written

    status_writes = sum(await asyncio.gather(*(write(k, r) for k, r in computed.items())))
    trips_after, writes_after = reconciler.redis_work()
    metrics.RESYNC_SECONDS.observe(time.monotonic() - started)
    give_back_memory()
    log.info("resync: %d objects, %d Redis round trips, %d Redis writes, %d status writes in %.2fs",
             len(keys), trips_after - trips, writes_after - writes, status_writes, time.monotonic() - started)
