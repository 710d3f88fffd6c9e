"""kopf handlers: thin, all work goes through the Reconciler.

- create/update/resume reconcile the object at once (its Topic too, for a group);
- a single resync loop re-checks every object every interval (with jitter) in engine
  batches: drift is repaired, status is written only when it changed;
- delete honours deletionPolicy behind our finalizer.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import kopf

from .. import metrics
from ..engine.errors import is_connection_problem
from ..model import API_GROUP, API_VERSION, STATUS_LIST_MAX
from ..printable import printable, printable_tree
from .conditions import TOPIC_NOT_FOUND, conditions, same_conditions
from .kube import KubeAPI
from .observation import Observation, observe_loop
from .reconciler import SKIP_CLEANUP_ANNOTATION, Computed, Declared, Key, Reconciler

log = logging.getLogger("redistreams.operator")

PLURALS = {"Topic": "topics", "ConsumerGroup": "consumergroups"}
RUNTIME_FIELDS = ("length", "lastGeneratedId", "entriesAdded", "groups", "lag", "lagExact", "pending",
                  "consumers", "lastDeliveredId")


@dataclass
class OperatorConfig:
    cluster_id: str = "default"
    redis_url: str = field(default="redis://localhost:6379/0", repr=False)  # may hold a password
    resync_interval: float = 60.0
    status_interval: float = 30.0  # runtime figures (length, lag…) are written at most this often
    retry_delay: float = 5.0
    # Metrics and continuous retention: one observation pass this often (0: off; then
    # retention runs, unbounded, with each reconcile instead).
    observe_interval: float = 30.0
    retention_steps_per_pass: int = 1000  # Lua steps of <= 1000 entries each, over all Topics
    retention_pause: float = 0.02  # between rounds of steps, so other clients' commands get in


@dataclass
class State:
    """Kept in kopf's memo: one per operator."""

    config: OperatorConfig
    reconciler: Reconciler | None = None
    last_status_write: dict[Key, float] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    observe_task: asyncio.Task[None] | None = None
    observation: Observation = field(default_factory=Observation)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    # Informational events wait for a lull in status writes (see _announce).
    announcements: list[tuple[Any, str, str]] = field(default_factory=list)
    announcements_since: float = 0.0
    announcer: asyncio.Task[None] | None = None
    last_any_status_write: float = 0.0
    topic_wait: dict[Key, float] = field(default_factory=dict)  # new groups whose Topic is not seen yet
    in_flight: set[Key] = field(default_factory=set)
    again: set[Key] = field(default_factory=set)


def build_status(declared: Declared, computed: Computed) -> dict[str, Any]:
    status = dict(computed.fields)
    status["observedGeneration"] = declared.generation
    status["conditions"] = conditions(computed.outcome, declared.generation, declared.status.get("conditions"))
    return status


def status_changed(declared: Declared, status: dict[str, Any], *, runtime: bool) -> bool:
    old = declared.status
    if old.get("observedGeneration") != status.get("observedGeneration"):
        return True
    if not same_conditions(old.get("conditions"), status.get("conditions")):
        return True
    keys = set(status) - {"conditions", "observedGeneration"} - (set() if runtime else set(RUNTIME_FIELDS))
    return any(old.get(k) != status.get(k) for k in keys)


WATCH_HANDLER = "watch"


class _QuietWatch(logging.Filter):
    """kopf logs every handler success at INFO; for the watch handler that is one line
    per object change, thousands per minute at scale, saying nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != f"Handler '{WATCH_HANDLER}' succeeded."


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    """Handlers for both kinds on the given registry."""
    quiet = logging.getLogger("kopf.objects")
    if not any(isinstance(f, _QuietWatch) for f in quiet.filters):
        quiet.addFilter(_QuietWatch())

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
        settings.persistence.finalizer = f"{API_GROUP}/finalizer"
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=API_GROUP)
        settings.posting.level = logging.INFO
        settings.scanning.disabled = True
        settings.watching.server_timeout = 300
        settings.networking.request_timeout = 60
        # Bounded concurrency: a burst of thousands of objects does not become thousands
        # of simultaneous tasks (memory), and engine batches still fill up.
        settings.queueing.worker_limit = 1000
        memo.state = State(config)

    @kopf.on.login(registry=registry)
    def login(memo: kopf.Memo, **kwargs: Any) -> kopf.ConnectionInfo | None:
        info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
        if info is not None and memo.get("state") is not None:
            state: State = memo.state
            if state.reconciler is None:
                state.reconciler = Reconciler(cluster_id=config.cluster_id, default_url=config.redis_url,
                                              kube=KubeAPI(info))
        return info

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        state: State = memo.state
        if state.task is not None:
            state.task.cancel()
        if state.observe_task is not None:
            state.observe_task.cancel()
        metrics.SNAPSHOT.clear()
        if state.reconciler is not None and state.reconciler.kube is not None:
            await state.reconciler.kube.close()

    for kind, plural in PLURALS.items():
        _register_kind(registry, kind, plural)


def _deletes_data(spec: Any, **_: Any) -> bool:
    return (spec or {}).get("deletionPolicy") == "Delete"


def _register_kind(registry: kopf.OperatorRegistry, kind: str, plural: str) -> None:
    """Level-based, like controller-runtime: an object whose status.observedGeneration
    lags its generation is reconciled; no kopf diff-base or progress annotations, so a
    new object costs one status write. Only deletionPolicy: Delete objects carry a
    finalizer (their cleanup must not be missed); Retain objects are released when
    their deletion is seen."""
    resource = dict(group=API_GROUP, version=API_VERSION, plural=plural, registry=registry)

    @kopf.on.event(**resource, id=WATCH_HANDLER)
    async def watch(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        state: State = memo.state
        reconciler = _reconciler(state)
        declared = Declared(kind, dict(body))
        if type == "DELETED":
            previous = reconciler.objects.get(declared.key, declared)
            reconciler.forget(*declared.key)
            state.topic_wait.pop(declared.key, None)
            for scope in ("topic", "ready", "blocked"):  # its series vanish now, not next pass
                metrics.SNAPSHOT.drop((scope, declared.key))
            # Retain objects have no finalizer, and a Delete object can be deleted before
            # kopf added ours: apply the policy now. After a finalizer cleanup the records
            # are gone and this finds nothing to do.
            _spawn(state, _after_deletion(state, previous))
            return
        declared = reconciler.remember(kind, body)
        if state.task is None:
            state.task = asyncio.get_running_loop().create_task(_resync_loop(state))
        if state.observe_task is None and state.config.observe_interval > 0:
            reconciler.trim_on_apply = False  # retention moves to the bounded observation loop
            state.observe_task = asyncio.get_running_loop().create_task(observe_loop(state))
        if declared.paused or body["metadata"].get("deletionTimestamp"):
            return
        if declared.status.get("observedGeneration") != declared.generation:
            _spawn(state, _reconcile(state, declared.key))

    @kopf.on.delete(**resource, when=_deletes_data)
    async def delete(body: kopf.Body, memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
        state: State = memo.state
        declared = Declared(kind, dict(body))
        annotations = body["metadata"].get("annotations") or {}
        if declared.paused or annotations.get(SKIP_CLEANUP_ANNOTATION) == "true":
            logger.info("leaving Redis as it is (paused or skip-cleanup)")
            return
        reconciler = _reconciler(state)
        if kind == "Topic":
            # Its stream goes only with every group on it: give the ConsumerGroups deleted
            # together with it (kubectl delete -f, a GitOps prune) a moment to be seen.
            deadline = time.monotonic() + DELETE_GROUPS_GRACE
            while reconciler.groups_blocking_delete(declared.key) and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
        try:
            result = await reconciler.delete(declared)
        except Exception as exc:  # noqa: BLE001 - Secret or model problems: nothing we can clean
            logger.warning(f"cannot clean up in Redis: {printable(str(exc))}; releasing the object")
            return
        if result is None:
            return
        if result.failure is not None:
            if is_connection_problem(result.failure) or result.failure.reason in ("ReadOnlyReplica", "PermissionDenied"):
                # Nothing was released: retried until Redis lets us, or someone says to skip.
                raise kopf.TemporaryError(
                    f"{printable(result.failure.message)}; to delete without cleaning up Redis, annotate "
                    f'{SKIP_CLEANUP_ANNOTATION}="true"', delay=state.config.retry_delay * 2)
            logger.warning(printable(result.failure.message))
            return
        message = printable("; ".join([f"{result.label} {result.outcome}", *result.details]))
        if result.kept_by:
            # Status first: it is what people look at while the object is still there.
            await patch_status(state, reconciler, Declared(kind, dict(body)),
                               {"streamKeptBy": [printable(g) for g in result.kept_by[:STATUS_LIST_MAX]]})
            kopf.warn(body, reason="StreamKept", message=message)
            return
        kopf.info(body, reason=result.outcome.capitalize().replace(" ", ""), message=message)


def request_reconcile(state: State, key: Key) -> None:
    """Reconcile an object soon (once, however often asked while it runs)."""
    _spawn(state, _reconcile(state, key))


def _spawn(state: State, coroutine: Any) -> None:
    task = asyncio.get_running_loop().create_task(coroutine)
    state.tasks.add(task)
    task.add_done_callback(state.tasks.discard)


async def _reconcile(state: State, key: Key) -> None:
    """Reconcile one object (batched with whatever else is asked for) and write status.

    Like a controller-runtime work queue, a key is never reconciled twice at once: asked
    again meanwhile, it runs once more afterwards (two overlapping runs would both see
    the old status and both write)."""
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
            _spawn(state, _reconcile(state, key))


async def _reconcile_once(state: State, key: Key) -> None:
    reconciler = _reconciler(state)
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
            loop.call_later(TOPIC_GRACE, lambda: _spawn(state, _reconcile(state, key)))
            return
    state.topic_wait.pop(key, None)
    await _write_status(state, reconciler, declared, computed)
    if outcome.ready is False and not outcome.stalled:
        loop.call_later(state.config.retry_delay, lambda: _spawn(state, _reconcile(state, key)))
    if key[0] == "Topic" and outcome.ready:
        # Groups waiting for this Topic need not wait for the next resync.
        for group in reconciler.groups_of(key):
            if not group.paused and not _is_ready(group):
                _spawn(state, _reconcile(state, group.key))


def _is_ready(declared: Declared) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in declared.status.get("conditions") or [])


async def _write_status(state: State, reconciler: Reconciler, declared: Declared, computed: Computed,
                        *, runtime: bool = True) -> bool:
    """Writes status if it changed (runtime figures only when ``runtime``)."""
    status = build_status(declared, computed)
    if reconciler.kube is None or not status_changed(declared, status, runtime=runtime):
        return False
    if not await patch_status(state, reconciler, declared, status):
        return False
    _post_events(state, declared.body, computed)
    return True


async def patch_status(state: State, reconciler: Reconciler, declared: Declared, status: dict[str, Any]) -> bool:
    """Merge-patch status; our own view and the write clock follow at once, so the next
    pass does not write the same again. False (logged, counted) when the API refused."""
    assert reconciler.kube is not None
    try:
        await reconciler.kube.patch_status(PLURALS[declared.kind], declared.key[1], declared.key[2],
                                           printable_tree(status))
    except Exception as exc:  # noqa: BLE001 - a later pass tries again
        metrics.ERRORS.labels("status", type(exc).__name__).inc()
        log.warning("cannot write status of %s/%s: %s", declared.kind.lower(), declared.key[2], exc)
        return False
    metrics.STATUS_WRITES.labels(declared.kind).inc()
    declared.body["status"] = {**declared.status, **status}
    state.last_status_write[declared.key] = state.last_any_status_write = time.monotonic()
    return True


async def _after_deletion(state: State, declared: Declared) -> None:
    """An object is gone: honour its deletionPolicy (Retain drops the ownership records)."""
    annotations = declared.body["metadata"].get("annotations") or {}
    if declared.paused or annotations.get(SKIP_CLEANUP_ANNOTATION) == "true":
        return
    try:
        result = await _reconciler(state).delete(declared)
    except Exception as exc:  # noqa: BLE001 - best effort; records of a gone object only block others
        log.warning("cannot release %s/%s in Redis: %s", declared.kind.lower(), declared.key[2], exc)
        return
    if result is not None and result.failure is not None:
        log.warning("cannot release %s/%s in Redis: %s", declared.kind.lower(), declared.key[2], result.failure.message)


def _reconciler(state: State) -> Reconciler:
    if state.reconciler is None:  # logged in without credentials we can reuse (tests)
        state.reconciler = Reconciler(cluster_id=state.config.cluster_id, default_url=state.config.redis_url)
    return state.reconciler


def _post_events(state: State, body: Any, computed: Computed) -> None:
    result = computed.result
    if computed.reset:
        kopf.warn(body, reason="RedisReset", message=printable(computed.reset))
    if result is None:
        if computed.outcome.ready is False:
            kopf.warn(body, reason=computed.outcome.reason, message=printable(computed.outcome.message))
        return
    if result.failure is not None:
        kopf.warn(body, reason=result.failure.reason, message=printable(result.failure.message))
    elif computed.drift and not result.failure:
        kopf.info(body, reason="DriftRepaired",
                  message=printable("; ".join([f"{result.label} {result.outcome}", *result.details])))
    elif result.reset_applied or result.consumers_removed:
        # spec.reset and spec.consumerCleanup moved or removed something: their own reasons, at once.
        if result.reset_applied:
            kopf.info(body, reason="PositionReset",
                      message=printable("; ".join(d for d in result.details if d.startswith("moved group"))))
        if result.consumers_removed:
            kopf.info(body, reason="ConsumersRemoved",
                      message=printable("; ".join(d for d in result.details if d.startswith(("removed ", "kept ")))))
    elif result.outcome in ("created", "configured"):
        _announce(state, body, result.outcome.capitalize(),
                  printable("; ".join([f"{result.label} {result.outcome}", *result.details])))


ANNOUNCE_LULL = 5.0  # seconds without status writes before routine events go out
ANNOUNCE_MAX_DELAY = 60.0
BURST_WINDOW = 2.0  # status writes this recent mean a burst is being reconciled
TOPIC_GRACE = 3.0  # seconds a new group waits for its Topic before TopicNotFound is written
DELETE_GROUPS_GRACE = 10.0  # seconds a deleted Topic waits for its Delete groups' deletion to be seen


def _announce(state: State, body: Any, reason: str, message: str) -> None:
    """Routine events (Created, Configured) trail status writes: kubectl wait, Argo CD and
    Flux read status, so during a burst the API server's time goes to status first.
    Warnings and repairs are posted at once."""
    if not state.announcements:
        state.announcements_since = time.monotonic()
    state.announcements.append((body, reason, message))
    if state.announcer is None:
        state.announcer = asyncio.get_running_loop().create_task(_announce_when_quiet(state))


async def _announce_when_quiet(state: State) -> None:
    try:
        while state.announcements:
            now = time.monotonic()
            if now - state.last_any_status_write < ANNOUNCE_LULL and \
                    now - state.announcements_since < ANNOUNCE_MAX_DELAY:
                await asyncio.sleep(ANNOUNCE_LULL / 2)
                continue
            batch, state.announcements = state.announcements, []
            state.announcements_since = time.monotonic()
            for body, reason, message in batch:
                kopf.info(body, reason=reason, message=message)
            await asyncio.sleep(0)
    finally:
        state.announcer = None


def _give_back_memory() -> None:
    """After a burst, return freed heap pages to the system: CPython's allocator keeps
    them otherwise, and the operator's RSS would stay at its peak for good."""
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


try:
    _LIBC: Any = ctypes.CDLL("libc.so.6") if sys.platform.startswith("linux") else None
    _LIBC.malloc_trim  # glibc only
except (OSError, AttributeError):
    _LIBC = None


async def _resync_loop(state: State) -> None:
    """Every interval (±10%), one engine pass over every object."""
    reconciler = _reconciler(state)
    while True:
        await asyncio.sleep(state.config.resync_interval * random.uniform(0.9, 1.1))
        try:
            await _resync_once(state, reconciler)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the loop must survive anything
            log.exception("resync failed; will try again")


async def _resync_once(state: State, reconciler: Reconciler) -> None:
    keys = [k for k, d in reconciler.objects.items()
            if not d.paused and not d.body["metadata"].get("deletionTimestamp")]
    if not keys or reconciler.kube is None:
        return
    started = time.monotonic()
    trips, writes = reconciler.redis_work()
    computed = await reconciler.run(keys)
    now = time.monotonic()
    parallel = asyncio.Semaphore(16)  # many figures change at once on a busy cluster
    # While reconciles are writing (a burst of new objects), figures-only updates wait for
    # a later pass: the API server's time goes to the writes kubectl wait and GitOps read.
    busy = now - state.last_any_status_write < BURST_WINDOW

    async def write(key: Key, result: Computed) -> bool:
        declared = reconciler.objects.get(key)
        if declared is None:
            return False
        runtime_due = not busy and now - state.last_status_write.get(key, 0) >= state.config.status_interval
        async with parallel:
            written = await _write_status(state, reconciler, declared, result, runtime=runtime_due)
        if not written and (result.drift or result.reset):
            _post_events(state, declared.body, result)  # repaired, though status reads the same
        return written

    status_writes = sum(await asyncio.gather(*(write(k, r) for k, r in computed.items())))
    trips_after, writes_after = reconciler.redis_work()
    metrics.RESYNC_SECONDS.observe(time.monotonic() - started)
    _give_back_memory()
    log.info("resync: %d objects, %d Redis round trips, %d Redis writes, %d status writes in %.2fs",
             len(keys), trips_after - trips, writes_after - writes, status_writes, time.monotonic() - started)
