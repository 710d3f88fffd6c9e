"""The `redistreams` CLI run like a user would: a subprocess of this interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class CLI:
    """Runs the installed ``redistreams`` entry point like a user would."""

    def __init__(self, url: str | None) -> None:
        self.url = url

    def __call__(self, *args: str, input: str | None = None, url: str | None = None,
                 timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        full_env = dict(os.environ)
        full_env.pop("REDIS_URL", None)
        if env:
            full_env.update(env)
        cmd = [sys.executable, "-m", "redistreams.cli"]
        target = url or self.url
        if target:
            cmd += ["--redis-url", target]
        return subprocess.run(cmd + list(args), input=input, capture_output=True, text=True,
                              timeout=timeout, env=full_env, cwd=ROOT)
