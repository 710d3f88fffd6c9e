"""Reading a stream without a consumer group: sees what is published, moves no group,
creates nothing. For debugging (``redistreams sub`` without ``--group``).

Blocking, on a plain redis-py client: it needs no background work, unlike the
subscriptions of ``sync``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from ..cluster import resolve
from ..connection import RedisTarget, SeedClient, default_url
from ..printable import wire
from .messages import ReceivedMessage
from .wire import decode_fields

BATCH = 100  # entries per XREAD
POLL_MS = 1000  # longest XREAD block, so an idle limit is checked at least this often


def peek(
    stream: str,
    *,
    redis_url: str | None = None,
    start: str = "$",
    count: int = 0,
    idle: float | None = None,
    timeout: float = 10.0,
) -> Iterator[ReceivedMessage]:
    """The messages of ``stream`` after ``start`` (``$``: only those published from now),
    decoded like a subscription's (``problem`` set for entries not in the driver's format;
    they cannot be acknowledged: no group reads them).

    Stops after ``count`` entries (0: never) or when none arrived for ``idle`` seconds.
    ``redis_url`` defaults to ``$REDIS_URL``, else the local server.
    ``ConnectionConfigError`` for an unusable URL, redis-py's errors for Redis failures.
    """
    seed = RedisTarget(redis_url or default_url(), socket_timeout=timeout).client(decode_responses=False)
    client = resolve(seed) if isinstance(seed, SeedClient) else seed  # a cluster client on Redis Cluster
    key = wire(stream)
    cursor, seen = start, 0
    if cursor == "$":
        # Resolved once, so entries published between two reads are not skipped.
        info: Any = client.xinfo_stream(key) if client.exists(key) else None
        cursor = info["last-generated-id"].decode() if info else "0-0"
    deadline = None if idle is None else time.monotonic() + idle
    while not count or seen < count:
        block = POLL_MS if deadline is None else max(1, int(min(1.0, deadline - time.monotonic()) * 1000))
        reply: Any = client.xread({key: cursor}, count=min(BATCH, count - seen) if count else BATCH, block=block)
        for _, entries in reply or []:
            for raw_id, fields in entries:
                cursor = raw_id.decode()
                seen += 1
                decoded = decode_fields([x for pair in fields.items() for x in pair])
                if decoded is not None:  # XREAD returns only live entries, each with fields
                    yield ReceivedMessage(decoded.body, decoded.metadata, id=cursor, problem=decoded.problem)
            if idle is not None:
                deadline = time.monotonic() + idle
        if deadline is not None and time.monotonic() >= deadline:
            return
