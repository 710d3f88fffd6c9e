"""The Lease elector's timing (controller/leadership.py) against the real API server:
one holder at a time, takeover only after the lease ran out as the standby saw it, a
partitioned leader stopping before that, a released Lease taken at once. Short
durations (5 s lease) keep the module under half a minute; shorter ones (2 s) left a
leader's renewal 1 s for two API requests, which a loaded machine does not always give."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import kopf
import pytest

from redistreams.controller.kube import KubeAPI, KubeError
from redistreams.controller.leadership import Elector, LeaseConfig
from tests.support.controlplane import Cluster
from tests.support.kube import new_namespace
from tests.support.net import free_port

pytestmark = pytest.mark.e2e

LEASE, RENEW, RETRY = 5.0, 3.5, 1.0
LATE = 1.5  # seconds a loaded machine may add to a takeover: the standby's GET and PUT, the test's wake-up


def _info(cluster: Cluster) -> kopf.ConnectionInfo:
    return kopf.ConnectionInfo(server=cluster.server, ca_data=cluster.ca_data, token=cluster.token,
                               certificate_path=cluster.client_cert_path, private_key_path=cluster.client_key_path)


def _kube(cluster: Cluster) -> KubeAPI:
    return KubeAPI(_info(cluster))


class Lost:
    """on_lost that records when it was called (from the loop or the watchdog thread)."""

    def __init__(self) -> None:
        self.at: list[float] = []
        self.reasons: list[str] = []

    def __call__(self, reason: str) -> None:
        self.at.append(time.monotonic())
        self.reasons.append(reason)


def _run(cluster: Cluster, body: Callable[..., Awaitable[None]]) -> None:
    ns = new_namespace(cluster, "lease")

    async def main() -> None:
        kubes = [_kube(cluster), _kube(cluster)]
        electors = []
        for who, kube in zip("ab", kubes, strict=True):
            config = LeaseConfig(name="op", namespace=ns, identity=f"{who}_test", lease_duration=LEASE,
                                 renew_deadline=RENEW, retry_period=RETRY)
            electors.append(Elector(kube, config, on_lost=Lost()))
        try:
            await body(*electors)
        finally:
            for e in electors:
                e.leader = False  # the watchdog threads go quiet
                await e.kube.close()

    asyncio.run(main())


def _lease(cluster: Cluster, elector: Elector) -> dict[str, Any]:
    c = elector.config
    return cluster.get(f"/apis/coordination.k8s.io/v1/namespaces/{c.namespace}/leases/{c.name}").json["spec"]


def test_config_rejects_unsafe_durations() -> None:
    with pytest.raises(ValueError, match="renew deadline"):
        LeaseConfig(lease_duration=10, renew_deadline=10, retry_period=2)
    with pytest.raises(ValueError, match="1.2"):
        LeaseConfig(lease_duration=10, renew_deadline=2, retry_period=2)
    assert LeaseConfig().identity != LeaseConfig().identity  # a random suffix per process


def test_one_holder_and_takeover_only_after_expiry(cluster: Cluster) -> None:
    async def body(a: Elector, b: Elector) -> None:
        await a.acquire()
        assert a.leader and not await b.try_acquire_or_renew()
        holding = asyncio.create_task(a.hold())
        standby = asyncio.create_task(b.acquire())
        await asyncio.sleep(LEASE * 2)  # renewals keep it: the standby never gets it
        assert not standby.done() and a.leader
        holding.cancel()  # the leader dies: no more renewals
        died = time.monotonic()
        a.leader = False
        await standby
        taken = time.monotonic()
        # Not before the lease ran out: the standby saw the last renewal after it began.
        last_renewal = a.valid_until - RENEW
        assert taken >= last_renewal + LEASE, (taken - last_renewal, LEASE)
        # ...and soon after: it saw that renewal within a retry period (with jitter).
        assert taken - died <= LEASE + RETRY * 1.2 + LATE, taken - died
        spec = _lease(cluster, b)
        assert spec["holderIdentity"] == "b_test" and spec["leaseTransitions"] == 1
        assert spec["leaseDurationSeconds"] == round(LEASE)

    _run(cluster, body)


def test_partitioned_leader_stops_before_the_standby_takes_over(cluster: Cluster) -> None:
    """The leader's API server becomes unreachable: its renewals fail, it calls on_lost
    (the process would exit) at its renew deadline, at least lease - renew before the
    standby may take over."""
    async def body(a: Elector, b: Elector) -> None:
        await a.acquire()
        holding = asyncio.create_task(a.hold())
        await asyncio.sleep(RETRY * 2)
        a.kube.server = f"https://127.0.0.1:{free_port()}"  # nothing listens there
        standby = asyncio.create_task(b.acquire())
        await standby
        taken = time.monotonic()
        lost: Lost = a.on_lost  # type: ignore[assignment]
        assert lost.at, "the partitioned leader never stopped"
        # A slow wake-up of the watchdog may eat into lease - renew (1.5 s), not all of it.
        assert lost.at[0] <= taken - (LEASE - RENEW) + 0.5, (taken - lost.at[0])
        assert lost.at[0] <= a.valid_until + 0.5  # the watchdog (every 0.1 s), not a renew period later
        a.check()
        assert len(lost.at) == 1  # once
        await asyncio.wait_for(holding, RETRY + 5)  # its loop wakes after a retry period and ends

    _run(cluster, body)


def test_release_hands_over_at_once(cluster: Cluster) -> None:
    async def body(a: Elector, b: Elector) -> None:
        await a.acquire()
        standby = asyncio.create_task(b.acquire())
        await asyncio.sleep(RETRY)
        released = time.monotonic()
        await a.release()
        await standby
        # At its next read (the lease would run out 4 s after the release).
        assert time.monotonic() - released <= RETRY * 1.2 + LATE
        assert not a.leader and not a.on_lost.at  # type: ignore[attr-defined]
        assert _lease(cluster, b)["holderIdentity"] == "b_test"

    _run(cluster, body)


def test_racing_replicas_one_wins(cluster: Cluster) -> None:
    """Both create the Lease at once, then both take a released one at once: the
    resourceVersion lets exactly one through each time."""
    async def body(a: Elector, b: Elector) -> None:
        results = await asyncio.gather(a.try_acquire_or_renew(), b.try_acquire_or_renew())
        assert sorted(results) == [False, True]
        winner, loser = (a, b) if results[0] else (b, a)
        await winner.release()
        loser.holder = ""
        winner.leader = False
        results = await asyncio.gather(a.try_acquire_or_renew(), b.try_acquire_or_renew())
        assert sorted(results) == [False, True]
        assert _lease(cluster, a)["leaseTransitions"] == 1

    _run(cluster, body)


def test_refused_credentials_log_in_again(cluster: Cluster) -> None:
    """A standby whose token the API server no longer accepts (401) logs in again and
    can still take over."""
    async def body(a: Elector, b: Elector) -> None:
        good = b.kube
        b.kube = KubeAPI(kopf.ConnectionInfo(server=cluster.server, ca_data=cluster.ca_data, token="expired"))
        b.relogin = lambda: good
        await asyncio.wait_for(b.acquire(), 30)  # a 401, a login, then the Lease at the next read
        assert b.leader and b.kube is good

    _run(cluster, body)


def test_cli_refuses_unsafe_durations() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "redistreams.cli", "operator", "--leader-elect", "--lease-namespace", "x",
         "--lease-duration", "5s", "--renew-deadline", "7s", "--liveness", "", "--metrics-port", "0"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "longer than the renew deadline" in result.stderr, result.stderr


def test_the_reconcilers_client_logs_in_again_on_401(cluster: Cluster) -> None:
    """Status writes and Secret reads go on after a token rotation: a 401 makes the client
    read fresh credentials and send the request once more; without them the 401 stands."""
    stale = kopf.ConnectionInfo(server=cluster.server, ca_data=cluster.ca_data, token="rotated-away")
    ns = new_namespace(cluster, "relogin")

    async def main() -> None:
        refused = KubeAPI(stale)
        with pytest.raises(KubeError) as caught:
            await refused.secret_data(ns, "absent")
        assert caught.value.status == 401
        await refused.close()

        logins: list[int] = []

        def relogin() -> kopf.ConnectionInfo:
            logins.append(1)
            return _info(cluster)

        rotated = KubeAPI(stale, relogin=relogin)
        assert await rotated.secret_data(ns, "absent") is None  # 404 after logging in again
        assert await rotated.secret_data(ns, "absent") is None
        assert len(logins) == 1, "fresh credentials are kept"
        await rotated.close()

    asyncio.run(main())
