"""kopf handler registration, and nothing else: the work goes to the modules above.

- create/update/resume (the watch) reconcile an object whose status lags its generation,
  through the work queue (queue.py); the first event starts the periodic pass
  (resync.py, which feeds observation.py's metrics and retention);
- delete honours deletionPolicy behind our finalizer; a deletion seen without one
  (Retain objects) releases the object's records.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, TypedDict

import kopf

from .. import metrics
from ..engine.errors import is_connection_problem
from ..model import API_GROUP, API_VERSION, STATUS_LIST_MAX
from ..printable import printable
from .kube import KubeAPI, fresh_login
from .objects import SKIP_CLEANUP_ANNOTATION, Declared
from .queue import reconcile_if_behind, request_reconcile, spawn
from .reconciler import Reconciler
from .resync import resync_loop
from .runtime import PLURALS, OperatorConfig, State, patch_status
from .secrets import SecretCache

log = logging.getLogger("redistreams.operator")

WATCH_HANDLER = "watch"
# kopf keys a retried handler's progress by its id in an annotation: the default id, from
# the function's qualified name (_register_kind.<locals>.delete), is no valid annotation
# name, so a cleanup that failed once (Redis unreachable) was never retried and the object
# stayed Terminating for good.
DELETE_HANDLER = "delete"
DELETE_GROUPS_GRACE = 10.0  # seconds a deleted Topic waits for its Delete groups' deletion to be seen


class _QuietWatch(logging.Filter):
    """kopf logs every handler success at INFO; for the watch handler that is one line
    per object change, thousands per minute at scale, saying nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != f"Handler '{WATCH_HANDLER}' succeeded."


class NoDiffBase(kopf.DiffBaseStorage):
    """No diff-base: reconciliation is level-based and our one changing handler (on.delete)
    never reads kopf's diffs. kopf's AnnotationsDiffBaseStorage cost a PATCH of a
    last-handled-configuration annotation per new or changed Delete object (its 2nd write
    beside the finalizer) and a deep copy of every body at every watch event (~10% of the
    operator's CPU in a burst, py-spy)."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    """Handlers for both kinds on the given registry."""
    quiet = logging.getLogger("kopf.objects")
    if not any(isinstance(f, _QuietWatch) for f in quiet.filters):
        quiet.addFilter(_QuietWatch())

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
        settings.persistence.finalizer = f"{API_GROUP}/finalizer"
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
        settings.persistence.diffbase_storage = NoDiffBase()
        settings.posting.level = logging.INFO
        settings.scanning.disabled = True
        settings.watching.server_timeout = 300
        settings.networking.request_timeout = 60
        # Bounded concurrency: a burst of thousands of objects does not become thousands
        # of simultaneous tasks (memory), and engine batches still fill up.
        settings.queueing.worker_limit = 1000
        memo.state = State(config)
        if memo.get("fence") is not None:  # leader election (leadership.lead)
            memo.state.fence = memo.fence

    @kopf.on.login(registry=registry)
    def login(memo: kopf.Memo, **kwargs: Any) -> kopf.ConnectionInfo | None:
        info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
        if info is not None and memo.get("state") is not None:
            state: State = memo.state
            if state.reconciler is None:
                kube = KubeAPI(info, relogin=fresh_login)
                secrets = SecretCache(kube, on_change=lambda namespace, name: _secret_changed(state, namespace, name))
                state.reconciler = Reconciler(cluster_id=config.cluster_id, default_url=config.redis_url,
                                              kube=kube, tenancy=config.tenancy, secrets=secrets)
        return info

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        state: State = memo.state
        if state.task is not None:
            state.task.cancel()
        if state.recorder is not None:  # kopf would wait 5 s for it; with HA, the standby waits too
            await state.recorder.close()
        metrics.SNAPSHOT.clear()
        if state.reconciler is not None and state.reconciler.secrets is not None:
            await state.reconciler.secrets.close()
        if state.reconciler is not None and state.reconciler.kube is not None:
            await state.reconciler.kube.close()

    for kind, plural in PLURALS.items():
        _register_kind(registry, kind, plural)


def _secret_changed(state: State, namespace: str, name: str) -> None:
    """A connection Secret changed or went: its Topics and their groups are reconciled now
    (a new URL needs the groups made there too), not at the next resync."""
    reconciler = state.get_reconciler()
    for key, declared in list(reconciler.objects.items()):
        ref = ((declared.body.get("spec") or {}).get("connection") or {}).get("secretRef") or {}
        if key[0] == "Topic" and key[1] == namespace and ref.get("name") == name and not declared.paused:
            request_reconcile(state, key)
            for group in reconciler.groups_of(key):
                if not group.paused:
                    request_reconcile(state, group.key)


def _deletes_data(spec: Any, **_: Any) -> bool:
    return (spec or {}).get("deletionPolicy") == "Delete"


class _ResourceSelector(TypedDict):
    """The resource arguments shared by a kind's kopf handlers."""

    group: str
    version: str
    plural: str
    registry: kopf.OperatorRegistry


def _register_kind(registry: kopf.OperatorRegistry, kind: str, plural: str) -> None:
    """Level-based, like controller-runtime: an object whose status.observedGeneration
    lags its generation is reconciled; no kopf diff-base or progress annotations, so a
    new object costs one status write. Only deletionPolicy: Delete objects carry a
    finalizer (their cleanup must not be missed); Retain objects are released when
    their deletion is seen."""
    resource = _ResourceSelector(group=API_GROUP, version=API_VERSION, plural=plural, registry=registry)

    @kopf.on.event(**resource, id=WATCH_HANDLER)
    async def watch(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        state: State = memo.state
        reconciler = state.get_reconciler()
        declared = Declared(kind, dict(body))
        if type == "DELETED":
            previous = reconciler.objects.get(declared.key, declared)
            reconciler.forget(*declared.key)
            state.forget(declared.key)
            for scope in ("topic", "ready", "blocked"):  # its series vanish now, not next pass
                metrics.SNAPSHOT.drop((scope, declared.key))
            # Retain objects have no finalizer, and a Delete object can be deleted before
            # kopf added ours: apply the policy now. After a finalizer cleanup the records
            # are gone and this finds nothing to do.
            spawn(state, _after_deletion(state, previous))
            return
        cached = reconciler.objects.get(declared.key)
        declared = reconciler.remember(kind, body)
        if state.task is None:
            state.task = asyncio.get_running_loop().create_task(resync_loop(state))
            if state.config.observe_interval > 0:
                reconciler.trim_on_apply = False  # retention moves to the pass's bounded steps
        if declared.paused or body["metadata"].get("deletionTimestamp"):
            return
        reconcile_if_behind(state, cached, declared)

    @kopf.on.delete(**resource, id=DELETE_HANDLER, when=_deletes_data)
    async def delete(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
        state: State = memo.state
        declared = Declared(kind, dict(body))
        annotations = body["metadata"].get("annotations") or {}
        if declared.paused or annotations.get(SKIP_CLEANUP_ANNOTATION) == "true":
            logger.info("leaving Redis as it is (paused or skip-cleanup)")
            return
        reconciler = state.get_reconciler()
        state.fence()
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
            retry = ("ReadOnlyReplica", "PermissionDenied")
            if is_connection_problem(result.failure) or result.failure.reason in retry:
                # Nothing was released: retried until Redis lets us, or someone says to skip.
                raise kopf.TemporaryError(
                    f"{printable(result.failure.message)}; to delete without cleaning up Redis, annotate "
                    f'{SKIP_CLEANUP_ANNOTATION}="true"', delay=state.config.retry_delay * 2)
            logger.warning(printable(result.failure.message))
            return
        message = printable("; ".join([f"{result.label} {result.outcome}", *result.details]))
        if result.kept_by:
            # Status first: it is what people look at while the object is still there.
            await patch_status(state, Declared(kind, dict(body)),
                               {"streamKeptBy": [printable(g) for g in result.kept_by[:STATUS_LIST_MAX]]})
            state.warn(body, "StreamKept", message)
            return
        state.info(body, result.outcome.capitalize().replace(" ", ""), message)


async def _after_deletion(state: State, declared: Declared) -> None:
    """An object is gone: honour its deletionPolicy (Retain drops the ownership records)."""
    annotations = declared.body["metadata"].get("annotations") or {}
    if declared.paused or annotations.get(SKIP_CLEANUP_ANNOTATION) == "true":
        return
    state.fence()
    try:
        result = await state.get_reconciler().delete(declared)
    except Exception as exc:  # noqa: BLE001 - best effort; records of a gone object only block others
        log.warning("cannot release %s/%s in Redis: %s", declared.kind.lower(), declared.key[2], exc)
        return
    if result is not None and result.failure is not None:
        log.warning("cannot release %s/%s in Redis: %s", declared.kind.lower(), declared.key[2], result.failure.message)
