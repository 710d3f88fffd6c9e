"""Telling a reset stream from a deleted group, once a subscription's group is missing.

A stream reset (Redis restarted without persistence, FLUSHALL, the key deleted) takes
its groups with it: the group is re-created from ``0``, so nothing published since is
missed. A group deleted while its stream kept its history must not be: re-created from
``0`` it would replay everything it had acknowledged. ``StreamHistory`` holds what the
subscription knew of the stream, and judges; the subscription acts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.exceptions import ResponseError

from .link import RoundTrips
from .messages import GroupDeletedError, PubSubError, id_key, id_text, log


@dataclass(frozen=True, slots=True)
class StreamState:
    """What XINFO STREAM tells about a stream (entries_added is None before Redis 7)."""

    last_id: tuple[int, int]
    length: int
    entries_added: int | None
    first_id: tuple[int, int] | None

    @classmethod
    def parse(cls, reply: list[Any]) -> StreamState:
        fields = dict(zip(reply[::2], reply[1::2]))
        first = fields.get(b"first-entry")
        added = fields.get(b"entries-added")
        return cls(last_id=id_key(fields[b"last-generated-id"]), length=int(fields[b"length"]),
                   entries_added=None if added is None else int(added),
                   first_id=id_key(first[0]) if first else None)


def group_gone(error: str) -> bool:
    """NOGROUP: the group (or its stream) is missing; UNBLOCKED: the stream was deleted
    under a blocked read (Redis 7+). Scripts' errors may carry it after a prefix (6.2)."""
    return any(error.startswith(code) or f": {code} " in error for code in ("NOGROUP", "UNBLOCKED"))


async def stream_state(link: RoundTrips, stream: str, name: str) -> tuple[bool | None, StreamState | None]:
    """Whether the stream key exists (None: cannot tell) and, when permitted, its XINFO.
    ``name`` names the subscription in errors and logs."""
    reply = (await link.call([("XINFO", "STREAM", stream)]))[0]
    if not isinstance(reply, ResponseError):
        return True, StreamState.parse(reply)
    text = str(reply)
    if text.startswith("WRONGTYPE"):
        raise PubSubError(f"subscription {name}: key {stream!r} exists and is not a stream")
    if "no such key" in text.lower():
        return False, None
    log.debug("subscription %s: XINFO STREAM: %s", name, text)
    reply = (await link.call([("EXISTS", stream)]))[0]
    return (None if isinstance(reply, ResponseError) else bool(reply)), None


class StreamHistory:
    """What a subscription knows the stream held: H, the highest entry ID known to have
    been in it, and its entries-added counter when last looked at."""

    def __init__(self) -> None:
        self.high: tuple[int, int] | None = None
        self.added_seen: int | None = None

    def note(self, key: tuple[int, int]) -> None:
        if self.high is None or key > self.high:
            self.high = key

    def observe(self, state: StreamState) -> None:
        """Take what the stream shows now as the baseline."""
        self.note(state.last_id)
        self.added_seen = state.entries_added

    def forget(self) -> None:
        """A new stream: what was known of the old one no longer applies."""
        self.high, self.added_seen = None, None

    def reset_reason(self, exists: bool | None, state: StreamState | None) -> str | None:
        """Why the stream is not the one the group was lost from; None if it may well be."""
        if exists is False:
            return "its key is gone"
        if state is None:
            return None
        high = self.high
        if high is None:
            return None
        if state.last_id < high:
            return f"its last ID {id_text(state.last_id)} is below {id_text(high)}, which it held"
        if (state.first_id is not None and state.first_id <= high) or state.entries_added is None:
            return None
        # It holds nothing up to H. Trimming could explain that, unless it never lost an
        # entry, or it counts fewer entries ever added than it did before.
        if state.entries_added == state.length:
            return (f"it holds no entry up to {id_text(high)}, which it held, and never lost one "
                    f"({state.length} newer entries)")
        if self.added_seen is not None and state.entries_added < self.added_seen:
            return (f"it holds no entry up to {id_text(high)}, which it held, and counts {state.entries_added} "
                    f"entries ever added where it counted {self.added_seen}")
        return None

    def deleted_error(self, name: str, stream: str, group: str, state: StreamState | None) -> GroupDeletedError:
        """The error for a group deleted while its stream was not reset (or cannot be told to be)."""
        if state is None:
            why = "and whether its stream was reset cannot be told (XINFO STREAM is not permitted)"
        elif self.high is None:
            why = "and whether its stream was reset cannot be told (no entry of it was known before)"
        else:
            why = f"while stream {stream!r} still holds its history (entries up to {id_text(self.high)})"
        return GroupDeletedError(
            f"subscription {name}: consumer group {group!r} of stream {stream!r} was deleted {why}; "
            f"it is not re-created, so entries the group already acknowledged are not replayed. Create the group "
            f"again (e.g. redistreams apply, or XGROUP CREATE at the position to resume from) and reopen the "
            f"subscription", stream, group)
