"""`redistreams apply`/`plan` end to end (start-up, parse, validate, Redis, output) on
10,000 Topics x 3 ConsumerGroups, beside bench/apply_baseline.py: libyaml parsing and the
same commands through a raw redis-py pipeline, also run as its own interpreter.

    python -m bench.apply_cli [--topics 10000] [--groups 3] [--per-file 100] [--rounds 3]

Each round starts a fresh redis-server for the CLI and another for the baseline and runs,
in order, each step by both: plan (everything to create), apply (first), apply (no-op
re-apply), plan (in sync). Prints the best wall time of each, the ratio CLI/baseline and each process' peak
RSS. Asserts nothing about time; checks only that both printed a line per resource (the
CLI's plan also prints the changing fields under each; the baseline does not).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.redis_server import RedisServer

BASELINE = Path(__file__).with_name("apply_baseline.py")
STEPS = (("plan", "plan (all to create)", 1), ("apply", "apply (first)", 0),
         ("apply", "apply (no-op re-apply)", 0), ("plan", "plan (in sync)", 0))


def write_manifests(folder: Path, topics: int, groups: int, per_file: int) -> None:
    """Block-style YAML as people write it, ``per_file`` Topics (and their groups) a file."""
    for first in range(0, topics, per_file):
        docs = []
        for i in range(first, min(first + per_file, topics)):
            docs.append(f"apiVersion: redistreams.dev/v1alpha1\nkind: Topic\nmetadata:\n  name: topic-{i}\n"
                        f"  labels:\n    team: bench\nspec:\n  streamName: bench/topic/{i}\n")
            for j in range(groups):
                docs.append(f"apiVersion: redistreams.dev/v1alpha1\nkind: ConsumerGroup\nmetadata:\n"
                            f"  name: topic-{i}-group-{j}\nspec:\n  topicRef:\n    name: topic-{i}\n"
                            f"  groupName: group-{j}\n")
        (folder / f"topics-{first:06d}.yaml").write_text("---\n".join(docs))


def cli_command() -> list[str]:
    script = Path(sys.executable).with_name("redistreams")
    return [str(script)] if script.exists() else [sys.executable, "-m", "redistreams.cli"]


def run(argv: list[str], expect: int, lines: int) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS in MiB) of one process; its output goes to a
    file, as to a pipe. CPU time is the steadier figure on a loaded machine."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(argv, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        # A line per resource; plan's field lines under one (indented 4) are not counted.
        printed = sum(1 for line in out.read().splitlines() if not line.startswith(b"    "))
        if process.returncode != expect or printed != lines:
            err.seek(0)
            raise SystemExit(f"{argv[:3]}: exit {process.returncode} (expected {expect}), {printed} lines "
                             f"(expected {lines}): {err.read()[-2000:].decode(errors='replace')}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topics", type=int, default=10_000)
    parser.add_argument("--groups", type=int, default=3)
    parser.add_argument("--per-file", type=int, default=100, help="Topics (with their groups) per file")
    parser.add_argument("--rounds", type=int, default=3, help="best of N for each measurement")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="redistreams-bench-cli-"))
    try:
        write_manifests(folder, args.topics, args.groups, args.per_file)
        resources = args.topics * (1 + args.groups)
        files = len(list(folder.iterdir()))
        size = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
        print(f"{args.topics} topics x {args.groups} groups = {resources} resources in {files} files ({size:.1f} MiB)")
        best: dict[tuple[str, str], float] = {}
        cpu: dict[tuple[str, str], float] = {}
        rss: dict[tuple[str, str], float] = {}
        for _ in range(args.rounds):
            servers = {"cli": RedisServer().start(), "baseline": RedisServer().start()}
            try:
                for command, step, expect in STEPS:
                    # Each step by both, one right after the other: a machine whose load
                    # changes meanwhile skews the ratio less.
                    for who, server in servers.items():
                        if who == "cli":
                            argv = [*cli_command(), "--redis-url", server.url, command, "-f", str(folder)]
                        else:
                            argv = [sys.executable, str(BASELINE), command, str(folder), server.url]
                        seconds, cpu_seconds, peak = run(argv, expect, resources)
                        best[who, step] = min(best.get((who, step), float("inf")), seconds)
                        cpu[who, step] = min(cpu.get((who, step), float("inf")), cpu_seconds)
                        rss[who, step] = max(rss.get((who, step), 0.0), peak)
            finally:
                for server in servers.values():
                    server.close()
        print(f"\n{'end to end (best of ' + str(args.rounds) + ')':<26}{'wall: cli':>10}{'baseline':>9}{'ratio':>7}"
              f"{'cpu: cli':>10}{'baseline':>9}{'ratio':>7}{'RSS: cli':>10}{'baseline':>9}")
        for _, step, _ in STEPS:
            wall, base = best["cli", step], best["baseline", step]
            cli_cpu, base_cpu = cpu["cli", step], cpu["baseline", step]
            print(f"{step:<26}{wall:>9.2f}s{base:>8.2f}s{wall / base:>6.2f}x{cli_cpu:>9.2f}s{base_cpu:>8.2f}s"
                  f"{cli_cpu / base_cpu:>6.2f}x{rss['cli', step]:>7.0f}MiB{rss['baseline', step]:>6.0f}MiB")
        print("(cpu: user + system time of the process itself; Redis' work is the same for both)")
        print("\ntarget: ratio <= 1.5x (issue 14)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
