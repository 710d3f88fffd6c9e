"""The real Go driver (github.com/covrom/redispubsub, through gocloud.dev/pubsub) as a
subprocess: ``hack/go-interop.sh`` builds tests/interop/goclient once into a cache
outside the repository; ``build_go_client()`` returns its path, ``GoClient`` runs it with
REDIS_URL set. Used by the interop tests (the ``go_client`` fixture) and bench/pubsub.py."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "hack" / "go-interop.sh"
BUILD_TIMEOUT = 900  # a cold build downloads modules: about 1 min, more on slow links
NO_GO_EXIT = 3  # go-interop.sh: no Go toolchain found


class GoBuildError(RuntimeError):
    """hack/go-interop.sh gave no binary; ``no_toolchain``: because there is no Go."""

    def __init__(self, message: str, *, no_toolchain: bool = False) -> None:
        super().__init__(message)
        self.no_toolchain = no_toolchain


class GoClientError(AssertionError):
    """The Go client exited non-zero; the message carries its stderr."""


def build_go_client(timeout: float = BUILD_TIMEOUT) -> str:
    """Builds the Go client if it is not cached yet; returns the binary's path."""
    try:
        proc = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True,
                              timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr or b""
        err = err.decode(errors="replace") if isinstance(err, bytes) else err
        raise GoBuildError(f"{BUILD_SCRIPT} did not finish in {timeout} s:\n{err}") from exc
    if proc.returncode == NO_GO_EXIT:
        raise GoBuildError(f"no Go toolchain to build the Go driver client: {proc.stderr.strip()}",
                           no_toolchain=True)
    if proc.returncode != 0:
        raise GoBuildError(f"{BUILD_SCRIPT} failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
    lines = proc.stdout.strip().splitlines()
    if not lines or not os.access(lines[-1], os.X_OK):
        raise GoBuildError(f"{BUILD_SCRIPT} printed no usable binary path:\n{proc.stdout}{proc.stderr}")
    return lines[-1]


class GoClient:
    """Runs the goclient binary; every call gets REDIS_URL=``redis_url`` (None: unset)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def run(self, *args: str, redis_url: str | None, input: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        env.pop("REDIS_URL", None)
        if redis_url is not None:
            env["REDIS_URL"] = redis_url
        return subprocess.run([self.path, *args], input=input, capture_output=True, text=True,
                              timeout=timeout, env=env)

    def _check(self, proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
        if proc.returncode != 0:
            raise GoClientError(f"goclient {proc.args[1]} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def publish(self, redis_url: str, topic_url: str,
                messages: Iterable[tuple[bytes, dict[str, str] | None]], timeout: float = 60) -> list[str]:
        """Sends the messages in order, one at a time; returns the entry IDs."""
        lines = "".join(
            json.dumps({"body": base64.b64encode(body).decode(), "metadata": metadata}) + "\n"
            for body, metadata in messages)
        proc = self._check(self.run("publish", "-topic", topic_url, redis_url=redis_url,
                                    input=lines, timeout=timeout))
        return [json.loads(line)["id"] for line in proc.stdout.splitlines()]

    def receive(self, redis_url: str, sub_url: str, n: int, timeout: float = 30,
                noack: bool = False, raw: bool = False) -> list[dict[str, Any]]:
        """Receives n distinct entries (``raw``: n deliveries, re-deliveries included).

        Each: ``body`` bytes, ``metadata`` dict or None (gocloud gives None for empty
        metadata too), ``id`` entry ID, ``loggable_id``, ``fields`` the raw entry fields
        as bytes. Acked unless ``noack``.
        """
        args = ["receive", "-sub", sub_url, "-n", str(n), "-timeout", f"{timeout}s"]
        if noack:
            args.append("-noack")
        if raw:
            args.append("-raw")
        proc = self._check(self.run(*args, redis_url=redis_url, timeout=timeout + 30))
        out = []
        for line in proc.stdout.splitlines():
            msg = json.loads(line)
            msg["body"] = base64.b64decode(msg["body"])
            msg["fields"] = {k: base64.b64decode(v) for k, v in (msg.get("fields") or {}).items()}
            out.append(msg)
        return out

    def open_topic(self, redis_url: str | None, url: str) -> tuple[int, str]:
        proc = self.run("open-topic", "-topic", url, redis_url=redis_url)
        return proc.returncode, proc.stderr

    def open_sub(self, redis_url: str | None, url: str) -> tuple[int, str]:
        proc = self.run("open-sub", "-sub", url, redis_url=redis_url)
        return proc.returncode, proc.stderr

    def json_headers(self, metadata: Iterable[dict[str, str] | None]) -> list[bytes]:
        """The exact ``headers`` bytes the driver writes for each metadata (None: nil map)."""
        lines = "".join(json.dumps(m) + "\n" for m in metadata)
        proc = self._check(self.run("json-headers", redis_url=None, input=lines))
        return [base64.b64decode(line) for line in proc.stdout.splitlines()]
