"""Apply 10,000 Topics x 3 ConsumerGroups; compare the engine's Redis phase with a raw
redis-py pipeline that issues the same commands, measured in the same run.

    python -m bench.apply [--topics 10000] [--groups 3] [--rounds 3]

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import time
from pathlib import Path

from redistreams.connection import RedisTarget
from redistreams.engine import Engine, intents_from
from redistreams.engine.ownership import OwnerRecord, group_field, topic_field
from redistreams.engine.scripts import INIT_GROUP
from redistreams.manifests import load
from tests.support.redis_server import RedisServer


def manifests(path: Path, topics: int, groups: int) -> None:
    docs = []
    for i in range(topics):
        docs.append({"apiVersion": "redistreams.dev/v1alpha1", "kind": "Topic", "metadata": {"name": f"topic-{i}"},
                     "spec": {"streamName": f"bench/topic/{i}"}})
        for j in range(groups):
            docs.append({"apiVersion": "redistreams.dev/v1alpha1", "kind": "ConsumerGroup",
                         "metadata": {"name": f"topic-{i}-group-{j}"},
                         "spec": {"topicRef": {"name": f"topic-{i}"}, "groupName": f"group-{j}"}})
    path.write_text("\n---\n".join(json.dumps(d) for d in docs))


def baseline(client, topic_intents, group_intents, chunk: int = 500, batch: int = 5000,
             noop: bool = False) -> tuple[float, int]:
    """The same commands the engine sends, pipelined by hand. Returns (seconds, round trips).
    The cyclic collector is paused as the engine pauses it, so neither pays for it."""
    gc.disable()
    try:
        return _baseline(client, topic_intents, group_intents, chunk, batch, noop)
    finally:
        gc.enable()


def _baseline(client, topic_intents, group_intents, chunk: int, batch: int, noop: bool) -> tuple[float, int]:
    start, trips = time.perf_counter(), 0
    keys = [t.stream for t in topic_intents]
    fields_by_key: dict[str, list[str]] = {k: [topic_field(k)] for k in keys}
    for g in group_intents:
        fields_by_key[g.stream].append(group_field(g.stream, g.group))
    for i in range(0, len(keys), chunk):
        pipe = client.pipeline(transaction=False)
        part = keys[i : i + chunk]
        for key in part:
            pipe.xinfo_stream(key)
            pipe.xinfo_groups(key)
        pipe.hmget("redistreams:owners", [f for k in part for f in fields_by_key[k]])
        if i == 0:
            pipe.time()
        pipe.execute(raise_on_error=False)
        trips += 1
    if noop:
        return time.perf_counter() - start, trips
    claims = [(topic_field(t.stream), OwnerRecord(t.owner, True).encode()) for t in topic_intents]
    claims += [(group_field(g.stream, g.group), OwnerRecord(g.owner, True).encode()) for g in group_intents]
    for i in range(0, len(claims), batch):
        pipe = client.pipeline(transaction=False)
        for f, v in claims[i : i + batch]:
            pipe.hsetnx("redistreams:owners", f, v)
        pipe.execute()
        trips += 1
    actions = [("stream", t.stream, None) for t in topic_intents]
    actions += [("group", g.stream, g.group) for g in group_intents]
    for i in range(0, len(actions), batch):
        pipe = client.pipeline(transaction=False)
        for kind, key, name in actions[i : i + batch]:
            if kind == "stream":  # an empty stream: the same two commands the claim script runs
                pipe.xgroup_create(key, INIT_GROUP, "$", mkstream=True)
                pipe.xgroup_destroy(key, INIT_GROUP)
            else:
                pipe.xgroup_create(key, name, "$", mkstream=True)
        pipe.execute()
        trips += 1
    return time.perf_counter() - start, trips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topics", type=int, default=10_000)
    parser.add_argument("--groups", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="best of N for each measurement")
    args = parser.parse_args()

    work = Path("/tmp/redistreams-bench")
    work.mkdir(exist_ok=True)
    path = work / "manifests.yaml"
    manifests(path, args.topics, args.groups)

    t0 = time.perf_counter()
    loaded = load([str(path)])
    topic_intents, group_intents = intents_from(
        loaded.topics, [(g, loaded.topic_for(g)) for g in loaded.groups], "bench"
    )
    parse_s = time.perf_counter() - t0
    resources = len(topic_intents) + len(group_intents)
    print(f"{args.topics} topics x {args.groups} groups = {resources} resources; "
          f"parse + validate {parse_s:.2f}s ({resources / parse_s:,.0f}/s)")

    best: dict[str, float] = {}
    stats: dict[str, tuple[int, int, int, int]] = {}

    def record(name: str, seconds: float) -> None:
        best[name] = min(best.get(name, float("inf")), seconds)

    for _ in range(args.rounds):
        server = RedisServer().start()
        try:
            engine = Engine(RedisTarget(server.url).client())
            for name, outcome in (("engine first apply", "created"), ("engine no-op re-apply", "unchanged")):
                engine.stats.reset()
                dirty = server.dirty()
                t = time.perf_counter()
                results = engine.reconcile(topic_intents, group_intents)
                record(name, time.perf_counter() - t)
                assert all(r.outcome == outcome for r in results)
                stats[name] = (engine.stats.round_trips, engine.stats.commands, engine.stats.writes,
                               server.dirty() - dirty)
        finally:
            server.close()
        server = RedisServer().start()
        try:
            client = RedisTarget(server.url).client()
            seconds, trips = baseline(client, topic_intents, group_intents)
            record("baseline first apply", seconds)
            stats["baseline first apply"] = (trips, 0, 0, 0)
            seconds, trips = baseline(client, topic_intents, group_intents, noop=True)
            record("baseline no-op re-apply", seconds)
            stats["baseline no-op re-apply"] = (trips, 0, 0, 0)
        finally:
            server.close()

    print(f"\n{'measurement (best of ' + str(args.rounds) + ')':<32}{'seconds':>9}{'round trips':>13}"
          f"{'commands':>10}{'writes':>8}{'dirty':>7}")
    for name in ("engine first apply", "baseline first apply", "engine no-op re-apply", "baseline no-op re-apply"):
        trips, commands, writes, dirty = stats[name]
        extra = f"{commands:>10}{writes:>8}{dirty:>7}" if name.startswith("engine") else ""
        print(f"{name:<32}{best[name]:>9.3f}{trips:>13}{extra}")
    first = best["engine first apply"] / best["baseline first apply"]
    noop = best["engine no-op re-apply"] / best["baseline no-op re-apply"]
    print(f"\nratio engine/baseline: first apply {first:.2f}x, no-op re-apply {noop:.2f}x (target <= 3x)")
    print(f"no-op re-apply writes: {stats['engine no-op re-apply'][2]} commands, "
          f"{stats['engine no-op re-apply'][3]} Redis dirty changes (target 0)")
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
