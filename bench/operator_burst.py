"""1,000 Topics + 3,000 ConsumerGroups applied at once on the local control plane.

Prints, from one run: the time the API server alone takes to store them (namespace the
operator does not watch) next to the time until all are Ready (watched namespace), the
CPU seconds each process spent in both (API server, etcd, operator, the bench itself:
on 2 cores they share the CPU, so the ratio depends on all of them) and the load
average, API writes per resource, the operator's RSS, and Redis round trips and API writes per idle
resync. Idle, it also counts what Redis served (INFO commandstats) and the operator's own
round-trip and pass counters over a window of whole intervals: reads of each stream per
resync pass (the issue-14 target: one) and per minute, round trips per pass and per minute. Asserts nothing about time.

    python -m bench.operator_burst [--topics 1000] [--groups 3] [--resync 10] [--observe 10]
                                   [--deletion-policy Delete]

To compare with another revision, run it with PYTHONPATH=<that checkout>/operator.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from redistreams.crds import generate
from tests.support.controlplane import Cluster, ControlPlane, install_crds
from tests.support.kube import API, operator_kubeconfig
from tests.support.net import free_port
from tests.support.redis_server import RedisServer


def objects(ns: str, topics: int, groups: int, policy: str = "") -> list[tuple[str, dict]]:
    """``policy``: every object's deletionPolicy (empty: the default, Retain)."""
    extra = {"deletionPolicy": policy} if policy else {}
    out = []
    for i in range(topics):
        out.append(("topics", {"apiVersion": "redistreams.dev/v1alpha1", "kind": "Topic",
                               "metadata": {"name": f"t{i}"}, "spec": {"streamName": f"{ns}/t{i}", **extra}}))
        for j in range(groups):
            out.append(("consumergroups", {"apiVersion": "redistreams.dev/v1alpha1", "kind": "ConsumerGroup",
                                           "metadata": {"name": f"t{i}-g{j}"},
                                           "spec": {"topicRef": {"name": f"t{i}"}, "groupName": f"g{j}", **extra}}))
    return out


def store(cluster: Cluster, ns: str, items: list[tuple[str, dict]]) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda item: cluster.post(f"{API}/namespaces/{ns}/{item[0]}", item[1]).raise_for_status(), items))
    return time.perf_counter() - start


def watch_events(cluster: Cluster, path: str, timeout: int) -> Iterator[tuple[str, dict]]:
    """(type, object) of each event of one watch on path, until the API server closes it."""
    request = urllib.request.Request(f"{cluster.server}{path}?watch=1&timeoutSeconds={timeout}",
                                     headers={"Authorization": f"Bearer {cluster.token}"} if cluster.token else {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                         urllib.request.HTTPSHandler(context=cluster.ssl_context()))
    with opener.open(request, timeout=timeout) as stream:
        for line in stream:
            event = json.loads(line)
            yield event["type"], event["object"]


def ready_count(cluster: Cluster, ns: str) -> int:
    count = 0
    for plural in ("topics", "consumergroups"):
        for item in cluster.get(f"{API}/namespaces/{ns}/{plural}").json["items"]:
            conditions = item.get("status", {}).get("conditions", [])
            if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                count += 1
    return count


class ReadyWatch:
    """Counts Ready objects from watch streams: as exact as polling, far lighter on the
    API server than listing thousands of objects again and again."""

    def __init__(self, cluster: Cluster, ns: str, total: int) -> None:
        self.cluster, self.ns, self.total = cluster, ns, total
        self.ready: set[tuple[str, str]] = set()
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.threads = [threading.Thread(target=self._watch, args=(p,), daemon=True)
                        for p in ("topics", "consumergroups")]
        for thread in self.threads:
            thread.start()

    def _watch(self, plural: str) -> None:
        # The API server closes a watch whose reader falls behind (a loaded machine): watch
        # again from the current state (every object ADDED anew) until all are Ready.
        while not self.done.is_set():
            with self.lock:
                self.ready = {key for key in self.ready if key[0] != plural}
            try:
                self._watch_once(plural)
            except (OSError, ValueError):
                time.sleep(0.5)

    def _watch_once(self, plural: str) -> None:
        for kind, obj in watch_events(self.cluster, f"{API}/namespaces/{self.ns}/{plural}", 900):
            if kind not in ("ADDED", "MODIFIED", "DELETED"):
                continue
            ready = kind != "DELETED" and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in obj.get("status", {}).get("conditions", []))
            with self.lock:
                key = (plural, obj["metadata"]["name"])
                (self.ready.add if ready else self.ready.discard)(key)
                if len(self.ready) >= self.total:
                    self.done.set()
                    return


def api_writes(cluster: Cluster) -> int:
    """PATCH/PUT/POST requests the API server served for our resources so far."""
    return sum(api_writes_by_resource(cluster).values())


def api_writes_by_resource(cluster: Cluster) -> dict[str, int]:
    text = cluster.get("/metrics").text
    out: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("apiserver_request_total{") and 'group="redistreams.dev"' in line:
            verb = re.search(r'verb="(PATCH|PUT|POST|APPLY)"', line)
            if verb:
                resource = re.search(r'resource="([^"]*)"', line)
                sub = re.search(r'subresource="([^"]*)"', line)
                key = f"{verb.group(1)} {resource.group(1) if resource else '?'}"
                key += f"/{sub.group(1)}" if sub and sub.group(1) else ""
                out[key] = out.get(key, 0) + int(float(line.rsplit(" ", 1)[1]))
    return out


class EventWatch:
    """When each Event of the namespace arrived (created or counted again), from a watch."""

    def __init__(self, cluster: Cluster, ns: str) -> None:
        self.cluster, self.ns = cluster, ns
        self.seen: dict[tuple[str, str], set[str]] = {}  # (object, reason) -> the Events' uids
        self.last = 0.0  # perf_counter of the latest arrival
        self.lock = threading.Lock()
        threading.Thread(target=self._watch, daemon=True).start()

    @property
    def per_object(self) -> dict[tuple[str, str], int]:
        with self.lock:
            return {key: len(uids) for key, uids in self.seen.items()}

    def _watch(self) -> None:
        while True:  # a watch closed by the API server: again (replayed Events are known by uid)
            try:
                self._watch_once()
            except (OSError, ValueError):
                time.sleep(0.5)

    def _watch_once(self) -> None:
        for kind, obj in watch_events(self.cluster, f"/api/v1/namespaces/{self.ns}/events", 1800):
            if kind not in ("ADDED", "MODIFIED"):
                continue
            with self.lock:
                uids = self.seen.setdefault((obj["involvedObject"]["name"], obj["reason"]), set())
                if kind == "MODIFIED" or obj["metadata"]["uid"] not in uids:
                    self.last = time.perf_counter()
                uids.add(obj["metadata"]["uid"])

    def settled(self, quiet: float, limit: float) -> None:
        """Returns once no Event arrived for ``quiet`` seconds (at most ``limit``)."""
        begin = time.perf_counter()
        while time.perf_counter() - begin < limit and time.perf_counter() - max(self.last, begin) < quiet:
            time.sleep(0.5)


def event_requests(cluster: Cluster) -> int:
    """POST and PATCH requests for core/v1 Events the API server served so far."""
    total = 0
    for line in cluster.get("/metrics").text.splitlines():
        if line.startswith("apiserver_request_total{") and 'resource="events"' in line \
                and re.search(r'verb="(POST|PATCH)"', line):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def machine_load() -> str:
    """The load averages beside the CPU count: figures from a loaded machine read differently."""
    return f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """VmRSS (now) or VmHWM (the peak so far), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def commandstats(redis: RedisServer) -> dict[str, int]:
    """Calls per command Redis served so far, and all commands under "total"."""
    client = redis.client()
    try:
        stats = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in client.info("commandstats").items()}
        stats["total"] = int(client.info("stats")["total_commands_processed"])
    finally:
        client.close()
    return stats


OPERATOR_COUNTERS = ("redistreams_redis_round_trips_total", "redistreams_resync_seconds_count",
                     "redistreams_observation_seconds_count")


def operator_counters(port: int) -> dict[str, float]:
    """Round trips sent and passes finished (resync and observation), from the operator's
    metrics endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {name: sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " "))
            for name in OPERATOR_COUNTERS}


def resync_passes(port: int, count: int, limit: float) -> None:
    """Returns once ``count`` more resync passes have finished (or after ``limit`` seconds)."""
    target = operator_counters(port)["redistreams_resync_seconds_count"] + count
    deadline = time.perf_counter() + limit
    while operator_counters(port)["redistreams_resync_seconds_count"] < target and time.perf_counter() < deadline:
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topics", type=int, default=1000)
    parser.add_argument("--groups", type=int, default=3)
    parser.add_argument("--resync", type=int, default=10, help="operator resync interval, seconds")
    parser.add_argument("--deletion-policy", default="", choices=("", "Retain", "Delete"),
                        help="every object's deletionPolicy (Delete: each carries the operator's finalizer)")
    parser.add_argument("--observe", type=int, default=0,
                        help="operator observe interval, seconds (default: the resync interval)")
    args = parser.parse_args()
    total = args.topics * (1 + args.groups)
    observe = args.observe or args.resync
    metrics_port = free_port()

    with ControlPlane() as cp, tempfile.TemporaryDirectory() as tmp:
        cluster = cp.cluster
        assert cluster is not None
        install_crds(cluster, generate())
        redis = RedisServer().start()
        watched, unwatched = f"bench-{uuid.uuid4().hex[:6]}", f"store-{uuid.uuid4().hex[:6]}"
        for ns in (watched, unwatched):
            cluster.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        # As the chart's ServiceAccount, bound to exactly the ClusterRole the chart ships.
        kubeconfig = operator_kubeconfig(cluster, Path(tmp) / "kubeconfig", system="redistreams-system")
        log_path = Path(tmp) / "operator.log"
        env = {**os.environ, "KUBECONFIG": kubeconfig}
        with open(log_path, "w") as log:
            operator = subprocess.Popen(
                [sys.executable, "-m", "redistreams.cli", "operator", "--namespace", watched,
                 "--redis-url", redis.url, "--liveness", "",
                 "--resync-interval", f"{int(args.resync)}s", "--observe-interval", f"{observe}s",
                 "--metrics-port", str(metrics_port),
                 "--status-interval", f"{int(args.resync)}s",
                 "--log-format", "plain"], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            time.sleep(3)
            if operator.poll() is not None:
                raise SystemExit(f"the operator exited: {log_path.read_text()[-3000:]}")
            print(f"{args.topics} Topics + {args.topics * args.groups} ConsumerGroups = {total} resources "
                  f"(deletionPolicy {args.deletion_policy or 'Retain'}); {machine_load()}")
            warm = f"warm-{uuid.uuid4().hex[:6]}"  # first requests of a fresh API server are slower
            cluster.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": warm}})
            store(cluster, warm, objects(warm, 50, args.groups, args.deletion_policy))
            servers = cp.pids()
            cpu_before = {name: cpu_seconds(pid) for name, pid in servers.items()} | {"bench": time.process_time()}
            store_s = store(cluster, unwatched, objects(unwatched, args.topics, args.groups, args.deletion_policy))
            store_cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in servers.items()}
            store_cpu["bench"] = time.process_time() - cpu_before["bench"]
            print(f"API server alone stores them in {store_s:.1f}s ({total / store_s:.0f}/s), unwatched namespace; "
                  "CPU seconds: " + ", ".join(f"{n} {c:.1f}" for n, c in store_cpu.items()))

            rss_idle_empty = rss_mib(operator.pid)
            writes_before = api_writes(cluster)
            by_resource_before = api_writes_by_resource(cluster)
            processes = {"operator": operator.pid, **servers}
            cpu_before = {name: cpu_seconds(pid) for name, pid in processes.items()} | {"bench": time.process_time()}
            watch = ReadyWatch(cluster, watched, total)
            event_watch = EventWatch(cluster, watched)
            events_before = event_requests(cluster)
            start = time.perf_counter()
            created_s = store(cluster, watched, objects(watched, args.topics, args.groups, args.deletion_policy))
            while not watch.done.wait(1):
                if time.perf_counter() - start > 900 or operator.poll() is not None:
                    print(log_path.read_text()[-3000:])
                    break
            ready_s = time.perf_counter() - start
            rss_ready = rss_mib(operator.pid)
            ready = ready_count(cluster, watched)
            writes = api_writes(cluster) - writes_before - total  # minus our own creates
            by_resource = {k: v - by_resource_before.get(k, 0) for k, v in api_writes_by_resource(cluster).items()}
            cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in processes.items()}
            cpu["bench"] = time.process_time() - cpu_before["bench"]  # its creates and the Ready/Event watches
            # A second sample of the store time, the operator idle (its routine Events, which
            # trail a burst, posted first): the baseline varies run to run.
            event_watch.settled(quiet=15, limit=240)
            events_s = event_watch.last - start - ready_s
            per_object = event_watch.per_object
            print(f"Events: {len(per_object)} (object, reason) pairs, at most {max(per_object.values(), default=0)} "
                  f"Events each, {event_requests(cluster) - events_before} requests; the last "
                  f"{events_s:.1f}s after the last Ready (target <= 10s)")
            again = f"store2-{uuid.uuid4().hex[:6]}"
            cluster.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": again}})
            store2_s = store(cluster, again, objects(again, args.topics, args.groups, args.deletion_policy))
            baseline = (store_s + store2_s) / 2
            print(f"API server alone, second sample: {store2_s:.1f}s; baseline (mean) {baseline:.1f}s")
            print(f"all Ready after {ready_s:.1f}s (creates took {created_s:.1f}s): "
                  f"{ready_s / baseline:.2f}x the store time (target <= 1.3x, issue 14); {ready}/{total} Ready")
            print(f"API writes by the operator: {writes} ({writes / total:.2f} per resource); all writes until Ready: "
                  + ", ".join(f"{k} {v}" for k, v in sorted(by_resource.items()) if v))
            print("CPU seconds until Ready: " + ", ".join(f"{n} {c:.1f}" for n, c in cpu.items()))

            # Idle: let the figures written after Ready (group counts…) settle, then
            # measure resyncs with nothing changing.
            time.sleep(args.resync * 3)
            idle_before = api_writes(cluster)
            log_mark = log_path.stat().st_size
            # From the end of one resync pass to the end of the 4th after it: each counted
            # pass's read falls inside the window (a pass sleeps its interval after it
            # finishes: so per pass and per minute, not per interval).
            resync_passes(metrics_port, 1, args.resync * 6)
            served_before, counters_before = commandstats(redis), operator_counters(metrics_port)
            window_start = time.perf_counter()
            resync_passes(metrics_port, 4, args.resync * 30)
            window = time.perf_counter() - window_start
            served = {k: v - served_before.get(k, 0) for k, v in commandstats(redis).items()}
            counters = {k: v - counters_before[k] for k, v in operator_counters(metrics_port).items()}
            idle_writes = api_writes(cluster) - idle_before
            resyncs = counters["redistreams_resync_seconds_count"] or 1
            reads = served.get("xinfo|stream", 0) / args.topics
            busiest = ", ".join(f"{k} {v}" for k, v in sorted(served.items(), key=lambda kv: -kv[1])[:8])
            print(f"idle for {window:.0f}s (--resync-interval {args.resync}s, --observe-interval {observe}s): "
                  f"{counters['redistreams_resync_seconds_count']:.0f} resync passes, "
                  f"{counters['redistreams_observation_seconds_count']:.0f} observation passes; "
                  f"each stream read {reads / resyncs:.2f} times per resync pass (XINFO STREAM; target 1), "
                  f"{reads * 60 / window:.1f} times per minute; operator Redis round trips "
                  f"{counters['redistreams_redis_round_trips_total'] / resyncs:.1f} per resync pass, "
                  f"{counters['redistreams_redis_round_trips_total'] * 60 / window:.1f} per minute; "
                  f"Redis served {served.get('total', 0) * 60 / window:.0f} commands per minute: {busiest}")
            lines = [line for line in log_path.read_text()[log_mark:].splitlines() if "resync:" in line]
            trips = [int(m.group(1)) for line in lines if (m := re.search(r"(\d+) Redis round trips", line))]
            redis_writes = [int(m.group(1)) for line in lines if (m := re.search(r"(\d+) Redis writes", line))]
            print(f"idle resyncs: {len(trips)}; API writes {idle_writes} (target 0); "
                  f"Redis round trips per resync {trips} = {max(trips or [0]) / total * 100:.2f} per 100 resources "
                  f"(target <= 1); Redis writes {redis_writes}")
            print(f"operator RSS {rss_mib(operator.pid):.0f} MiB idle (target <= 120); before the burst "
                  f"{rss_idle_empty:.0f} MiB, when all were Ready {rss_ready:.0f} MiB, "
                  f"peak {rss_mib(operator.pid, 'VmHWM'):.0f} MiB")
        finally:
            operator.terminate()
            operator.wait(30)
            redis.close()


if __name__ == "__main__":
    main()
