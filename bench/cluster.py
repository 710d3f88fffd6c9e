"""Apply 10,000 Topics x 3 ConsumerGroups on a 3-master Redis Cluster (3 replicas) and on one
redis-server started in the same run: first apply, no-op re-apply, round trips per node.

    python -m bench.cluster [--topics 10000] [--groups 3] [--rounds 3] [--no-clients]

Then, when bench/cluster_clients.py is there, the client's publish and consume+ack
throughput on the same two setups. Prints figures beside the single server's (target
from issue 13: cluster apply within 1.5x of one server); asserts nothing about time.
"""

from __future__ import annotations

import argparse
import importlib
import os
import resource
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.apply import manifests
from redistreams.connection import RedisTarget
from redistreams.engine import Engine, intents_from
from redistreams.manifests import load
from tests.support.redis_cluster import RedisCluster
from tests.support.redis_server import RedisServer

TARGET = 1.5  # cluster apply / one server, issue 13
MEASUREMENTS = (("first apply", "created"), ("no-op re-apply", "unchanged"))


def measure(url: str, topics: list[Any], groups: list[Any], flush: Any, dirty: Any,
            best: dict[tuple[str, str], float], stats: dict[tuple[str, str], dict[str, Any]], setup: str) -> None:
    flush()
    engine = Engine(RedisTarget(url).client())
    engine.observe([])  # connect (a cluster URL: the slot map) outside the timing
    for name, outcome in MEASUREMENTS:
        engine.stats.reset()
        before = dirty()
        start = time.perf_counter()
        results = engine.reconcile(topics, groups)
        seconds = time.perf_counter() - start
        outcomes = Counter(r.outcome for r in results)
        assert outcomes == {outcome: len(results)}, (setup, name, outcomes)
        key = (setup, name)
        if seconds < best.get(key, float("inf")):
            best[key] = seconds
            stats[key] = {"round_trips": engine.stats.round_trips, "commands": engine.stats.commands,
                          "writes": engine.stats.writes, "dirty": dirty() - before,
                          "per_node": dict(engine.stats.node_round_trips)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topics", type=int, default=10_000)
    parser.add_argument("--groups", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="best of N for each measurement")
    parser.add_argument("--no-clients", action="store_true", help="skip bench.cluster_clients")
    args = parser.parse_args()

    work = Path("/tmp/redistreams-bench-cluster")
    work.mkdir(exist_ok=True)
    path = work / "manifests.yaml"
    manifests(path, args.topics, args.groups)
    loaded = load([str(path)])
    topics, groups = intents_from(loaded.topics, [(g, loaded.topic_for(g)) for g in loaded.groups], "bench")
    print(f"{args.topics} topics x {args.groups} groups = {len(topics) + len(groups)} resources; "
          f"3-master/3-replica cluster vs one redis-server, loopback, {os.cpu_count()} CPUs shared by "
          f"clients and servers; load average {os.getloadavg()[0]:.2f}")

    best: dict[tuple[str, str], float] = {}
    stats: dict[tuple[str, str], dict[str, Any]] = {}
    cluster = RedisCluster().start()
    server = RedisServer().start()
    try:
        for _ in range(args.rounds):  # alternated, so both see the same machine
            measure(server.url, topics, groups, lambda: server.client().flushall(), server.dirty, best, stats,
                    "one server")
            measure(cluster.url, topics, groups, cluster.flush, cluster.dirty, best, stats, "cluster")

        print(f"\n{'measurement (best of ' + str(args.rounds) + ')':<34}{'seconds':>9}{'round trips':>13}"
              f"{'commands':>10}{'writes':>8}{'dirty':>8}  per node")
        for name, _ in MEASUREMENTS:
            for setup in ("one server", "cluster"):
                s = stats[(setup, name)]
                per_node = ", ".join(f"{n}: {c}" for n, c in sorted(s["per_node"].items())) or "-"
                print(f"{setup + ' ' + name:<34}{best[(setup, name)]:>9.3f}{s['round_trips']:>13}"
                      f"{s['commands']:>10}{s['writes']:>8}{s['dirty']:>8}  {per_node}")
        for name, _ in MEASUREMENTS:
            ratio = best[("cluster", name)] / best[("one server", name)]
            print(f"ratio cluster/one server, {name}: {ratio:.2f}x (target <= {TARGET:g}x)")
        noop = stats[("cluster", "no-op re-apply")]
        print(f"cluster no-op re-apply writes: {noop['writes']} commands, {noop['dirty']} Redis dirty changes "
              "(target 0)")
        print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")

        if not args.no_clients:
            clients(cluster, server)
    finally:
        cluster.close()
        server.close()


def clients(cluster: RedisCluster, server: RedisServer) -> None:
    """The client's figures (bench/cluster_clients.py), when that module is there."""
    try:
        module = importlib.import_module("bench.cluster_clients")
    except ImportError:
        print("\n(bench/cluster_clients.py not found: no client throughput figures)")
        return
    cluster.flush()
    server.client().flushall()
    print("\nclient throughput (bench.cluster_clients)")
    for row in module.run(cluster.url, server.url):
        print("  " + ", ".join(f"{k}={v}" for k, v in row.items()))


if __name__ == "__main__":
    main()
