"""kopf handlers: thin, all work goes through the Reconciler.

- create/update/resume reconcile the object at once (its Topic too, for a group);
- a single resync loop re-checks every object every interval (with jitter) in engine
  batches: drift is repaired, status is written only when it changed;
- delete honours deletionPolicy behind our finalizer.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any

import kopf

from ..engine.errors import is_connection_problem
from ..model import API_GROUP, API_VERSION
from .conditions import conditions, same_conditions
from .kube import KubeAPI
from .reconciler import SKIP_CLEANUP_ANNOTATION, Computed, Declared, Key, Reconciler, provisioning

log = logging.getLogger("redistreams.operator")

PLURALS = {"Topic": "topics", "ConsumerGroup": "consumergroups"}
RUNTIME_FIELDS = ("length", "lastGeneratedId", "entriesAdded", "groups", "lag", "lagExact", "pending",
                  "consumers", "lastDeliveredId")


@dataclass
class OperatorConfig:
    cluster_id: str = "default"
    redis_url: str = "redis://localhost:6379/0"
    resync_interval: float = 60.0
    status_interval: float = 30.0  # runtime figures (length, lag…) are written at most this often
    retry_delay: float = 5.0


@dataclass
class State:
    """Kept in kopf's memo: one per operator."""

    config: OperatorConfig
    reconciler: Reconciler | None = None
    last_status_write: dict[Key, float] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


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


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    """Handlers for both kinds on the given registry."""

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
        settings.persistence.finalizer = f"{API_GROUP}/finalizer"
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=API_GROUP)
        settings.posting.level = logging.INFO
        settings.scanning.disabled = True
        settings.watching.server_timeout = 300
        settings.networking.request_timeout = 60
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
        if state.reconciler is not None and state.reconciler.kube is not None:
            await state.reconciler.kube.close()

    for kind, plural in PLURALS.items():
        _register_kind(registry, kind, plural)


def _register_kind(registry: kopf.OperatorRegistry, kind: str, plural: str) -> None:
    resource = dict(group=API_GROUP, version=API_VERSION, plural=plural, registry=registry)

    @kopf.on.event(**resource)
    async def watch(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        state: State = memo.state
        reconciler = _reconciler(state)
        if type == "DELETED":
            meta = body["metadata"]
            reconciler.forget(kind, meta.get("namespace") or "default", meta["name"])
        else:
            reconciler.remember(kind, dict(body))
            if state.task is None:
                state.task = asyncio.get_running_loop().create_task(_resync_loop(state))

    @kopf.on.resume(**resource)
    @kopf.on.create(**resource)
    @kopf.on.update(**resource)
    async def reconcile(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
        state: State = memo.state
        reconciler = _reconciler(state)
        reconciler.remember(kind, dict(body))
        declared = reconciler.objects[Declared(kind, dict(body)).key]
        if declared.paused:
            return
        computed = await reconciler.submit(declared.key) or Computed(provisioning())
        status = build_status(declared, computed)
        patch.status.update(status)
        state.last_status_write[declared.key] = time.monotonic()
        _post_events(body, computed)
        if kind == "Topic" and computed.outcome.ready:
            state.wake.set()  # groups waiting for this Topic need not wait for the next resync
        if computed.outcome.ready is False and not computed.outcome.stalled:
            raise kopf.TemporaryError(computed.outcome.message, delay=state.config.retry_delay)

    @kopf.on.delete(**resource)
    async def delete(body: kopf.Body, memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
        state: State = memo.state
        declared = Declared(kind, dict(body))
        annotations = body["metadata"].get("annotations") or {}
        if declared.paused or annotations.get(SKIP_CLEANUP_ANNOTATION) == "true":
            logger.info("leaving Redis as it is (paused or skip-cleanup)")
            return
        try:
            result = await _reconciler(state).delete(declared)
        except Exception as exc:  # noqa: BLE001 - Secret or model problems: nothing we can clean
            logger.warning(f"cannot clean up in Redis: {exc}; releasing the object")
            return
        if result is None:
            return
        if result.failure is not None:
            if is_connection_problem(result.failure) or result.failure.reason == "ReadOnlyReplica":
                raise kopf.TemporaryError(
                    f"{result.failure.message}; to delete without cleaning up Redis, annotate "
                    f'{SKIP_CLEANUP_ANNOTATION}="true"', delay=state.config.retry_delay * 2)
            logger.warning(result.failure.message)
            return
        kopf.info(body, reason=result.outcome.capitalize().replace(" ", ""),
                  message="; ".join([f"{result.label} {result.outcome}", *result.details]))


def _reconciler(state: State) -> Reconciler:
    if state.reconciler is None:  # logged in without credentials we can reuse (tests)
        state.reconciler = Reconciler(cluster_id=state.config.cluster_id, default_url=state.config.redis_url)
    return state.reconciler


def _post_events(body: Any, computed: Computed) -> None:
    result = computed.result
    if computed.reset:
        kopf.warn(body, reason="RedisReset",
                  message="Redis lost this stream's data; re-created it and its groups from 0")
    if result is None:
        if computed.outcome.ready is False:
            kopf.warn(body, reason=computed.outcome.reason, message=computed.outcome.message)
        return
    if result.failure is not None:
        kopf.warn(body, reason=result.failure.reason, message=result.failure.message)
    elif result.outcome in ("created", "configured"):
        kopf.info(body, reason=result.outcome.capitalize(),
                  message="; ".join([f"{result.label} {result.outcome}", *result.details]))


async def _resync_loop(state: State) -> None:
    """Every interval (±10%), one engine pass over every object; wakes early on demand."""
    reconciler = _reconciler(state)
    while True:
        interval = state.config.resync_interval * random.uniform(0.9, 1.1)
        try:
            await asyncio.wait_for(state.wake.wait(), timeout=interval)
        except asyncio.TimeoutError:
            pass
        state.wake.clear()
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
    status_writes = 0
    for key, result in computed.items():
        declared = reconciler.objects.get(key)
        if declared is None:
            continue
        status = build_status(declared, result)
        runtime_due = now - state.last_status_write.get(key, 0) >= state.config.status_interval
        if not status_changed(declared, status, runtime=runtime_due):
            continue
        try:
            await reconciler.kube.patch_status(PLURALS[key[0]], key[1], key[2], status)
        except Exception as exc:  # noqa: BLE001 - next pass tries again
            log.warning("cannot write status of %s/%s: %s", key[0].lower(), key[2], exc)
            continue
        state.last_status_write[key] = now
        status_writes += 1
        if result.result is not None and result.result.outcome in ("created", "configured") or result.reset:
            _post_events(declared.body, result)
    trips_after, writes_after = reconciler.redis_work()
    log.info("resync: %d objects, %d Redis round trips, %d Redis writes, %d status writes in %.2fs",
             len(keys), trips_after - trips, writes_after - writes, status_writes, time.monotonic() - started)
