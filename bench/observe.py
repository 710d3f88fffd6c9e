"""Cost of one operator observation pass (the stream metrics): 1,000 streams x 3 groups x
2 consumers, every group with pending entries. Compares the engine's observe (what the
operator runs every --observe-interval) with a raw redis-py pipeline of the same
commands and with one-command-at-a-time reads (how redis_exporter reads streams), all
measured in the same run, plus Redis' own CPU time per pass (INFO commandstats).

    python -m bench.observe [--streams 1000] [--groups 3] [--rounds 5]

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import time

from redistreams.controller.samples import stream_rows
from redistreams.engine import Engine
from redistreams.engine.ownership import topic_field
from tests.support.redis_server import RedisServer


def populate(r, streams: int, groups: int) -> list[str]:
    keys = [f"bench/obs/{i}" for i in range(streams)]
    for start in range(0, streams, 100):
        pipe = r.pipeline(transaction=False)
        for key in keys[start : start + 100]:
            for g in range(groups):
                pipe.xgroup_create(key, f"group-{g}", "$", mkstream=True)
            for n in range(50):
                pipe.xadd(key, {"headers": "null", "body": str(n)})
            for g in range(groups):
                for c in range(2):
                    pipe.xreadgroup(f"group-{g}", f"consumer-{c}", {key: ">"}, count=10)
        pipe.execute()
    return keys


def engine_pass(engine: Engine, keys: list[str]) -> tuple[float, int, int]:
    """What the operator does per pass for one Redis: observe with details and consumers,
    then turn states into metric rows. Returns (seconds, round trips, samples)."""
    trips = engine.stats.round_trips
    start = time.perf_counter()
    states = engine.observe(keys, detail_keys=keys, consumer_keys=keys)
    samples = sum(len(stream_rows(s, "db0", "bench", s.key)) for s in states.values())
    return time.perf_counter() - start, engine.stats.round_trips - trips, samples


def raw_pass(r, keys: list[str], chunk: int = 500) -> tuple[float, int]:
    """The same commands pipelined by hand, replies not interpreted."""
    start, trips = time.perf_counter(), 0
    for i in range(0, len(keys), chunk):
        part = keys[i : i + chunk]
        pipe = r.pipeline(transaction=False)
        for key in part:
            pipe.xinfo_stream(key)
            pipe.xinfo_groups(key)
        pipe.hmget("redistreams:owners", [topic_field(k) for k in part])
        pipe.time()
        replies = pipe.execute(raise_on_error=False)
        trips += 1
        pipe = r.pipeline(transaction=False)
        for n, key in enumerate(part):
            for g in replies[2 * n + 1]:
                if g["pending"]:
                    pipe.xpending_range(key, g["name"], "-", "+", 1)
                if g["consumers"]:
                    pipe.xinfo_consumers(key, g["name"])
        pipe.execute(raise_on_error=False)
        trips += 1
    return time.perf_counter() - start, trips


def one_by_one(r, keys: list[str]) -> tuple[float, int]:
    """A round trip per command, as a per-scrape exporter reads streams."""
    start, trips = time.perf_counter(), 0
    for key in keys:
        r.xinfo_stream(key)
        groups = r.xinfo_groups(key)
        trips += 2
        for g in groups:
            r.xinfo_consumers(key, g["name"])
            trips += 1
    return time.perf_counter() - start, trips


def server_usec(r) -> int:
    stats = r.info("commandstats")
    return sum(int(v["usec"]) for v in stats.values())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--groups", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    server = RedisServer().start()
    try:
        r = server.client()
        keys = populate(r, args.streams, args.groups)
        engine = Engine(server.client(), target="bench")
        best: dict[str, tuple[float, int]] = {}
        cpu: dict[str, int] = {}
        samples = 0
        for _ in range(args.rounds):
            for name, run in (("engine", lambda: engine_pass(engine, keys)),
                              ("raw pipeline", lambda: raw_pass(r, keys)),
                              ("one by one", lambda: one_by_one(r, keys))):
                r.config_resetstat()
                result = run()
                used = server_usec(r)
                if name == "engine":
                    samples = result[2]
                if name not in best or result[0] < best[name][0]:
                    best[name] = result[:2]
                    cpu[name] = used
        consumers = args.streams * args.groups * 2
        print(f"observation pass: {args.streams} streams, {args.streams * args.groups} groups "
              f"(all with pending entries), {consumers} consumers; {samples} metric samples; "
              f"best of {args.rounds}")
        for name, (seconds, trips) in best.items():
            print(f"  {name:13s} {seconds * 1000:8.1f} ms  {trips:5d} round trips  "
                  f"Redis CPU {cpu[name] / 1000:6.1f} ms")
        print(f"  engine / raw pipeline: {best['engine'][0] / best['raw pipeline'][0]:.2f}x")
    finally:
        server.close()


if __name__ == "__main__":
    main()
