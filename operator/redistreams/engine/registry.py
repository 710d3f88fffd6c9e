"""Which registry key holds the ownership records of a stream: the one home of that rule.

On a standalone Redis (or behind Sentinel) it is the configured key, exactly as it always
was: one hash for every stream. On a Redis Cluster, a Lua script may only touch keys of
one hash slot, and the scripts take the stream and its registry together; so the registry
is split per slot: the records of stream X live in ``<key>{<tag>}``, where ``<tag>`` is a
short string whose slot is X's slot (Redis' rules, hash tags in X included). Each registry
key has its own epoch (the registry identity that tells a Redis that lost its data).
"""

from __future__ import annotations

import functools
import itertools
import string

from redis.crc import REDIS_CLUSTER_HASH_SLOTS as SLOTS
from redis.crc import key_slot as crc_slot

from ..printable import wire

_TAG_ALPHABET = string.ascii_letters + string.digits


def key_slot(key: str | bytes) -> int:
    """The hash slot of a key by Redis' rules (hash tags included), for the bytes Redis has."""
    raw = key if isinstance(key, bytes) else wire(key)
    return crc_slot(raw if isinstance(raw, bytes) else raw.encode("utf-8"))


@functools.cache
def slot_tags() -> tuple[str, ...]:
    """For every slot, the shortest tag (letters and digits, then the first in order)
    that hashes to it; computed once (~0.2 s), three characters at most."""
    tags: list[str | None] = [None] * SLOTS
    missing = SLOTS
    for length in (1, 2, 3):
        for chars in itertools.product(_TAG_ALPHABET, repeat=length):
            tag = "".join(chars)
            slot = crc_slot(tag.encode())
            if tags[slot] is None:
                tags[slot] = tag
                missing -= 1
                if not missing:
                    return tuple(t for t in tags if t is not None)
    raise AssertionError("a slot without a tag of three characters")  # pragma: no cover


class Registry:
    """The configured registry key, for every stream (standalone Redis, Sentinel)."""

    per_slot = False

    def __init__(self, key: str) -> None:
        self.key = key

    def key_for(self, stream: str) -> str:
        return self.key


class SlotRegistry(Registry):
    """One registry key per hash slot (Redis Cluster): ``<key>{<tag>}`` in the stream's slot."""

    per_slot = True

    def __init__(self, key: str) -> None:
        super().__init__(key)
        if "{" in key and key.find("}", key.find("{") + 2) >= 0:
            raise ValueError(f'the registry key "{key}" holds a hash tag; on Redis Cluster it needs one of its own')
        self._tags = slot_tags()
        self._cache: dict[str, str] = {}

    def key_for(self, stream: str) -> str:
        registry = self._cache.get(stream)
        if registry is None:
            if len(self._cache) > 200_000:
                self._cache.clear()
            registry = self._cache[stream] = f"{self.key}{{{self._tags[key_slot(stream)]}}}"
        return registry
