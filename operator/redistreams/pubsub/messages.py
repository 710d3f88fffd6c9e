"""What publishers and subscribers share: messages, errors and a few helpers.

The bottom of the client: imports nothing above it, so ``publisher``, ``subscriber`` and
the subscriber's parts (``acks``, ``deadletter``, ``resets``) all build on it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..connection import redact
from .wire import encode_body

log = logging.getLogger("redistreams.pubsub")

MAX_TRIP = 1000  # commands or IDs per round trip


class PubSubError(Exception):
    """Opening, publishing or subscribing failed for a reason retrying will not fix."""


class PublishError(PubSubError):
    """Some messages of a batch were not stored; ``ids`` has None where a send failed."""

    def __init__(self, message: str, ids: list[str | None]) -> None:
        super().__init__(message)
        self.ids = ids


class ConsumerInUseError(PubSubError):
    pass


class SubscriptionClosed(PubSubError):
    pass


class GroupDeletedError(PubSubError):
    """The consumer group was deleted while its stream kept its history (``XGROUP
    DESTROY``, a group removed by redistreams). Not re-created: that would replay every
    entry the group had already acknowledged. Raised by ``receive`` from then on."""

    def __init__(self, message: str, stream: str, group: str) -> None:
        super().__init__(message)
        self.stream, self.group = stream, group


class AcknowledgeError(PubSubError):
    """Redis refused acknowledgements, nacks or lease renewals (e.g. the ACL user lacks
    XACK or XCLAIM). The entries concerned stay pending and are delivered again; ``ids``
    lists those whose ack or nack was refused. Raised by ``receive`` and ``flush`` from
    then on: handing out messages that cannot be acknowledged would only multiply
    redeliveries. Grant the command and reopen the subscription."""

    def __init__(self, message: str, command: str, ids: list[str]) -> None:
        super().__init__(message)
        self.command, self.ids = command, ids


class DeadLetterError(PubSubError):
    """Entries could not be copied to the dead-letter stream; they stay pending.

    ``ids`` maps each entry ID to Redis' error (e.g. no XADD permission, a dead-letter
    key holding another type). Kept in ``Subscription.dead_letter_error`` until a later
    move succeeds; receiving goes on meanwhile.
    """

    def __init__(self, message: str, stream: str, ids: dict[str, str]) -> None:
        super().__init__(message)
        self.stream, self.ids = stream, ids


@dataclass(slots=True)
class Message:
    """A message: raw body bytes and string metadata (the Go driver's ``headers``)."""

    body: bytes
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if type(self.body) is not bytes:
            self.body = encode_body(self.body)
        if type(self.metadata) is not dict:
            self.metadata = dict(self.metadata or {})


class Acknowledger(Protocol):
    """What a received message needs from the subscription that delivered it."""

    def ack(self, *messages: ReceivedMessage | str) -> None: ...

    def ack_message(self, message: ReceivedMessage) -> None: ...

    def nack(self, *messages: ReceivedMessage | str) -> None: ...


class ReceivedMessage(Message):
    """A delivered message; acknowledge it (or nack it) through its subscription.

    Built once per delivered entry, so a plain slotted class rather than a dataclass
    (same fields, same repr and equality). Headers seen before come parsed from
    ``wire``'s cache, shared: ``metadata`` copies them at first access, so a handler
    that never reads metadata never pays for the copy.
    """

    __slots__ = ("id", "redelivered", "problem", "subscription", "_metadata", "_shared")

    def __init__(self, body: bytes, metadata: dict[str, str] | None = None, id: str = "",  # noqa: A002
                 redelivered: bool = False, problem: str | None = None,
                 subscription: Acknowledger | None = None, shared_metadata: dict[str, str] | None = None) -> None:
        if type(body) is not bytes:
            body = encode_body(body)
        self.body = body
        if shared_metadata is None:  # given by the application: owned, copied only when not a dict
            self._metadata: dict[str, str] | None = metadata if type(metadata) is dict else dict(metadata or {})
        else:
            self._metadata = None
        self._shared = shared_metadata  # parsed headers shared with other messages: never mutated
        self.id = id
        self.redelivered = redelivered  # taken from a pending list rather than read new
        self.problem = problem  # set when the entry was not in the driver's format
        self.subscription = subscription

    @property  # a property here, a dataclass field in Message
    def metadata(self) -> dict[str, str]:
        metadata = self._metadata
        if metadata is None:
            assert self._shared is not None
            metadata = self._metadata = dict(self._shared)
        return metadata

    @metadata.setter
    def metadata(self, value: dict[str, str]) -> None:
        self._metadata = value

    def __repr__(self) -> str:
        return (f"ReceivedMessage(body={self.body!r}, metadata={self.metadata!r}, id={self.id!r}, "
                f"redelivered={self.redelivered!r}, problem={self.problem!r})")

    def ack(self) -> None:
        assert self.subscription is not None
        self.subscription.ack_message(self)

    def nack(self) -> None:
        assert self.subscription is not None
        self.subscription.nack(self)


# ---------------------------------------------------------------------------------------
# Helpers


def redis_url_for(explicit: str | None, what: str, url: str) -> str:
    """``explicit``, else ``REDIS_URL``; ``what`` and ``url`` name the topic or subscription."""
    value = explicit or os.environ.get("REDIS_URL")
    if not value:
        raise PubSubError(f"open {what} {redact(url)}: REDIS_URL environment variable not set")
    return value


def backoff_delay(attempt: int) -> float:
    """Seconds to wait before retry number ``attempt`` (0, 1, …): doubling, jittered, at most 2 s."""
    return min(2.0, 0.05 * 2.0 ** attempt) * (0.5 + random.random() / 2)


async def backoff(attempt: int) -> None:
    await asyncio.sleep(backoff_delay(attempt))


class Retries:
    """The retry rule of one round trip, without I/O (the asyncio and the blocking publisher
    both follow it): a connection failure is retried, with backoff, until ``retry_for``
    seconds have passed or the publisher is closed."""

    def __init__(self, what: str, retry_for: float) -> None:
        self._what = what
        self._deadline = time.monotonic() + retry_for
        self._attempt = 0

    def delay(self, failure: BaseException, closed: bool) -> float | None:
        """Seconds to wait before trying again after ``failure``; None: give up (raise it)."""
        if time.monotonic() >= self._deadline or closed:
            return None
        log.warning("%s: %s; retrying", self._what, failure)
        self._attempt += 1
        return backoff_delay(self._attempt - 1)


_ERROR_LOG_INTERVAL = 60.0  # seconds between two logs of one recurring failure


class Throttled:
    """Logs a recurring failure at most once per interval, so a permanent
    misconfiguration reports itself without flooding the logs."""

    def __init__(self, interval: float = _ERROR_LOG_INTERVAL) -> None:
        self.interval = interval
        self._next = 0.0
        self._quiet = 0

    def error(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now < self._next:
            self._quiet += 1
            return
        if self._quiet:
            message, args = message + " (%d more failures since the last report)", (*args, self._quiet)
        log.error(message, *args)
        self._quiet, self._next = 0, now + self.interval


def id_key(entry_id: str | bytes) -> tuple[int, int]:
    """An entry ID as a comparable pair."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def id_text(key: tuple[int, int]) -> str:
    return f"{key[0]}-{key[1]}"


def format_ids(ids: list[Any], limit: int = 5) -> str:
    """The first IDs of a list, for a log line."""
    shown = ", ".join(i.decode() if isinstance(i, bytes) else str(i) for i in ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")
