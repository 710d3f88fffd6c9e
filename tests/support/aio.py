"""Coroutines with a deadline, for the pub/sub tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from redistreams.pubsub import Message, open_subscription, open_topic


def run(factory: Callable[[], Awaitable[Any]], within: float = 60) -> Any:
    """Runs ``factory()`` in a fresh event loop; a hang fails the test instead of CI."""
    return asyncio.run(asyncio.wait_for(factory(), within))


async def send_and_receive(redis_url: str, stream: str, messages: list[Message]) -> list[bytes]:
    """Publishes ``messages`` on ``stream`` and consumes them (group "g", acknowledged)
    with the asyncio client; returns the bodies in the order received."""
    sub = await open_subscription(f"redis://g?topic={stream}&consumer=c1", redis_url=redis_url)
    async with await open_topic(f"redis://{stream}", redis_url=redis_url) as topic:
        await topic.send_batch(messages)
    got: list[bytes] = []
    while len(got) < len(messages):
        for message in await sub.receive_batch(10, timeout=5):
            got.append(message.body)
            message.ack()
    await sub.shutdown()
    return got
