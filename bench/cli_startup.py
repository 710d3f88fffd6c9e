"""Start-up of the ``redistreams`` command: wall time and peak memory per process.

    python -m bench.cli_startup [--runs 15]

Each case is a fresh process of the installed entry point (what a shell completion, a
script or an init container starts), run ``--runs`` times, interleaved with the others so
a load spike on the machine hits every case alike. Printed beside two baselines from the
same run: ``python -c pass`` (the interpreter itself) and ``python -c "import redis"``
(redis-py alone); a third row is the import of pydantic and yaml alone, under which no
command reading manifests (``wait -f``) can start. The Redis cases run against a local redis-server where the stream and
group exist, so ``wait`` returns at its first check; "engine path" is ``wait`` as it ran
before its probe (a URL the probe leaves to the engine). Asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.redis_server import RedisServer

MANIFEST = """\
apiVersion: redistreams.dev/v1alpha1
kind: Topic
metadata: {name: orders}
spec: {streamName: orders}
---
apiVersion: redistreams.dev/v1alpha1
kind: ConsumerGroup
metadata: {name: billing}
spec: {topicRef: {name: orders}, groupName: billing}
"""


def entry_point() -> list[str]:
    installed = Path(sys.executable).parent / "redistreams"
    found = str(installed) if installed.exists() else shutil.which("redistreams")
    return [found] if found else [sys.executable, "-m", "redistreams.cli"]


TIME = shutil.which("time") or "/usr/bin/time"  # GNU time: peak RSS of its child alone


def run_once(command: list[str], env: dict[str, str], report: Path) -> tuple[float, int, int]:
    """(seconds, peak RSS in KiB, exit code) of one process. The RSS is GNU time's: a
    child forked from this (larger) process would count this one's pages too."""
    start = time.perf_counter()
    code = subprocess.call([TIME, "-f", "%M", "-o", str(report), *command], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, env=env)
    elapsed = time.perf_counter() - start
    return elapsed, int(report.read_text().split()[-1]), code


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15, help="process starts per case")
    args = parser.parse_args()

    server = RedisServer().start()
    folder = Path(tempfile.mkdtemp(prefix="redistreams-bench-"))
    try:
        client = server.client()
        client.xadd("orders", {"body": "x"})
        client.xgroup_create("orders", "billing", "0")
        manifest = folder / "orders.yaml"
        manifest.write_text(MANIFEST)
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "PYTHONDONTWRITEBYTECODE")}
        env["REDIS_URL"] = server.url
        # Bytecode cached, as in an installed package (pip compiles it; the image only stops
        # Python writing more): the warm-up runs write it here, outside the working tree.
        env["PYTHONPYCACHEPREFIX"] = str(folder / "pycache")
        cli = entry_point()
        cases: dict[str, list[str]] = {
            "python -c pass (baseline)": [sys.executable, "-c", "pass"],
            "python -c 'import redis' (baseline)": [sys.executable, "-c", "import redis"],
            # What reading manifests cannot start without: pydantic (the models validate
            # them), with importlib.metadata (pydantic imports it for its plugins) and yaml.
            "pydantic + yaml import (-f floor)": [sys.executable, "-c", "import pydantic.plugin._loader, yaml; "
                                                  "from pydantic import BaseModel, Field"],
            "--help": [*cli, "--help"],
            "--version": [*cli, "--version"],
            "wait --help": [*cli, "wait", "--help"],
            "wait --stream orders --group billing": [*cli, "wait", "--stream", "orders", "--group", "billing"],
            # The engine's path, as every wait ran before issue 14: a URL option the probe
            # leaves to the engine (socket_keepalive) makes it take over.
            "wait --stream (engine path, as before)": [*cli, "--redis-url", f"{server.url}?socket_keepalive=true",
                                                       "wait", "--stream", "orders", "--group", "billing"],
            "wait -f orders.yaml": [*cli, "wait", "-f", str(manifest)],
            "wait -f (engine path, as before)": [*cli, "--redis-url", f"{server.url}?socket_keepalive=true", "wait",
                                                 "-f", str(manifest)],
            "status orders": [*cli, "status", "orders"],
            "status": [*cli, "status"],
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        rss: dict[str, int] = {name: 0 for name in cases}
        for name, command in cases.items():  # one warm-up each: page cache, .pyc files
            _, _, code = run_once(command, env, folder / "rss")
            if code != 0:
                sys.exit(f"{name}: exit {code}")
        for _ in range(args.runs):
            for name, command in cases.items():
                seconds, peak, _ = run_once(command, env, folder / "rss")
                times[name].append(seconds)
                rss[name] = max(rss[name], peak)

        bare = statistics.median(times["python -c pass (baseline)"])
        redis_py = statistics.median(times["python -c 'import redis' (baseline)"])
        print(f"redistreams start-up: median of {args.runs} process starts per case, bytecode cached "
              f"({os.cpu_count()} CPUs, {os.getloadavg()[0]:.1f} load)")
        print(f"  {'case':40s} {'median':>8s} {'min':>8s} {'x python':>9s} {'x import redis':>15s} {'peak RSS':>9s}")
        for name, samples in times.items():
            median = statistics.median(samples)
            print(f"  {name:40s} {median * 1000:6.0f}ms {min(samples) * 1000:6.0f}ms {median / bare:8.2f}x "
                  f"{median / redis_py:14.2f}x {rss[name] / 1024:7.1f}MB")
    finally:
        server.close()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
