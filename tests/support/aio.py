"""Coroutines with a deadline, for the pub/sub tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


def run(factory: Callable[[], Awaitable[Any]], within: float = 60) -> Any:
    """Runs ``factory()`` in a fresh event loop; a hang fails the test instead of CI."""
    return asyncio.run(asyncio.wait_for(factory(), within))
