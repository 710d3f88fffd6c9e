"""What the handlers, the work queue, the resync and the observation pass share: the
operator's configuration, its State (one per operator, kept in kopf's memo), status
writes and Events.

Status goes through one helper (``patch_status``); Events go through the State's
EventRecorder (events.py: aggregated per burst, routine ones after a lull in status writes).
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import DEFAULT_CLUSTER_ID, metrics
from ..printable import printable, printable_tree
from ..tenancy import Tenancy
from .conditions import conditions, same_conditions
from .events import EventRecorder
from .objects import Declared, Key, Version
from .reconciler import Reconciler
from .status import Computed

log = logging.getLogger("redistreams.operator")

PLURALS = {"Topic": "topics", "ConsumerGroup": "consumergroups"}
# Figures that change with traffic: written at most every status_interval.
RUNTIME_FIELDS = ("length", "lastGeneratedId", "entriesAdded", "groups", "lag", "lagExact", "pending",
                  "consumers", "lastDeliveredId")


@dataclass
class OperatorConfig:
    cluster_id: str = DEFAULT_CLUSTER_ID
    redis_url: str = field(default="redis://localhost:6379/0", repr=False)  # may hold a password
    resync_interval: float = 60.0
    status_interval: float = 30.0  # runtime figures (length, lag…) are written at most this often
    retry_delay: float = 5.0
    # Metrics and continuous retention from the periodic pass, which then runs every
    # min(resync_interval, observe_interval) (0: off; the pass runs every resync_interval
    # and retention runs, unbounded, with each reconcile instead).
    observe_interval: float = 30.0
    retention_steps_per_pass: int = 1000  # Lua steps of <= 1000 entries each, over all Topics
    retention_pause: float = 0.02  # between rounds of steps, so other clients' commands get in
    # Namespaces -> allowed stream-name prefixes (empty: no tenancy, any stream).
    tenancy: Tenancy = field(default_factory=Tenancy)


@dataclass
class RetentionMemo:
    """What a Topic's status.retention says (as last written by us, or as first read):
    the watch may still deliver bodies older than our last write, so they are not trusted."""

    written: dict[str, Any]
    total: int = 0
    last_trimmed: int | None = None
    last_time: str | None = None


def _unfenced() -> None:
    """Without leader election there is no Lease to lose."""


@dataclass
class State:
    """Kept in kopf's memo: one per operator."""

    config: OperatorConfig
    # Called before each reconcile batch and status write: with leader election, ends the
    # process once this replica may no longer write (leadership.Elector.check).
    fence: Callable[[], None] = _unfenced
    reconciler: Reconciler | None = None  # made at login, with its credentials
    last_status_write: dict[Key, float] = field(default_factory=dict)
    # The version whose status we wrote, until the watch brings that status: an event
    # from before that write (kopf's finalizer PATCH) asks for no reconcile (queue.py).
    written_version: dict[Key, Version] = field(default_factory=dict)
    last_any_status_write: float = 0.0
    task: asyncio.Task[None] | None = None  # the periodic pass (resync.py)
    retention: dict[Key, RetentionMemo] = field(default_factory=dict)
    # The work queue (see queue.py).
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    in_flight: set[Key] = field(default_factory=set)
    again: set[Key] = field(default_factory=set)
    topic_wait: dict[Key, float] = field(default_factory=dict)  # new groups whose Topic is not seen yet
    recorder: EventRecorder | None = None  # made with the first Event (events.py)

    def status_written_for(self, declared: Declared) -> bool:
        """Whether we wrote this object's status for its current generation (the body at
        hand may be older than that write)."""
        return self.written_version.get(declared.key) == declared.version

    def forget(self, key: Key) -> None:
        """An object is gone: what the State kept about it goes too."""
        for kept in (self.last_status_write, self.written_version, self.topic_wait, self.retention):
            kept.pop(key, None)

    def get_reconciler(self) -> Reconciler:
        """The Reconciler; made without Kubernetes credentials when login gave none we can
        reuse (tests)."""
        if self.reconciler is None:
            self.reconciler = Reconciler(cluster_id=self.config.cluster_id, default_url=self.config.redis_url,
                                         tenancy=self.config.tenancy)
        return self.reconciler

    def event(self, body: Any, type: str, reason: str, message: str, *, routine: bool = False) -> None:
        """An Event about ``body``: aggregated and posted by the EventRecorder (events.py)."""
        if self.recorder is None:
            kube = self.get_reconciler().kube
            if kube is None:  # no credentials to post with (tests)
                return
            self.recorder = EventRecorder(kube, lambda: self.last_any_status_write)
        self.recorder.record(body, type, reason, message, routine=routine)

    def warn(self, body: Any, reason: str, message: str) -> None:
        self.event(body, "Warning", reason, message)

    def info(self, body: Any, reason: str, message: str) -> None:
        self.event(body, "Normal", reason, message)


# -- status ---------------------------------------------------------------------------

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


async def write_status(state: State, declared: Declared, computed: Computed, *, runtime: bool = True) -> bool:
    """Writes status if it changed (runtime figures only when ``runtime``), then its Events."""
    reconciler = state.get_reconciler()
    status = build_status(declared, computed)
    if reconciler.kube is None or not status_changed(declared, status, runtime=runtime):
        return False
    if not await patch_status(state, declared, status):
        return False
    post_events(state, declared.body, computed)
    return True


async def patch_status(state: State, declared: Declared, status: dict[str, Any]) -> bool:
    """Merge-patch status; our own view and the write clock follow at once, so the next
    pass does not write the same again. False (logged, counted) when the API refused."""
    kube = state.get_reconciler().kube
    assert kube is not None
    state.fence()
    try:
        await kube.patch_status(PLURALS[declared.kind], declared.key[1], declared.key[2], printable_tree(status))
    except Exception as exc:  # noqa: BLE001 - a later pass tries again
        metrics.ERRORS.labels("status", type(exc).__name__).inc()
        log.warning("cannot write status of %s/%s: %s", declared.kind.lower(), declared.key[2], exc)
        return False
    metrics.STATUS_WRITES.labels(declared.kind).inc()
    declared.body["status"] = {**declared.status, **status}
    # A watch event stored during the request (kopf's finalizer PATCH) holds an older
    # status: ours goes there too, or the next look would find the object behind again.
    current = state.get_reconciler().objects.get(declared.key)
    if current is not None and current is not declared and current.version == declared.version:
        current.body["status"] = {**current.status, **status}
    state.last_status_write[declared.key] = state.last_any_status_write = time.monotonic()
    if status.get("observedGeneration") == declared.generation:
        state.written_version[declared.key] = declared.version
    return True


# -- Events ---------------------------------------------------------------------------

def post_events(state: State, body: Any, computed: Computed) -> None:
    """Warnings and repairs at once; routine Created/Configured after a lull in status writes."""
    result = computed.result
    if computed.reset:
        state.warn(body, "RedisReset", printable(computed.reset))
    if result is None:
        if computed.outcome.ready is False:
            state.warn(body, computed.outcome.reason, printable(computed.outcome.message))
        return
    if result.failure is not None:
        state.warn(body, result.failure.reason, printable(result.failure.message))
    elif computed.drift and not result.failure:
        state.info(body, "DriftRepaired", printable("; ".join([f"{result.label} {result.outcome}", *result.details])))
    elif result.reset_applied or result.consumers_removed:
        # spec.reset and spec.consumerCleanup moved or removed something: their own reasons, at once.
        if result.reset_applied:
            state.info(body, "PositionReset",
                       printable("; ".join(d for d in result.details if d.startswith("moved group"))))
        if result.consumers_removed:
            state.info(body, "ConsumersRemoved",
                       printable("; ".join(d for d in result.details if d.startswith(("removed ", "kept ")))))
    elif result.outcome in ("created", "configured"):
        state.event(body, "Normal", result.outcome.capitalize(),
                    printable("; ".join([f"{result.label} {result.outcome}", *result.details])), routine=True)


# -- memory ---------------------------------------------------------------------------

def give_back_memory() -> None:
    """After a burst, return freed heap pages to the system: CPython's allocator keeps
    them otherwise, and the operator's RSS would stay at its peak for good."""
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


try:
    _LIBC: Any = ctypes.CDLL("libc.so.6") if sys.platform.startswith("linux") else None
except OSError:
    _LIBC = None
if not hasattr(_LIBC, "malloc_trim"):  # glibc only
    _LIBC = None
