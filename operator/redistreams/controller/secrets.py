"""Connection Secrets, read once and then kept current by a watch on each one, as an
informer would: a reconcile pass reads them from memory, not from the API server.

Only the Secrets Topics name are watched (a field selector on the name), never every
Secret of a namespace: the operator holds no one else's credentials, and a namespace's
other Secrets (Helm releases, certificates) cost no memory or traffic. A change or a
deletion calls ``on_change`` at once, so the Topics using the Secret are reconciled
without waiting for a resync. While a watch is down, reads go to the API server again;
without the watch permission (an older chart's Role) every read does. Only get and
watch are used, never list.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .kube import KubeAPI, KubeError, secret_values

log = logging.getLogger("redistreams.operator")

SecretKey = tuple[str, str]  # (namespace, name)

WATCH_SECONDS = 300  # each watch request; then it is renewed from the last resourceVersion
UNUSED_SECONDS = 900  # a Secret nobody read for this long is forgotten and its watch ended
RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)


@dataclass
class _Entry:
    data: dict[str, bytes] | None  # None: the Secret does not exist
    version: str
    used: float = field(default_factory=time.monotonic)
    live: bool = True  # False while the watch is down: reads go to the API server
    task: asyncio.Task[None] | None = None


class SecretCache:
    def __init__(self, kube: KubeAPI, on_change: Callable[[str, str], None] | None = None) -> None:
        self.kube = kube
        self.on_change = on_change
        self.watching = True  # False once the API server refused list or watch
        self._entries: dict[SecretKey, _Entry] = {}
        self._loading: dict[SecretKey, asyncio.Future[dict[str, bytes] | None]] = {}

    async def data(self, namespace: str, name: str) -> dict[str, bytes] | None:
        """Every key of the Secret, decoded; None when it does not exist."""
        key = (namespace, name)
        entry = self._entries.get(key)
        if entry is not None:
            entry.used = time.monotonic()
            if entry.live:
                return entry.data
        if not self.watching or entry is not None:  # no watch, or it is being re-established
            return await self.kube.secret_data(namespace, name)
        loading = self._loading.get(key)
        if loading is None:  # one list for everyone who asks meanwhile
            loading = self._loading[key] = asyncio.get_running_loop().create_future()
            try:
                loading.set_result(await self._start(key))
            except asyncio.CancelledError:
                loading.cancel()
                raise
            except Exception as exc:  # noqa: BLE001 - handed to every waiter
                loading.set_exception(exc)
            finally:
                del self._loading[key]
        return await asyncio.shield(loading)

    async def _start(self, key: SecretKey) -> dict[str, bytes] | None:
        data, version = await self.kube.read_secret(*key)
        entry = self._entries[key] = _Entry(data, version)
        entry.task = asyncio.get_running_loop().create_task(self._watch(key, entry))
        return data

    async def _watch(self, key: SecretKey, entry: _Entry) -> None:
        failures = 0
        while time.monotonic() - entry.used < UNUSED_SECONDS:
            try:
                if not entry.live:
                    data, entry.version = await self.kube.read_secret(*key)
                    entry.live = True
                    self._update(key, entry, data)
                # A little jitter: watches started together are not renewed together.
                async for event in self.kube.watch_secret(*key, entry.version,
                                                          int(WATCH_SECONDS * random.uniform(0.9, 1.1))):
                    failures = 0
                    obj = event.get("object") or {}
                    if event.get("type") == "ERROR":  # 410 Gone: the version is too old; read again
                        raise KubeError(int(obj.get("code") or 500), str(obj.get("message")))
                    entry.version = (obj.get("metadata") or {}).get("resourceVersion") or entry.version
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        self._update(key, entry, secret_values(obj))
                    elif event.get("type") == "DELETED":
                        self._update(key, entry, None)
            except asyncio.CancelledError:
                raise
            except KubeError as exc:
                entry.live = False
                if exc.status == 403:  # an older chart's Role: get only
                    self.watching = False
                    log.warning("cannot watch Secrets (403); connection Secrets are read on every pass: "
                                "grant get and watch on secrets as the chart does")
                    break
                if exc.status != 410:
                    failures = await _pause(key, exc, failures)
            except Exception as exc:  # noqa: BLE001 - reads go to the API server until it is back
                entry.live = False
                failures = await _pause(key, exc, failures)
        self._entries.pop(key, None)

    def _update(self, key: SecretKey, entry: _Entry, data: dict[str, bytes] | None) -> None:
        if data == entry.data:
            return
        entry.data = data
        if self.on_change is not None:
            self.on_change(*key)

    def cached(self) -> list[SecretKey]:
        """The Secrets held and watched now."""
        return [key for key, entry in self._entries.items() if entry.live]

    async def close(self) -> None:
        tasks = [entry.task for entry in self._entries.values() if entry.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._entries.clear()


async def _pause(key: SecretKey, exc: Exception, failures: int) -> int:
    """Waits before watching again (longer after each failure in a row)."""
    delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
    log.debug("watch of Secret %s/%s: %s; again in %.0fs", *key, type(exc).__name__, delay)
    await asyncio.sleep(delay)
    return failures + 1
