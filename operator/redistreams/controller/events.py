"""Events about our objects, aggregated as client-go's EventCorrelator does.

- Within a burst, one Event per object and reason: repeats raise its count and keep the
  latest message.
- An Event repeated later (same object, reason and message, within SIMILAR_WINDOW) raises
  the count of the Event already posted (a PATCH), as ``kubectl get events`` shows "x3".
- Warnings and repairs go out at once (after LINGER, to gather repeats); routine
  Created/Configured wait for a lull in status writes: during a burst the API server's
  time goes to the status that kubectl wait, Argo CD and Flux read.
- Posted PARALLEL_POSTS at a time, never one request after another.

A refused or failed post is logged and dropped: an Event is never worth a retry loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .. import metrics
from ..printable import shown
from .kube import KubeAPI, KubeError

log = logging.getLogger("redistreams.operator")

COMPONENT = "redistreams-operator"
PARALLEL_POSTS = 24
LINGER = 0.2  # seconds warnings wait for repeats to join them
ROUTINE_LULL = 1.0  # seconds without status writes before routine Events go out
# ...or after this long, whatever the writes: longer than a burst of thousands of objects
# on a small API server (4,000 took 40 s on 2 cores; at 30 s their Events went out mid-burst).
ROUTINE_MAX_DELAY = 120.0
SIMILAR_WINDOW = 600.0  # seconds a repeat counts on the Event already posted
REMEMBERED = 4096  # Events remembered for counting repeats (client-go's cache size)
MAX_MESSAGE = 1024
POST_TIMEOUT = 30.0

EventKey = tuple[str, str, str, str]  # (namespace, object uid or name, type, reason)


@dataclass
class _Pending:
    involved: dict[str, Any]
    type: str
    reason: str
    message: str
    count: int = 1


@dataclass
class _Posted:
    name: str
    count: int
    first: str
    at: float


class EventRecorder:
    """``last_write`` tells when status was last written (time.monotonic)."""

    def __init__(self, kube: KubeAPI, last_write: Callable[[], float]) -> None:
        self.kube = kube
        self.last_write = last_write
        self.instance = (os.environ.get("POD_NAME") or socket.gethostname())[:128]
        self._urgent: dict[EventKey, _Pending] = {}
        self._routine: dict[EventKey, _Pending] = {}
        self._routine_since = 0.0
        self._posted: OrderedDict[tuple[EventKey, str], _Posted] = OrderedDict()
        self._task: asyncio.Task[None] | None = None

    def record(self, body: Any, type: str, reason: str, message: str, *, routine: bool = False) -> None:
        """An Event about ``body`` (a kopf Body or the object's dict), posted soon."""
        meta = body["metadata"]
        involved = {"apiVersion": body["apiVersion"], "kind": body["kind"], "name": meta["name"],
                    "namespace": meta.get("namespace") or "default", "uid": meta.get("uid")}
        key = (involved["namespace"], involved["uid"] or involved["name"], type, reason)
        queue = self._routine if routine else self._urgent
        if routine and not queue:
            self._routine_since = time.monotonic()
        pending = queue.get(key)
        if pending is None:
            queue[key] = _Pending(involved, type, reason, _shortened(message))
        else:
            pending.count += 1
            pending.message = _shortened(message)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def pending(self) -> int:
        return len(self._urgent) + len(self._routine)

    async def _run(self) -> None:
        try:
            while self._urgent or self._routine:
                await asyncio.sleep(LINGER)
                batch, self._urgent = self._urgent, {}
                now = time.monotonic()
                if self._routine and (now - self.last_write() >= ROUTINE_LULL
                                      or now - self._routine_since >= ROUTINE_MAX_DELAY):
                    for key, pending in self._routine.items():
                        if key in batch:
                            batch[key].count += pending.count
                        else:
                            batch[key] = pending
                    self._routine = {}
                if batch:
                    # PARALLEL_POSTS workers over one iterator, not a coroutine per Event: a
                    # burst's 4,000 at once were megabytes of frames and tasks at its peak.
                    items = iter(list(batch.items()))
                    workers = min(PARALLEL_POSTS, len(batch))
                    await asyncio.gather(*(self._post_each(items) for _ in range(workers)))
        finally:
            self._task = None

    async def _post_each(self, items: Iterator[tuple[EventKey, _Pending]]) -> None:
        for key, pending in items:  # shared by the workers: each Event once
            await self._post(key, pending)

    async def _post(self, key: EventKey, pending: _Pending) -> None:
        now = _timestamp()
        similar = (key, pending.message)
        posted = self._posted.get(similar)
        try:
            if posted is not None and time.monotonic() - posted.at < SIMILAR_WINDOW:
                try:
                    await self.kube.patch_event(key[0], posted.name, {
                        "count": posted.count + pending.count, "lastTimestamp": now}, POST_TIMEOUT)
                    posted.count += pending.count
                    posted.at = time.monotonic()
                    self._posted.move_to_end(similar)
                    return
                except KubeError as exc:
                    if exc.status != 404:  # gone (Events expire after an hour): a new one
                        raise
            created = await self.kube.post_event(key[0], self._body(pending, now), POST_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - an Event is never worth more
            metrics.ERRORS.labels("event", type(exc).__name__).inc()
            log.warning("cannot post the %s event about %s/%s: %s", pending.reason,
                        pending.involved["kind"].lower(), pending.involved["name"], exc)
            return
        self._posted[similar] = _Posted(created["metadata"]["name"], pending.count, now, time.monotonic())
        self._posted.move_to_end(similar)
        while len(self._posted) > REMEMBERED:
            self._posted.popitem(last=False)

    def _body(self, pending: _Pending, now: str) -> dict[str, Any]:
        involved = pending.involved
        return {"apiVersion": "v1", "kind": "Event",
                "metadata": {"generateName": f"{involved['name']}.", "namespace": involved["namespace"]},
                "involvedObject": involved, "type": pending.type, "reason": pending.reason,
                "message": pending.message, "count": pending.count,
                "source": {"component": COMPONENT}, "reportingComponent": COMPONENT,
                "reportingInstance": self.instance, "firstTimestamp": now, "lastTimestamp": now}

    async def close(self) -> None:
        """Stops posting (what is still pending is dropped)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def _shortened(message: str) -> str:
    message = shown(message)  # a stream name may hold terminal escapes; kubectl get events prints it
    if len(message) <= MAX_MESSAGE:
        return message
    half = (MAX_MESSAGE - 3) // 2
    return f"{message[:half]}...{message[-half:]}"


def _timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
