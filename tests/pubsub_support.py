"""Shared by the pub/sub tests: run a coroutine with a deadline."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable


def run(factory: Callable[[], Awaitable[Any]], within: float = 60) -> Any:
    """Runs ``factory()`` in a fresh event loop; a hang fails the test instead of CI."""
    return asyncio.run(asyncio.wait_for(factory(), within))
