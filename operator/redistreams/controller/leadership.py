"""Leader election on a ``coordination.k8s.io/v1`` Lease, with client-go's semantics, so
that of several replicas exactly one reconciles.

- **Standby**: reads the Lease every ``retry_period``. The holder's lease runs out
  ``leaseDurationSeconds`` after this replica last *saw the record change* (its own clock,
  never the holder's timestamps, so clock skew between nodes does not matter); then, or
  at once when the Lease names no holder (released), it takes the Lease with a PUT that
  carries the resourceVersion it read: of two standbys racing, the API server lets one
  win. kopf is not started before that, so a standby writes nothing.
- **Leader**: renews every ``retry_period``. It may write until ``renew_deadline`` after
  the *start* of its last successful renewal; ``renew_deadline < lease_duration``, so
  the leader stops before any standby can consider the Lease expired, with
  ``lease_duration - renew_deadline`` to spare for writes already on the wire.
- **Stopping** is ``os._exit``, as controller-runtime exits: every in-flight Redis
  pipeline and Kubernetes request ends with the process and the pod restarts as a
  standby. Three things trigger it: the renew loop failing to renew in time (or finding
  another holder), a watchdog thread that does not depend on the event loop (a loop
  blocked or starved past the deadline), and SIGCONT (a process that was stopped, say by
  a frozen VM or SIGSTOP, checks before its next Python instruction). ``check()`` is the
  fence the controller calls before each reconcile batch and each status write.
- **Clean shutdown** (SIGTERM): kopf stops, our remaining tasks are cancelled, then the
  Lease is released (no holder, ``leaseDurationSeconds: 1``) so a standby takes over on
  its next read instead of waiting for expiry.

Why not kopf peering: it is priority-based pausing (equal priorities pause every replica;
a lower one resumes only after the other's keepalive lifetime, 60 s by default), needs
cluster-wide peering CRDs, and fences neither running handlers nor a replica cut off from
the API server.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import random
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import aiohttp
import kopf
from aiohttp import web

from .. import metrics
from .kube import KubeAPI, KubeError, fresh_login

log = logging.getLogger("redistreams.leadership")

LOST_EXIT_CODE = 3  # the process exits with this when it loses the Lease
WATCHDOG_PERIOD = 0.1
JITTER = 0.2  # a standby's reads are spread by up to 20% of retry_period (client-go's JitterFactor 1.2)
COMPONENT = "redistreams-operator"
# An Event about the Lease may take a loaded API server longer than a retry period; the
# "became leader" one is posted beside the work, the "stopped leading" one delays the exit.
EVENT_TIMEOUT = 10.0


def default_identity() -> str:
    """The pod's name (``POD_NAME``, else the host name) and a random suffix: a restarted
    process never believes it still holds the Lease of its previous life."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{secrets.token_hex(4)}"


@dataclass(frozen=True)
class LeaseConfig:
    name: str = "redistreams-operator"
    namespace: str = "default"
    identity: str = field(default_factory=default_identity)
    lease_duration: float = 10.0  # a standby takes over this long after the leader's last renewal
    renew_deadline: float = 7.0  # the leader stops writing this long after its last renewal began
    retry_period: float = 2.0  # renewals, and a standby's reads

    def __post_init__(self) -> None:
        if not self.lease_duration > self.renew_deadline:
            raise ValueError("the lease duration must be longer than the renew deadline")
        if not self.renew_deadline > self.retry_period * (1 + JITTER):
            raise ValueError("the renew deadline must be longer than 1.2 × the retry period")
        if self.retry_period <= 0:
            raise ValueError("the retry period must be positive")


def _microtime(now: datetime.datetime | None = None) -> str:
    return (now or datetime.datetime.now(datetime.UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def exit_now(reason: str) -> None:
    """Ends the process at once: no cleanup handler, no pending write gets to run."""
    with contextlib.suppress(Exception):
        sys.stderr.write(f"leader election: {reason}; exiting (code {LOST_EXIT_CODE})\n")
        sys.stderr.flush()
    os._exit(LOST_EXIT_CODE)


class Elector:
    """One replica's view of the Lease. ``on_lost`` defaults to ending the process;
    ``relogin`` makes a new client when the API server refuses the credentials (401: a
    service-account token rotated while this replica stood by)."""

    def __init__(self, kube: KubeAPI, config: LeaseConfig, on_lost: Callable[[str], None] = exit_now,
                 relogin: Callable[[], KubeAPI] | None = None) -> None:
        self.kube = kube
        self.config = config
        self.on_lost = on_lost
        self.relogin = relogin
        self.leader = False
        self.valid_until = 0.0  # monotonic: a leader may write until then
        self.holder = ""  # as last read
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._observed_duration = config.lease_duration
        self._lost = False
        self._watchdog: threading.Thread | None = None

    # -- one attempt -----------------------------------------------------------------

    async def try_acquire_or_renew(self) -> bool:
        """client-go's tryAcquireOrRenew: True when this replica holds the Lease now."""
        started = time.monotonic()
        timeout = self._request_timeout(started)
        c = self.config
        try:
            lease = await self.kube.get_lease(c.namespace, c.name, timeout)
        except KubeError as exc:
            if exc.status == 401 and self.relogin is not None:
                old, self.kube = self.kube, self.relogin()
                await old.close()
            raise
        now = _microtime()
        if lease is None:
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": c.name, "namespace": c.namespace},
                    "spec": self._spec({}, now, acquired=True)}
            try:
                await self.kube.create_lease(c.namespace, body, timeout)
            except KubeError as exc:
                if exc.status == 409:  # another replica created it first
                    return False
                raise
            return self._renewed(started, acquired=True)
        spec = lease.get("spec") or {}
        self.holder = spec.get("holderIdentity") or ""
        record = (self.holder, spec.get("renewTime"), spec.get("leaseTransitions"),
                  lease["metadata"].get("resourceVersion"))
        if record != self._observed:
            self._observed, self._observed_at = record, time.monotonic()
            self._observed_duration = float(spec.get("leaseDurationSeconds") or c.lease_duration)
        mine = self.holder == c.identity
        if not mine and self.holder and time.monotonic() < self._observed_at + self._observed_duration:
            return False  # another replica holds it and has not let it run out
        lease["spec"] = self._spec(spec, now, acquired=not mine)
        try:
            await self.kube.replace_lease(c.namespace, c.name, lease, timeout)
        except KubeError as exc:
            if exc.status == 409:  # changed since we read it: someone else renewed or took it
                return False
            raise
        return self._renewed(started, acquired=not mine)

    def _spec(self, old: dict[str, Any], now: str, *, acquired: bool) -> dict[str, Any]:
        spec = dict(old)
        spec.update(holderIdentity=self.config.identity, leaseDurationSeconds=max(1, round(self.config.lease_duration)),
                    renewTime=now)
        if acquired:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(old.get("leaseTransitions") or 0) + (1 if old else 0)
        return spec

    def _renewed(self, started: float, *, acquired: bool) -> bool:
        self.holder = self.config.identity
        self.valid_until = started + self.config.renew_deadline
        if acquired:
            log.info("%s acquired lease %s/%s", self.config.identity, self.config.namespace, self.config.name)
        self.leader = True
        return True

    def _request_timeout(self, now: float) -> float:
        """A leader's request never outlives its right to write; a standby's takes at most
        a retry period."""
        if self.leader:
            return max(0.05, self.valid_until - now)
        return max(1.0, self.config.retry_period)

    # -- standby ---------------------------------------------------------------------

    async def acquire(self) -> None:
        """Returns once this replica holds the Lease."""
        while True:
            try:
                if await self.try_acquire_or_renew():
                    return
            except (KubeError, aiohttp.ClientError, TimeoutError, OSError) as exc:
                log.warning("cannot read or take lease %s/%s: %s", self.config.namespace, self.config.name, exc)
            await asyncio.sleep(self.next_attempt_in())

    def next_attempt_in(self) -> float:
        """retry_period with jitter, or less when the holder's lease runs out sooner: a
        standby takes over right when the lease expires, not up to a period later."""
        period = self.config.retry_period * (1 + random.random() * JITTER)
        if self.holder and self.holder != self.config.identity:
            expires_in = self._observed_at + self._observed_duration - time.monotonic()
            period = min(period, max(0.0, expires_in) + 0.05)
        return period

    # -- leader ----------------------------------------------------------------------

    def check(self) -> None:
        """The fence: ends the process if this leader's time to write has run out."""
        if self.leader and time.monotonic() >= self.valid_until:
            self.lose("no renewal within the renew deadline")

    def lose(self, reason: str) -> None:
        if self._lost:
            return
        self._lost = True
        self.leader = False
        metrics.LEADER.set(0)
        log.error("lost lease %s/%s: %s", self.config.namespace, self.config.name, reason)
        self.on_lost(reason)

    async def hold(self) -> None:
        """Renews every retry_period until cancelled; loses the Lease (``on_lost``) when a
        renewal does not succeed before the deadline or another replica holds it."""
        self.start_watchdog()
        while self.leader:
            await asyncio.sleep(self.config.retry_period)
            remaining = self.valid_until - time.monotonic()
            if remaining <= 0:
                self.lose("no renewal within the renew deadline")
                return
            try:
                renewed = await asyncio.wait_for(self.try_acquire_or_renew(), remaining)
            except (KubeError, aiohttp.ClientError, TimeoutError, OSError) as exc:
                log.warning("cannot renew lease %s/%s: %s", self.config.namespace, self.config.name, exc)
                continue
            if not renewed and self.holder != self.config.identity:
                self.lose(f"lease held by {self.holder or 'nobody'}")
                return

    def start_watchdog(self) -> None:
        """A thread and a SIGCONT handler that stop the process at the deadline whatever
        the event loop is doing."""
        if self._watchdog is None:
            self._watchdog = threading.Thread(target=self._watch, name="lease-watchdog", daemon=True)
            self._watchdog.start()
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGCONT, lambda *_: self.check())

    def _watch(self) -> None:
        while not self._lost:
            time.sleep(WATCHDOG_PERIOD)
            self.check()

    async def release(self) -> None:
        """Hands the Lease over: no holder and a 1-second duration, so a standby takes it
        on its next read. Only once everything that writes has stopped."""
        if not self.leader or self._lost:
            return
        self.leader = False
        c = self.config
        try:
            lease = await self.kube.get_lease(c.namespace, c.name, c.retry_period)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != c.identity:
                return
            spec = dict(lease["spec"])
            spec.pop("holderIdentity", None)
            spec.update(leaseDurationSeconds=1, renewTime=_microtime())
            lease["spec"] = spec
            await self.kube.replace_lease(c.namespace, c.name, lease, c.retry_period)
            log.info("%s released lease %s/%s", c.identity, c.namespace, c.name)
        except (KubeError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("cannot release lease %s/%s (it expires on its own): %s", c.namespace, c.name, exc)
        finally:
            metrics.LEADER.set(0)

    async def announce(self, reason: str, message: str) -> None:
        """An Event on the Lease (``kubectl describe lease``, ``kubectl get events``)."""
        c = self.config
        now = _microtime()
        body = {"apiVersion": "v1", "kind": "Event",
                "metadata": {"generateName": f"{c.name}.", "namespace": c.namespace},
                "involvedObject": {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                   "namespace": c.namespace, "name": c.name},
                "reason": reason, "message": message, "type": "Normal", "count": 1,
                "source": {"component": COMPONENT}, "reportingComponent": COMPONENT,
                "reportingInstance": c.identity[:128],
                "firstTimestamp": now[:19] + "Z", "lastTimestamp": now[:19] + "Z"}
        try:
            await self.kube.post_event(c.namespace, body, max(c.retry_period, EVENT_TIMEOUT))
        except (KubeError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("cannot post the %s event: %s", reason, exc)


# -- running the operator under the Lease ------------------------------------------------

def default_lease_namespace() -> str:
    """The namespace of the service account or the kubeconfig's context, else default
    (in a pod, the chart passes POD_NAMESPACE from the downward API)."""
    try:
        return fresh_login().default_namespace or "default"
    except kopf.LoginError:
        return "default"


async def _standby_health(liveness: str | None) -> web.AppRunner | None:
    """The liveness/readiness endpoint while kopf (which serves it when leading) is not
    running: a standby is alive and ready, it just does not reconcile."""
    if not liveness:
        return None
    url = urlparse(liveness)

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"leader": False})

    app = web.Application()
    app.router.add_get(url.path or "/", health)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, url.hostname, url.port or 80, reuse_address=True).start()
    return runner


async def lead(config: LeaseConfig, liveness: str | None,
               operate: Callable[[Callable[[], None]], Awaitable[None]]) -> None:
    """Waits for the Lease (SIGTERM/SIGINT end the wait), then runs ``operate(fence)``
    (kopf, which handles SIGTERM/SIGINT itself from then on) while holding it; when it
    returns, cancels what is left and releases the Lease."""
    metrics.LEADER.set(0)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    elector = Elector(KubeAPI(fresh_login()), config, relogin=lambda: KubeAPI(fresh_login()))
    health = await _standby_health(liveness)
    log.info("%s waiting for lease %s/%s", config.identity, config.namespace, config.name)
    try:
        acquiring = asyncio.create_task(elector.acquire())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({acquiring, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not acquiring.done():
            acquiring.cancel()
            return
        acquiring.result()  # what acquire() could not handle is raised here, not taken for leading
    finally:
        if health is not None:
            await health.cleanup()
        if not elector.leader:
            await elector.kube.close()
    metrics.LEADER.set(1)
    holding = asyncio.create_task(elector.hold())
    announcing = asyncio.create_task(elector.announce("LeaderElection", f"{config.identity} became leader"))
    try:
        if not stop.is_set():  # a signal between taking the Lease and kopf's own handlers
            await operate(elector.check)
    finally:
        if not announcing.done():  # posted by now unless the API server fails; the Lease is still renewed
            await asyncio.wait({announcing}, timeout=EVENT_TIMEOUT)
        holding.cancel()
        await _cancel_the_rest()
        elector.check()  # a leader whose time ran out while stopping must not touch the Lease
        await elector.release()
        await elector.announce("LeaderElection", f"{config.identity} stopped leading")
        await elector.kube.close()


async def _cancel_the_rest(timeout: float = 5.0) -> None:
    """Work kopf does not own (our reconcile tasks, timers) ends before the release."""
    current = asyncio.current_task()
    others = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    for task in others:
        task.cancel()
    if others:
        _, pending = await asyncio.wait(others, timeout=timeout)
        if pending:
            log.warning("still running after %.0f s: %s", timeout, ", ".join(sorted(t.get_name() for t in pending)))
