"""Two operator processes with leader election (the chart's setup) on the real API server,
with the default durations (lease 10 s, renew deadline 7 s, retry 2 s): only the Lease
holder writes; the standby takes over within 18 s of a kill -9 in the middle of a burst,
and nothing is written twice; a leader cut off from the API server exits before its
Lease runs out; a stopped (SIGSTOP) leader exits on SIGCONT without writing; a clean
shutdown hands over at once."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from redistreams.controller.leadership import LOST_EXIT_CODE
from redistreams.controller.rbac import leader_election_role
from tests.support.controlplane import Cluster, wait_for
from tests.support.kube import (
    API,
    PLURALS,
    condition,
    create,
    events,
    get,
    new_namespace,
    operator_kubeconfig,
    wait_allowed,
)
from tests.support.net import free_port
from tests.support.processes import terminate
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.e2e

# Seconds from the leader's death to the standby holding the Lease: lease duration (10 s)
# after it last saw a renewal, which is at most a retry period with jitter (2.4 s) old,
# plus its GET and PUT and the test's look on a loaded machine (measured: 9.8-11.6 s).
TAKEOVER_LIMIT = 18.0
RENEW_DEADLINE = 7.0  # the chart's --renew-deadline (the default)
LATE = 1.5  # seconds a loaded machine may add to an exit or a takeover (a wake-up, an API request)


# -- helpers -------------------------------------------------------------------------------


class Operator:
    """``redistreams operator --leader-elect`` as a subprocess with its own metrics port."""

    def __init__(self, name: str, ns: str, system: str, lease: str, kubeconfig: str, redis: RedisServer,
                 log: IO[bytes]) -> None:
        self.name = name
        self.port, self.health = free_port(), free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "redistreams.cli", "operator", "--namespace", ns, "--redis-url", redis.url,
             "--liveness", f"http://127.0.0.1:{self.health}/healthz", "--metrics-port", str(self.port),
             "--resync-interval", "3s", "--status-interval", "1s", "--cluster-id", "e2e",
             "--leader-elect", "--lease-name", lease],
            env={**os.environ, "KUBECONFIG": kubeconfig, "POD_NAME": name, "POD_NAMESPACE": system},
            stdout=log, stderr=subprocess.STDOUT)

    def metric(self, name: str) -> float:
        """A sample's value summed over its labels; 0 when absent."""
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5).read().decode()
        return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))

    def healthy(self) -> bool:
        """The liveness/readiness endpoint answers (the standby's own, or kopf's when leading)."""
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{self.health}/healthz", timeout=5).status == 200
        except OSError:
            return False

    def wrote_nothing(self) -> bool:
        return (self.metric("redistreams_leader") == 0 and self.metric("redistreams_status_writes_total") == 0
                and self.metric("redistreams_redis_writes_total") == 0
                and self.metric("redistreams_reconciles_total") == 0)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
        terminate(self.process, grace=30)


class Setup:
    def __init__(self, cluster: Cluster, redis: RedisServer, tmp_path: Path) -> None:
        self.cluster, self.redis, self.tmp_path = cluster, redis, tmp_path
        self.ns = new_namespace(cluster, "ha")
        self.system = f"rs-{uuid.uuid4().hex[:6]}"
        self.lease = "redistreams"
        self.kubeconfig = operator_kubeconfig(cluster, tmp_path / "config", system=self.system)
        rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{self.system}"
        cluster.post(f"{rbac}/roles", leader_election_role("leader", self.system)).raise_for_status()
        cluster.post(f"{rbac}/rolebindings", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "leader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "leader"},
            "subjects": [{"kind": "ServiceAccount", "name": "operator", "namespace": self.system}],
        }).raise_for_status()
        token = Cluster.from_kubeconfig(self.kubeconfig).token or ""
        wait_allowed(cluster, token, "update", "leases", "coordination.k8s.io", namespace=self.system)
        self.log = open(tmp_path / "operators.log", "wb")  # noqa: SIM115 - closed in close()
        self.operators: list[Operator] = []

    def start(self, name: str, kubeconfig: str | None = None) -> Operator:
        op = Operator(name, self.ns, self.system, self.lease, kubeconfig or self.kubeconfig, self.redis, self.log)
        self.operators.append(op)
        return op

    def holder(self) -> str:
        response = self.cluster.get(f"/apis/coordination.k8s.io/v1/namespaces/{self.system}/leases/{self.lease}")
        return (response.json.get("spec") or {}).get("holderIdentity") or "" if response.ok else ""

    def wait_holder(self, op: Operator, timeout: float = 30) -> float:
        """Waits until ``op`` holds the Lease; returns when it was seen (monotonic)."""
        wait_for(lambda: self.holder().startswith(op.name + "_"), f"{op.name} holds the Lease", timeout, interval=0.1)
        return time.monotonic()

    def lease_events(self) -> list[str]:
        return [e["message"] for e in events(self.cluster, self.system, self.lease, "LeaderElection")]

    def close(self) -> None:
        for op in self.operators:
            op.stop()
        self.log.close()


@pytest.fixture
def setup(cluster: Cluster, redis: RedisServer, tmp_path: Path) -> Iterator[Setup]:
    s = Setup(cluster, redis, tmp_path)
    yield s
    s.close()


class StatusWatch:
    """Every status write to our kinds in a namespace, from the API server's watch."""

    def __init__(self, cluster: Cluster, ns: str) -> None:
        self.writes: list[tuple[str, str, dict[str, Any]]] = []
        self._stop = threading.Event()
        self.started = threading.Semaphore(0)
        self._threads = [threading.Thread(target=self._run, args=(cluster, ns, kind), daemon=True)
                         for kind in PLURALS]
        for t in self._threads:
            t.start()
        for _ in self._threads:
            assert self.started.acquire(timeout=10), "watch did not start"

    def _run(self, cluster: Cluster, ns: str, kind: str) -> None:
        """From the list's resourceVersion on: what is there already is not a write."""
        path = f"{API}/namespaces/{ns}/{PLURALS[kind]}"
        listed = cluster.get(path).json
        last: dict[str, Any] = {i["metadata"]["name"]: i.get("status") for i in listed["items"]}
        version = listed["metadata"]["resourceVersion"]
        url = f"{cluster.server}{path}?watch=1&timeoutSeconds=300&resourceVersion={version}"
        headers = {"Authorization": f"Bearer {cluster.token}"} if cluster.token else {}
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                             urllib.request.HTTPSHandler(context=cluster.ssl_context()))
        self.started.release()
        with opener.open(urllib.request.Request(url, headers=headers), timeout=310) as stream:
            while not self._stop.is_set():
                line = stream.readline()
                if not line:
                    return
                event = json.loads(line)
                body = event["object"]
                name, status = body["metadata"]["name"], body.get("status")
                if status and status != last.get(name):
                    self.writes.append((kind, name, status))
                last[name] = status

    def duplicates(self) -> list[tuple[str, str, str]]:
        """Status writes that repeat one of the object's earlier results. Writing exactly the
        same status again changes nothing (the API server stores no-op patches as nothing),
        so a result written twice differs only in its timestamps: they are left out."""
        def result(status: dict[str, Any]) -> str:
            conditions = [{k: v for k, v in c.items() if k != "lastTransitionTime"}
                          for c in status.get("conditions") or []]
            return json.dumps({**status, "conditions": conditions}, sort_keys=True)

        seen = Counter((kind, name, result(s)) for kind, name, s in self.writes)
        return [key for key, n in seen.items() if n > 1]

    def close(self) -> None:
        self._stop.set()


class Proxy:
    """A TCP relay in front of the API server; ``cut()`` drops every connection and
    refuses new ones (a network partition for the processes that use it)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.cut_off = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.cut_off:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        self.cut_off = True
        self.listener.close()
        for s in self.sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _all(total: int) -> list[tuple[str, str]]:
    return [(kind, f"{prefix}{i}") for kind, prefix in (("Topic", "t"), ("ConsumerGroup", "g")) for i in range(total)]


def _ready(cluster: Cluster, ns: str) -> int:
    n = 0
    for kind, plural in PLURALS.items():
        del kind
        for item in cluster.get(f"{API}/namespaces/{ns}/{plural}").json["items"]:
            n += condition(item).get("status") == "True"
    return n


# -- tests ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_kill_9_mid_burst_standby_takes_over_and_nothing_is_written_twice(setup: Setup) -> None:
    cluster, ns, total = setup.cluster, setup.ns, 100
    a = setup.start("op-a")
    setup.wait_holder(a)
    b = setup.start("op-b")
    wait_for(lambda: _metrics_up(b), "the standby serves metrics", 60)
    watch = StatusWatch(cluster, ns)
    try:
        def burst() -> None:  # Topics and their groups interleaved, as a GitOps sync would
            for i in range(total):
                create(cluster, ns, "Topic", f"t{i}", {"streamName": f"{ns}/t{i}"})
                create(cluster, ns, "ConsumerGroup", f"g{i}", {"topicRef": {"name": f"t{i}"}})

        creating = threading.Thread(target=burst)
        creating.start()
        wait_for(lambda: _ready(cluster, ns) >= total // 4, "a quarter of the burst Ready", 60, interval=0.05)
        assert b.wrote_nothing()  # the standby: no reconcile, no status, nothing to Redis
        a.process.kill()
        killed = time.monotonic()
        ready_at_kill = _ready(cluster, ns)
        creating.join(60)
        took = setup.wait_holder(b, timeout=30) - killed
        assert took <= TAKEOVER_LIMIT, took
        wait_for(lambda: _ready(cluster, ns) == 2 * total, "every object Ready", 120, interval=0.5)
        # Two whole resync passes of B's (3 s each; counted, a loaded machine may be slower): it
        # must not write again.
        passes = b.metric("redistreams_resync_seconds_count")
        wait_for(lambda: b.metric("redistreams_resync_seconds_count") - passes > 2, "two resync passes", 60)
        assert ready_at_kill < 2 * total, "the kill landed after the burst"
    finally:
        watch.close()
    assert not watch.duplicates(), watch.duplicates()[:10]
    items = cluster.get(f"/api/v1/namespaces/{ns}/events").json["items"]
    per_result = Counter((e["involvedObject"]["name"], e["reason"]) for e in items)
    assert [k for k, n in per_result.items() if n > 1] == []
    assert all(e.get("count", 1) == 1 for e in items), [e for e in items if e.get("count", 1) > 1][:3]
    for kind, name in _all(total):
        assert get(cluster, ns, kind, name)["status"]["observedGeneration"] == 1
    r = setup.redis.client()
    assert all([g["name"] for g in r.xinfo_groups(f"{ns}/t{i}")] == [f"g{i}"] for i in range(total))
    assert len([k for k in r.hkeys("redistreams:owners") if f'"{ns}/' in k]) == 2 * total
    print(f"takeover after kill -9: {took:.1f} s; {ready_at_kill}/{2 * total} Ready at the kill")


def _metrics_up(op: Operator) -> bool:
    try:
        op.metric("redistreams_leader")
    except OSError:
        return False
    return True


def test_partitioned_leader_exits_before_its_lease_runs_out(setup: Setup) -> None:
    """A reaches the API server through a relay that is then cut; it still reaches Redis.
    It must exit at its renew deadline (7 s), before B may take over (10 s after B last
    saw a renewal), and B then reconciles what was created meanwhile."""
    cluster = setup.cluster
    host, port = cluster.server.removeprefix("https://").rsplit(":", 1)
    proxy = Proxy((host, int(port)))
    config = json.loads(Path(setup.kubeconfig).read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://{host}:{proxy.port}"
    relayed = setup.tmp_path / "relayed"
    relayed.write_text(json.dumps(config))
    a = setup.start("op-a", str(relayed))
    setup.wait_holder(a)
    create(cluster, setup.ns, "Topic", "before", {"streamName": f"{setup.ns}/before"})
    wait_for(lambda: condition(get(cluster, setup.ns, "Topic", "before")).get("status") == "True", "Ready", 60)
    b = setup.start("op-b")
    wait_for(lambda: _metrics_up(b), "the standby is up", 60)
    proxy.cut()
    cut = time.monotonic()
    create(cluster, setup.ns, "Topic", "after", {"streamName": f"{setup.ns}/after"})
    assert a.process.wait(30) == LOST_EXIT_CODE
    exited = time.monotonic() - cut
    took = setup.wait_holder(b, timeout=30) - cut
    # At its renew deadline after its last renewal (which began before the cut), still well
    # before its lease (10 s) could run out, and before B took over.
    assert exited <= RENEW_DEADLINE + LATE and exited < took, (exited, took)
    wait_for(lambda: condition(get(cluster, setup.ns, "Topic", "after")).get("status") == "True", "B reconciles", 60)
    assert b"lost lease" in (setup.tmp_path / "operators.log").read_bytes()
    print(f"partitioned leader exited after {exited:.1f} s; standby took over after {took:.1f} s")


def test_stopped_leader_exits_on_sigcont_without_writing(setup: Setup) -> None:
    """SIGSTOP freezes the leader past its Lease; B takes over and reconciles a new
    object; on SIGCONT A exits at once (its watch would otherwise hand it the object)."""
    cluster, ns = setup.cluster, setup.ns
    a = setup.start("op-a")
    setup.wait_holder(a)
    b = setup.start("op-b")
    wait_for(lambda: _metrics_up(b), "the standby is up", 60)
    a.process.send_signal(signal.SIGSTOP)
    stopped = time.monotonic()
    create(cluster, ns, "Topic", "t", {"streamName": f"{ns}/t"}, labels={"x": "1"})
    took = setup.wait_holder(b, timeout=30) - stopped
    assert took <= TAKEOVER_LIMIT
    wait_for(lambda: condition(get(cluster, ns, "Topic", "t")).get("status") == "True", "B reconciles", 60)
    watch = StatusWatch(cluster, ns)
    try:
        time.sleep(0.5)
        resumed = time.monotonic()
        a.process.send_signal(signal.SIGCONT)
        assert a.process.wait(10) == LOST_EXIT_CODE
        assert time.monotonic() - resumed < 2
        time.sleep(1)
    finally:
        watch.close()
    assert watch.writes == []  # nobody wrote: B had nothing new, A exited first
    assert len(events(cluster, ns, "t")) <= 1
    assert setup.redis.client().xinfo_groups(f"{ns}/t") == []


def test_clean_shutdown_hands_over_at_once(setup: Setup) -> None:
    a = setup.start("op-a")
    setup.wait_holder(a)
    b = setup.start("op-b")
    wait_for(lambda: _metrics_up(b), "the standby is up", 60)
    assert b.metric("redistreams_leader") == 0 and a.metric("redistreams_leader") == 1
    wait_for(lambda: a.healthy() and b.healthy(), "leader and standby both live and ready", 30)
    a.process.terminate()
    stopping = time.monotonic()
    assert a.process.wait(30) == 0
    took = setup.wait_holder(b, timeout=30) - stopping
    # A's shutdown, then B's next read (a retry period): 2.5 s measured. Had A not released
    # the Lease, B would wait for it to run out: at least 10 - 2.4 s after the SIGTERM.
    assert took < 7, took
    wait_for(lambda: b.metric("redistreams_leader") == 1, "B leads", 30)
    wait_for(b.healthy, "kopf's endpoint in place of the standby's", 30)
    messages = setup.lease_events()
    assert any(m.startswith("op-a_") and m.endswith("stopped leading") for m in messages), messages
    assert any(m.startswith("op-b_") and m.endswith("became leader") for m in messages), messages
    c = setup.start("op-c")  # a standby stopped while waiting: exits at once, the Lease untouched
    wait_for(c.healthy, "the standby is up", 60)
    c.process.terminate()
    assert c.process.wait(30) == 0
    assert setup.holder().startswith("op-b_")
    print(f"clean handover: {took:.1f} s")
