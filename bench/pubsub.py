"""Publish and consume+ack throughput of redistreams.pubsub, next to a raw redis-py
pipeline and the Go driver (github.com/covrom/redispubsub) on the same Redis, same run.

    python -m bench.pubsub [--messages 50000] [--size 100] [--rounds 3] [--no-go] [--only KEY,…]

Prints figures (best of the rounds) and, for the one-message-at-a-time paths most
services use (``for m in sub: m.ack()``, ``topic.send(m)``, blocking and asyncio), their
ratio to the raw redis-py baseline; also the peak RSS of a blocking consumer in a process
of its own. Asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import redis
import redis.asyncio as aredis

from redistreams.pubsub import Message, open_subscription, open_topic, sync
from tests.support.goclient import GoBuildError, GoClient, build_go_client
from tests.support.redis_server import RedisServer

BATCH = 200
METADATA = {"k": "v"}


class Bench:
    def __init__(self, server: RedisServer, messages: int, size: int) -> None:
        self.server = server
        self.url = server.url
        self.n = messages
        self.body = b"x" * size
        self.raw = redis.Redis(host="127.0.0.1", port=server.port, protocol=2)
        self.headers = json.dumps(METADATA, separators=(",", ":")).encode()
        self.round = 0
        self.cpu_started = 0.0
        self.last_cpu: float | None = None  # CPU seconds of the last timed section (None: not timed here)
        self.last_elapsed = 0.0

    def clock(self) -> float:
        """Start of a timed section: wall clock, and this process' CPU time (all threads)."""
        self.cpu_started = time.process_time()
        return time.perf_counter()

    def elapsed(self, started: float) -> float:
        """End of a timed section; CPU time is steadier than throughput on a loaded machine."""
        self.last_cpu = time.process_time() - self.cpu_started
        self.last_elapsed = time.perf_counter() - started
        return self.last_elapsed

    def fresh(self, prefix: str) -> str:
        self.round += 1
        self.raw.flushall()
        return f"{prefix}-{self.round}"

    def fill(self, stream: str) -> None:
        """Stream with n entries and a group at 0, for the consume measurements."""
        self.raw.xgroup_create(stream, "g", "0", mkstream=True)
        for start in range(0, self.n, 1000):
            pipe = self.raw.pipeline(transaction=False)
            for _ in range(min(1000, self.n - start)):
                pipe.xadd(stream, {"headers": self.headers, "body": self.body})
            pipe.execute()

    # -- publish ---------------------------------------------------------------------

    def raw_publish(self) -> float:
        stream = self.fresh("raw")
        started = self.clock()
        for start in range(0, self.n, BATCH):
            pipe = self.raw.pipeline(transaction=False)
            for _ in range(min(BATCH, self.n - start)):
                pipe.xadd(stream, {"headers": self.headers, "body": self.body})
            pipe.execute()
        return self.n / (self.elapsed(started))

    def publish_batched(self) -> float:
        stream = self.fresh("batched")

        async def run() -> float:
            topic = await open_topic(f"redis://{stream}", redis_url=self.url)
            messages = [Message(self.body, METADATA) for _ in range(BATCH)]
            started = self.clock()
            for start in range(0, self.n, BATCH):
                await topic.send_batch(messages[: min(BATCH, self.n - start)])
            elapsed = self.elapsed(started)
            await topic.shutdown()
            return self.n / elapsed

        return asyncio.run(run())

    def publish_concurrent(self, tasks: int = 200) -> float:
        """Many tasks each awaiting send() one message at a time (sends share round trips)."""
        stream = self.fresh("concurrent")

        async def run() -> float:
            topic = await open_topic(f"redis://{stream}", redis_url=self.url)
            per_task = self.n // tasks

            async def worker() -> None:
                for _ in range(per_task):
                    await topic.send(Message(self.body, METADATA))

            started = self.clock()
            await asyncio.gather(*(worker() for _ in range(tasks)))
            elapsed = self.elapsed(started)
            await topic.shutdown()
            return per_task * tasks / elapsed

        return asyncio.run(run())

    def publish_sequential(self) -> float:
        """One send at a time, each awaited: bound by the round trip."""
        stream = self.fresh("single")
        count = min(self.n, 10_000)

        async def run() -> float:
            topic = await open_topic(f"redis://{stream}", redis_url=self.url)
            started = self.clock()
            for _ in range(count):
                await topic.send(Message(self.body, METADATA))
            elapsed = self.elapsed(started)
            await topic.shutdown()
            return count / elapsed

        return asyncio.run(run())

    def raw_publish_sequential(self) -> float:
        """The baseline for one-at-a-time sends: one XADD per round trip."""
        stream = self.fresh("raw-single")
        count = min(self.n, 10_000)
        started = self.clock()
        for _ in range(count):
            self.raw.xadd(stream, {"headers": self.headers, "body": self.body})
        return count / (self.elapsed(started))

    def raw_publish_sequential_async(self) -> float:
        """The baseline for asyncio one-at-a-time sends: redis-py's asyncio client, one XADD per round trip."""
        stream = self.fresh("raw-async-single")
        count = min(self.n, 10_000)

        async def run() -> float:
            client = aredis.Redis(host="127.0.0.1", port=self.server.port, protocol=2)
            await client.ping()  # connected before the clock starts, as the others are
            started = self.clock()
            for _ in range(count):
                await client.xadd(stream, {"headers": self.headers, "body": self.body})
            elapsed = self.elapsed(started)
            await client.aclose()
            return count / elapsed

        return asyncio.run(run())

    def publish_sync_sequential(self) -> float:
        """Blocking send() one at a time, each waiting for its ID."""
        stream = self.fresh("sync-single")
        count = min(self.n, 10_000)
        topic = sync.open_topic(f"redis://{stream}", redis_url=self.url)
        started = self.clock()
        for _ in range(count):
            topic.send(Message(self.body, METADATA))
        elapsed = self.elapsed(started)
        topic.shutdown()
        return count / elapsed

    def publish_sync_batched(self) -> float:
        stream = self.fresh("sync")
        topic = sync.open_topic(f"redis://{stream}", redis_url=self.url)
        messages = [Message(self.body, METADATA) for _ in range(BATCH)]
        started = self.clock()
        for start in range(0, self.n, BATCH):
            topic.send_batch(messages[: min(BATCH, self.n - start)])
        elapsed = self.elapsed(started)
        topic.shutdown()
        return self.n / elapsed

    # -- consume ---------------------------------------------------------------------

    def raw_consume(self) -> float:
        stream = self.fresh("rawc")
        self.fill(stream)
        started = self.clock()
        done = 0
        while done < self.n:
            reply = self.raw.xreadgroup("g", "c", {stream: ">"}, count=BATCH)
            ids = [entry_id for entry_id, _ in reply[0][1]]
            self.raw.xack(stream, "g", *ids)
            done += len(ids)
        return self.n / (self.elapsed(started))

    def raw_consume_pipelined(self) -> float:
        """The baseline for consuming: each batch's XACK pipelined with the next XREADGROUP
        COUNT 200, one round trip per batch."""
        stream = self.fresh("rawp")
        self.fill(stream)
        started = self.clock()
        done = 0
        ids: list[bytes] = []
        while done < self.n:
            pipe = self.raw.pipeline(transaction=False)
            if ids:
                pipe.xack(stream, "g", *ids)
            pipe.xreadgroup("g", "c", {stream: ">"}, count=BATCH)
            reply = pipe.execute()[-1]
            ids = [entry_id for entry_id, _ in reply[0][1]]
            done += len(ids)
        self.raw.xack(stream, "g", *ids)
        rate = self.n / (self.elapsed(started))
        assert self.raw.xpending(stream, "g")["pending"] == 0
        return rate

    def consume(self) -> float:
        stream = self.fresh("consume")
        self.fill(stream)

        async def run() -> float:
            sub = await open_subscription(f"redis://g?topic={stream}&consumer=c", redis_url=self.url,
                                          batch_size=BATCH)
            started = self.clock()
            done = 0
            while done < self.n:
                batch = await sub.receive_batch(BATCH)
                sub.ack(*batch)
                done += len(batch)
            await sub.flush()
            elapsed = self.elapsed(started)
            await sub.shutdown()
            return self.n / elapsed

        rate = asyncio.run(run())
        assert self.raw.xpending(stream, "g")["pending"] == 0
        return rate

    def consume_one_by_one(self) -> float:
        """receive() + message.ack() per message, the way a simple handler loop looks."""
        stream = self.fresh("single-consume")
        self.fill(stream)

        async def run() -> float:
            sub = await open_subscription(f"redis://g?topic={stream}&consumer=c", redis_url=self.url,
                                          batch_size=BATCH)
            started = self.clock()
            for _ in range(self.n):
                message = await sub.receive()
                message.ack()
            await sub.flush()
            elapsed = self.elapsed(started)
            await sub.shutdown()
            return self.n / elapsed

        rate = asyncio.run(run())
        assert self.raw.xpending(stream, "g")["pending"] == 0
        return rate

    def consume_sync_one_by_one(self) -> float:
        """The blocking loop most services run: ``for m in sub: m.ack()``."""
        stream = self.fresh("sync-consume")
        self.fill(stream)
        sub = sync.open_subscription(f"redis://g?topic={stream}&consumer=c", redis_url=self.url, batch_size=BATCH)
        started = self.clock()
        done = 0
        for message in sub:
            message.ack()
            done += 1
            if done == self.n:
                break
        sub.flush()
        elapsed = self.elapsed(started)
        sub.shutdown()
        assert self.raw.xpending(stream, "g")["pending"] == 0
        return self.n / elapsed

    def consumer_rss(self) -> tuple[float, float]:
        """Peak RSS (MiB) of a process of its own running a blocking one-at-a-time consumer
        over the n messages, and of one that only imported redis-py (the baseline)."""
        stream = self.fresh("rss")
        self.fill(stream)
        consumer = subprocess.run([sys.executable, "-c", _RSS_CONSUMER, self.url, stream, str(self.n)],
                                  capture_output=True, text=True, check=True, timeout=600)
        baseline = subprocess.run([sys.executable, "-c", _RSS_BASELINE], capture_output=True, text=True,
                                  check=True, timeout=60)
        return float(consumer.stdout.split()[-1]), float(baseline.stdout.split()[-1])

    # -- latency ---------------------------------------------------------------------

    def latency(self, count: int = 2000) -> tuple[float, float]:
        """Publish→receive latency (ms) at ~1,000 msg/s: p50, p99."""
        stream = self.fresh("latency")

        async def run() -> list[float]:
            sub = await open_subscription(f"redis://g?topic={stream}&consumer=c&from=$", redis_url=self.url)
            topic = await open_topic(f"redis://{stream}", redis_url=self.url)
            samples: list[float] = []

            async def consume() -> None:
                while len(samples) < count:
                    for message in await sub.receive_batch(BATCH):
                        samples.append((time.perf_counter() - float(message.body)) * 1000)
                        message.ack()

            consumer = asyncio.create_task(consume())
            for _ in range(count):
                await topic.send(repr(time.perf_counter()))
                await asyncio.sleep(0.001)
            await consumer
            await topic.shutdown()
            await sub.shutdown()
            return samples

        samples = sorted(asyncio.run(run()))
        return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]

    # -- Go driver -------------------------------------------------------------------

    def go(self, client: GoClient, mode: str, concurrency: int) -> float:
        stream = self.fresh(f"go-{mode}")
        if mode == "publish":
            args = ["bench-publish", "-topic", f"redis://{stream}", "-n", str(self.n), "-size", str(len(self.body)),
                    "-concurrency", str(concurrency)]
        else:
            self.fill(stream)
            args = ["bench-receive", "-sub", f"redis://g?topic={stream}&consumer=c", "-n", str(self.n),
                    "-concurrency", str(concurrency)]
        result = client.run(*args, redis_url=self.url, timeout=600)
        if result.returncode != 0:
            raise RuntimeError(f"go {mode}: {result.stderr.strip()}")
        return float(json.loads(result.stdout.strip().splitlines()[-1])["rate"])


# Peak RSS read from VmHWM: ru_maxrss would include the parent's memory before exec.
_PEAK_RSS = """
def peak_rss_mib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
"""
_RSS_CONSUMER = _PEAK_RSS + """
import sys
from redistreams.pubsub import sync
url, stream, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
done = 0
with sync.open_subscription(f"redis://g?topic={stream}&consumer=rss", redis_url=url, batch_size=200) as sub:
    for message in sub:
        message.ack()
        done += 1
        if done == n:
            break
    sub.flush()
print(peak_rss_mib())
"""
_RSS_BASELINE = _PEAK_RSS + "import redis; print(peak_rss_mib())"


def best(rounds: int, measure: Callable[[], float], bench: Bench) -> tuple[float, float | None]:
    """Best throughput of the rounds, and the least CPU µs per message (None for the Go driver)."""
    rates: list[float] = []
    cpus: list[float] = []
    for _ in range(rounds):
        bench.last_cpu = None
        rate = measure()
        rates.append(rate)
        if bench.last_cpu is not None:
            cpus.append(bench.last_cpu / (rate * bench.last_elapsed) * 1e6)
    return max(rates), min(cpus) if cpus else None


def go_client() -> tuple[GoClient | None, str]:
    """The Go driver's client (built by hack/go-interop.sh on first use), or why not."""
    try:
        return GoClient(build_go_client(timeout=1800)), ""
    except (GoBuildError, OSError) as exc:
        lines = str(exc).strip().splitlines()
        return None, lines[-1] if lines else "build failed"


# (label, measured key, baseline key, target ratio): printed when both were measured.
RATIOS = [
    ("send_batch / raw pipeline", "publish_batched", "raw_publish", 0.5),
    ("receive_batch+ack / raw", "consume", "raw_consume", 0.5),
    ("blocking receive+ack one by one / raw pipelined", "consume_sync_single", "raw_consume_pipelined", 0.5),
    ("asyncio receive+ack one by one / raw pipelined", "consume_single", "raw_consume_pipelined", 0.75),
    ("blocking send one at a time / raw XADD one by one", "publish_sync_single", "raw_publish_single", 1.0),
    ("asyncio send one at a time / raw asyncio XADD", "publish_sequential", "raw_publish_single_async", 1.0),
    ("asyncio send one at a time / raw XADD one by one", "publish_sequential", "raw_publish_single", 1.0),
    ("send_batch / Go driver publish", "publish_batched", "go_publish", 2.0),
    ("receive_batch+ack / Go driver", "consume", "go_consume", 2.0),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--size", type=int, default=100, help="body bytes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-go", action="store_true", help="skip the Go driver")
    parser.add_argument("--only", default="", metavar="KEY,…",
                        help="measure only these keys (and their baselines), e.g. consume_sync_single,rss")
    args = parser.parse_args()
    only = {key for key in args.only.split(",") if key}
    only |= {baseline for _, key, baseline, _ in RATIOS if key in only}


    def wanted(key: str) -> bool:
        return not only or key in only

    client, why = (None, "--no-go") if args.no_go or not (wanted("go_publish") or wanted("go_consume")) \
        else go_client()
    server = RedisServer().start()
    try:
        bench = Bench(server, args.messages, args.size)
        print(f"{args.messages} messages of {args.size} bytes + metadata {METADATA}, best of {args.rounds}, "
              f"redis-server on loopback, batches of {BATCH}")
        figures: dict[str, float] = {}
        cpu: dict[str, float] = {}
        rows = [
            ("raw redis-py pipeline: XADD", "raw_publish", bench.raw_publish),
            ("redistreams send_batch", "publish_batched", bench.publish_batched),
            ("redistreams send, 200 concurrent tasks", "publish_concurrent", bench.publish_concurrent),
            ("raw redis-py: XADD one at a time", "raw_publish_single", bench.raw_publish_sequential),
            ("raw redis-py asyncio: XADD one at a time", "raw_publish_single_async",
             bench.raw_publish_sequential_async),
            ("redistreams send, one at a time", "publish_sequential", bench.publish_sequential),
            ("redistreams sync send, one at a time", "publish_sync_single", bench.publish_sync_sequential),
            ("redistreams sync send_batch", "publish_sync", bench.publish_sync_batched),
            ("raw redis-py: XREADGROUP + XACK", "raw_consume", bench.raw_consume),
            ("raw redis-py: XACK + XREADGROUP pipelined", "raw_consume_pipelined", bench.raw_consume_pipelined),
            ("redistreams receive_batch + ack", "consume", bench.consume),
            ("redistreams receive + ack, one by one", "consume_single", bench.consume_one_by_one),
            ("redistreams sync for m in sub: m.ack()", "consume_sync_single", bench.consume_sync_one_by_one),
        ]
        if client:
            rows += [
                ("Go driver publish (gocloud, 100 goroutines)", "go_publish", lambda: bench.go(client, "publish", 100)),
                ("Go driver receive + ack (10 goroutines)", "go_consume", lambda: bench.go(client, "receive", 10)),
            ]
        print(f"\n{'measurement':<48}{'msg/s':>12}{'CPU µs/msg':>12}")
        for label, key, measure in rows:
            if wanted(key):
                figures[key], used = best(args.rounds, measure, bench)
                if used is not None:
                    cpu[key] = used
                print(f"{label:<48}{figures[key]:>12,.0f}{'' if used is None else f'{used:12.2f}'}", flush=True)
        if wanted("latency"):
            p50, p99 = bench.latency()
            print(f"\npublish→receive latency at ~1,000 msg/s: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
        print("\nratios (same run):")
        for label, key, baseline, target in RATIOS:
            if key in figures and baseline in figures:
                ratio = figures[key] / figures[baseline]
                # The baseline's CPU per message over ours: the throughput ratio the CPU
                # alone allows, steadier than msg/s when other work shares the machine.
                by_cpu = f"   CPU-bound {cpu[baseline] / cpu[key]:.2f}" if key in cpu and baseline in cpu else ""
                print(f"  {label:<52}{ratio:>6.2f}  (target >= {target:g}){by_cpu}")
        if not client and wanted("go_publish"):
            print(f"  Go driver not measured: {why}")
        if wanted("rss"):
            consumer, baseline = bench.consumer_rss()
            print(f"\npeak RSS of a blocking one-by-one consumer of {args.messages} messages: {consumer:.1f} MiB "
                  f"(a process that only imported redis-py: {baseline:.1f} MiB; target <= 40)")
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"\npeak RSS of this process: {rss:.0f} MiB")
    finally:
        server.close()


if __name__ == "__main__":
    main()
