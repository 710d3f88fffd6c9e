"""Dead-lettering for a subscription: entries delivered ``max_deliveries`` times, and
entries not in the driver's format, are moved to another stream and acknowledged.

Claiming and moving are one Lua script (``lua/deliveries.lua``), so an entry is never
claimed by one consumer while another moves it. It runs by EVALSHA, falling back to EVAL
when the script is not cached, or for good when the ACL user may not run EVALSHA.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.exceptions import NoPermissionError, NoScriptError, ResponseError

from .link import RoundTrips
from .messages import DeadLetterError, Throttled, format_ids, log
from .urls import SubscriptionURL

_SCRIPT = resources.files(__package__).joinpath("lua/deliveries.lua").read_text()
_SCRIPT_SHA = hashlib.sha1(_SCRIPT.encode()).hexdigest()


@dataclass
class DeadLetter:
    """Move an entry to ``stream`` (and acknowledge it) once it was delivered ``max_deliveries`` times.

    The move is one Lua script when both streams are in one hash slot (always on one
    server; on Redis Cluster with a hash tag: ``{orders}`` and ``{orders}.dead``).
    Otherwise the script claims the entry and hands it over, and the subscription copies it
    to the dead-letter stream's node, then acknowledges it: a copy whose reply was lost
    may be stored twice. Either way the entry is acknowledged only once its copy is
    stored: when the copy fails (no XADD permission, the key holds another type) it
    stays pending, is not handed to the application, and the failure shows in
    ``Subscription.dead_letter_error``, ``stats["dead_letter_failed"]`` and an error log
    (at most once a minute).
    """

    stream: str
    max_deliveries: int = 5

    def __post_init__(self) -> None:
        if not self.stream:
            raise ValueError("dead-letter stream name is empty")
        if self.max_deliveries < 1:
            raise ValueError("max_deliveries must be at least 1")


class DeadLettering:
    """The script calls of one subscription with a dead-letter stream, and what they moved.

    ``error`` is the latest failure to move entries; None once a move works again.
    """

    def __init__(self, dead_letter: DeadLetter, spec: SubscriptionURL, *, name: str, stats: Counter[str]) -> None:
        self.dead_letter = dead_letter
        self.stream, self.group, self.consumer = spec.stream, spec.group, spec.consumer
        self.stats = stats
        self.error: DeadLetterError | None = None
        self._name = name
        self._log = Throttled()
        self._evalsha = True  # False once EVALSHA was refused: EVAL alone is enough
        self._elsewhere: RoundTrips | None = None  # the dead-letter stream's link when in another slot

    def hand_off(self, link: RoundTrips) -> None:
        """The dead-letter stream is in another hash slot: the script hands entries over and
        they are copied on ``link`` (to that stream's node), then acknowledged."""
        self._elsewhere = link

    @property
    def _keys(self) -> list[str]:
        return [self.stream] if self._elsewhere else [self.stream, self.dead_letter.stream]

    async def claim(self, link: RoundTrips, start: str, count: int, *, min_idle: int, owner: str,
                    skip: Iterable[str] = ()) -> tuple[str, list[Any], list[str]]:
        """One step through the pending entries from ``start``: those delivered too often
        are moved, the others claimed. Returns the next start ('' at the end), the
        claimed entries (raw) and the IDs of entries deleted from the stream."""
        next_start, claimed, moved, gone, errors, handed = await self._script(
            link, self._keys,
            ["claim", self.group, self.consumer, min_idle, start, count, self.dead_letter.max_deliveries, owner,
             *skip])
        if handed:
            moved, errors = await self._copy(link, handed)
        if moved:
            log.warning("subscription %s: moved %d entries to %s after %d deliveries: %s", self._name, len(moved),
                        self.dead_letter.stream, self.dead_letter.max_deliveries, format_ids(moved))
        self._dead_lettered(moved, errors)
        return next_start.decode() if next_start else "", claimed, [g.decode() for g in gone]

    async def move_malformed(self, link: RoundTrips, ids: list[str]) -> None:
        """Move entries not in the driver's format (pending to this consumer)."""
        try:
            moved, gone, errors, handed = await self._script(
                link, self._keys,
                ["move", self.group, self.consumer, "entry is not in the driver's format (headers/body)", *ids])
            if handed:
                moved, errors = await self._copy(link, handed)
        except ResponseError as exc:  # the script as a whole refused (e.g. no access to the dead-letter key)
            self._failed({entry_id: str(exc) for entry_id in ids})
            return
        if moved:
            log.warning("subscription %s: moved %d malformed entries to %s: %s", self._name, len(moved),
                        self.dead_letter.stream, format_ids(moved))
        self._dead_lettered(moved, errors)

    async def _copy(self, link: RoundTrips, handed: Sequence[Any]) -> tuple[list[bytes], list[bytes]]:
        """Copy handed-over entries ({id, reason, deliveries, fields}) to the dead-letter
        stream, then acknowledge those copied. Returns the moved IDs and {id, error, …}."""
        assert self._elsewhere is not None
        copies = [("XADD", self.dead_letter.stream, "*", *fields, b"dead-letter-reason", reason,
                   b"dead-letter-stream", self.stream, b"dead-letter-group", self.group, b"dead-letter-id", entry_id,
                   b"dead-letter-deliveries", deliveries) for entry_id, reason, deliveries, fields in handed]
        replies = await self._elsewhere.call(copies)
        copied = [entry[0] for entry, reply in zip(handed, replies) if not isinstance(reply, ResponseError)]
        errors: list[bytes] = []
        for entry, reply in zip(handed, replies):
            if isinstance(reply, ResponseError):
                errors += [entry[0], str(reply).encode()]
        if copied:
            (acked,) = await link.call([("XACK", self.stream, self.group, *copied)])
            if isinstance(acked, ResponseError):
                why = f"copied, but not acknowledged: {acked}".encode()
                errors += [x for entry_id in copied for x in (entry_id, why)]
                copied = []
        return copied, errors

    async def _script(self, link: RoundTrips, keys: list[str], args: list[Any]) -> Any:
        try:
            if self._evalsha:
                try:
                    return await link.call_one("EVALSHA", _SCRIPT_SHA, len(keys), *keys, *args)
                except NoScriptError:
                    pass
                except NoPermissionError as exc:
                    if "'evalsha'" not in str(exc):
                        raise
                    self._evalsha = False  # EVAL alone will do: the script is sent each time
            return await link.call_one("EVAL", _SCRIPT, len(keys), *keys, *args)
        except NoPermissionError as exc:
            if "one of the keys" in str(exc):  # Redis does not say which
                raise NoPermissionError(f"{exc}: {', '.join(repr(k) for k in keys)}") from None
            raise

    def _dead_lettered(self, moved: Sequence[Any], errors: Sequence[Any]) -> None:
        """Account for a dead-letter move: {id, error, …} pairs that failed stay pending."""
        self.stats["dead_lettered"] += len(moved)
        if errors:
            pairs = zip(errors[::2], errors[1::2])
            self._failed({i.decode(): e.decode(errors="replace") for i, e in pairs})
        elif moved:
            self.error = None

    def _failed(self, ids: dict[str, str]) -> None:
        self.stats["dead_letter_failed"] += len(ids)
        first = next(iter(ids.values()))
        self.error = DeadLetterError(
            f"subscription {self._name}: {len(ids)} entries could not be moved to the dead-letter stream "
            f"{self.dead_letter.stream!r} and stay pending ({first})", self.dead_letter.stream, ids)
        self._log.error(
            "subscription %s: could not move %d entries to the dead-letter stream %s: %s; they stay pending "
            "and the move is tried again when they are next claimed: %s",
            self._name, len(ids), self.dead_letter.stream, first, format_ids(list(ids)))
