"""Client throughput of redistreams.pubsub on a 3-master Redis Cluster versus one Redis
server, same run: publish (send_batch) and consume+ack (receive_batch + ack), over 64
streams spread over the slots, one Topic or Subscription per stream.

    python -m bench.cluster_clients [--streams 64] [--messages 2000] [--size 100] [--rounds 2]

Alone it starts its own cluster (3 masters + 3 replicas) and one server on loopback;
``run(cluster_url, single_url)`` measures servers someone else started (bench.cluster).
Each figure is measured with 1 client process, and with 3 (the streams split by owning
master on the cluster, in three equal parts on the single server): one asyncio client
process saturates a core well before three Redis masters do, so the cluster's gain shows
only with clients in parallel, as deployments run them. Best of the rounds; asserts
nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import queue
import time
from collections.abc import Callable
from multiprocessing.synchronize import Barrier
from typing import Any

import redis

from redistreams.cluster import cluster_seeds, is_cluster_url
from redistreams.pubsub import Message, open_subscription, open_topic

BATCH = 200
METADATA = {"k": "v"}
TARGET = 2.0  # cluster / one server, from issue 13


# -- one client process ------------------------------------------------------------------


async def _publish(url: str, streams: list[str], count: int, body: bytes, barrier: Barrier) -> tuple[float, float]:
    topics = [await open_topic(f"redis://{s}", redis_url=url) for s in streams]
    await asyncio.gather(*(t.send(Message(body, METADATA)) for t in topics))  # connected, slot map loaded
    messages = [Message(body, METADATA) for _ in range(BATCH)]
    await asyncio.to_thread(barrier.wait)
    started = time.perf_counter()

    async def one(topic: Any) -> None:
        for start in range(0, count, BATCH):
            await topic.send_batch(messages[:min(BATCH, count - start)])

    await asyncio.gather(*(one(t) for t in topics))
    ended = time.perf_counter()
    for topic in topics:
        await topic.shutdown()
    return started, ended


async def _consume(url: str, streams: list[str], count: int, body: bytes, barrier: Barrier) -> tuple[float, float]:
    subs = [await open_subscription(f"redis://g?topic={s}&consumer=c", redis_url=url, batch_size=BATCH)
            for s in streams]
    await asyncio.to_thread(barrier.wait)
    started = time.perf_counter()

    async def one(sub: Any) -> None:
        done = 0
        while done < count:
            batch = await sub.receive_batch(BATCH, timeout=30)
            if not batch:
                raise RuntimeError(f"{sub.stream}: only {done} of {count} received")
            sub.ack(*batch)
            done += len(batch)
        await sub.flush()

    await asyncio.gather(*(one(s) for s in subs))
    ended = time.perf_counter()
    for sub in subs:
        await sub.shutdown()
    return started, ended


def _client(kind: str, url: str, streams: list[str], count: int, size: int, barrier: Barrier,
            results: Any) -> None:
    work = _publish if kind == "publish" else _consume
    results.put(asyncio.run(work(url, streams, count, b"x" * size, barrier)))


# -- measuring ---------------------------------------------------------------------------


def _admin(url: str) -> redis.Redis | redis.RedisCluster:
    if is_cluster_url(url):
        _, seeds = cluster_seeds(url)
        nodes = [redis.cluster.ClusterNode(host, port) for host, port in seeds]
        return redis.RedisCluster(startup_nodes=nodes, protocol=2)
    return redis.Redis.from_url(url, protocol=2)


def _split(url: str, streams: list[str], parts: int) -> list[list[str]]:
    """Streams per client process: by owning master on a cluster, else in equal parts."""
    if parts == 1:
        return [streams]
    admin = _admin(url)
    if isinstance(admin, redis.RedisCluster):
        by_node: dict[str, list[str]] = {}
        for stream in streams:
            by_node.setdefault(admin.get_node_from_key(stream).name, []).append(stream)
        admin.close()
        return list(by_node.values())
    admin.close()
    return [streams[i::parts] for i in range(parts)]


def _fill(admin: redis.Redis | redis.RedisCluster, streams: list[str], count: int, size: int) -> None:
    """The backlog for consume+ack, written as the driver writes entries."""
    fields = {"headers": b'{"k":"v"}', "body": b"x" * size}
    for stream in streams:
        for start in range(0, count, 1000):
            pipe = admin.pipeline(transaction=False)
            for _ in range(min(1000, count - start)):
                pipe.xadd(stream, fields)  # type: ignore[arg-type]
            pipe.execute()


def _cpu(admin: redis.Redis | redis.RedisCluster) -> dict[str, float]:
    """CPU seconds each master (or the server) has used so far."""
    if isinstance(admin, redis.RedisCluster):
        replies = admin.info("cpu", target_nodes=redis.RedisCluster.PRIMARIES)
    else:
        replies = {"server": admin.info("cpu")}
    return {node: float(info["used_cpu_user"]) + float(info["used_cpu_sys"]) for node, info in replies.items()}


def _measure(kind: str, url: str, streams: list[str], count: int, size: int, processes: int) -> tuple[float, float]:
    """Messages per second of ``processes`` client processes started together, and the
    CPU seconds per million messages of the busiest master (or of the one server)."""
    admin = _admin(url)
    if kind == "consume":
        _fill(admin, streams, count, size)
    cpu_before = _cpu(admin)
    context = multiprocessing.get_context("fork")
    groups = _split(url, streams, processes)
    barrier = context.Barrier(len(groups))
    results = context.Queue()
    workers = [context.Process(target=_client, args=(kind, url, group, count, size, barrier, results))
               for group in groups]
    for worker in workers:
        worker.start()
    spans: list[tuple[float, float]] = []
    deadline = time.monotonic() + 600
    while len(spans) < len(workers):
        try:
            spans.append(results.get(timeout=1))
        except queue.Empty:
            failed = [w.exitcode for w in workers if w.exitcode not in (None, 0)]
            if failed or time.monotonic() > deadline:
                barrier.abort()
                for worker in workers:
                    worker.kill()
                raise RuntimeError(f"{kind} clients failed (exit codes {failed}) or took over 600 s") from None
    for worker in workers:
        worker.join(60)
    cpu_after = _cpu(admin)
    for stream in streams:
        admin.delete(stream)
    admin.close()
    elapsed = max(end for _, end in spans) - min(start for start, _ in spans)
    total = len(streams) * count
    busiest = max(cpu_after[node] - cpu_before.get(node, 0.0) for node in cpu_after)
    return total / elapsed, busiest / total * 1e6


def run(cluster_url: str, single_url: str, *, streams: int = 64, messages: int = 2000, size: int = 100,
        rounds: int = 2, on_row: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Figures for the cluster and the single server, same run: one dict per
    (measurement, client processes) with both rates (msg/s) and their ratio, also handed
    to ``on_row`` as soon as measured.

    ``server_capacity_ratio`` is what the servers could take, client CPU aside: the one
    server's CPU time per message over the busiest master's (INFO cpu, same runs). Where
    clients and servers share few cores (a laptop, CI), the throughput ratio measures the
    machine, this one the cluster."""
    figures: list[dict[str, Any]] = []
    for kind in ("publish", "consume"):
        for processes in (1, 3):
            rates: dict[str, float] = {}
            cpu: dict[str, float] = {}
            for name, url in (("single", single_url), ("cluster", cluster_url)):
                for round_ in range(rounds):
                    names = [f"bench/{kind}/{processes}/{round_}/{i}" for i in range(streams)]
                    rate, cpu_per_million = _measure(kind, url, names, messages, size, processes)
                    if rate > rates.get(name, 0.0):
                        rates[name], cpu[name] = rate, cpu_per_million
            label = "publish" if kind == "publish" else "consume+ack"
            figures.append({
                "measurement": f"{label} ({streams} streams, {messages} messages each, {size} B bodies)",
                "client_processes": processes, "single_msgs_per_s": round(rates["single"]),
                "cluster_msgs_per_s": round(rates["cluster"]),
                "ratio": round(rates["cluster"] / rates["single"], 2), "target": TARGET,
                # CPU seconds per million messages: the one server, the cluster's busiest master
                "single_server_cpu_s_per_M": round(cpu["single"], 2),
                "busiest_master_cpu_s_per_M": round(cpu["cluster"], 2),
                "server_capacity_ratio": round(cpu["single"] / cpu["cluster"], 2) if cpu["cluster"] else None,
            })
            if on_row is not None:
                on_row(figures[-1])
    return figures


def main() -> None:
    from tests.support.redis_cluster import RedisCluster
    from tests.support.redis_server import RedisServer

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--messages", type=int, default=2000, help="per stream")
    parser.add_argument("--size", type=int, default=100, help="body bytes")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--replicas", type=int, default=1, help="per master (0: masters only, as the one server)")
    args = parser.parse_args()
    cluster = RedisCluster(3, args.replicas).start()
    single = RedisServer().start()
    try:
        print(f"3-master cluster ({args.replicas} replica(s) each) vs one redis-server, loopback, "
              f"{os.cpu_count()} CPUs shared by servers and clients; batches of {BATCH}, best of {args.rounds}")
        print(f"load average before: {os.getloadavg()[0]:.2f}")
        print(f"\n{'msg/s':<66}{'clients':>8}{'one server':>12}{'cluster':>10}{'ratio':>7}"
              f"{'server CPU s/M msgs: one':>26}{'busiest master':>16}{'capacity ratio':>16}")

        def show(row: dict[str, Any]) -> None:
            print(f"{row['measurement']:<66}{row['client_processes']:>8}{row['single_msgs_per_s']:>12,}"
                  f"{row['cluster_msgs_per_s']:>10,}{row['ratio']:>7.2f}{row['single_server_cpu_s_per_M']:>26.2f}"
                  f"{row['busiest_master_cpu_s_per_M']:>16.2f}{row['server_capacity_ratio'] or 0:>16.2f}", flush=True)

        run(cluster.url, single.url, streams=args.streams, messages=args.messages, size=args.size,
            rounds=args.rounds, on_row=show)
        print(f"\ntarget: cluster >= {TARGET:g}x one server (issue 13); capacity ratio: one server's CPU per message "
              "over the busiest master's")
    finally:
        single.close()
        cluster.close()


if __name__ == "__main__":
    main()
