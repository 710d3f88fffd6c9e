"""Lua scripts used where atomicity matters (claiming and creating together, deleting a
stream only when no other group needs it, safe trimming, position resets, consumer removal).

Scripts run with EVALSHA; a ``SCRIPT LOAD`` is queued in front of them in the same
pipeline, so a server that lost its script cache (restart, failover) costs no extra
round trip and no NOSCRIPT handling.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from typing import Any


def _read(name: str) -> str:
    return resources.files(__package__).joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


@dataclass(frozen=True)
class LuaScript:
    name: str
    uses: tuple[str, ...] = ()  # Lua has no imports here: shared helpers are prepended
    # Reads only: flagged no-writes and run with EVALSHA_RO, so a read-only ACL user
    # (+evalsha_ro, no +evalsha) can run it, and Redis itself refuses any write in it.
    read_only: bool = False

    @cached_property
    def source(self) -> str:
        flags = "#!lua flags=no-writes\n" if self.read_only else ""
        return flags + "".join(_read(name) + "\n" for name in self.uses) + _read(self.name)

    @cached_property
    def sha(self) -> str:
        return hashlib.sha1(self.source.encode()).hexdigest()

    def load(self, pipe: Any) -> None:
        pipe.execute_command("SCRIPT", "LOAD", self.source)

    def call(self, pipe: Any, keys: list[str], args: list[Any]) -> None:
        pipe.execute_command("EVALSHA_RO" if self.read_only else "EVALSHA", self.sha, len(keys), *keys, *args)


CLAIM_TOPIC = LuaScript("claim_topic", uses=("ids", "registry"))
CLAIM_GROUP = LuaScript("claim_group", uses=("ids", "registry"))
DELETE_STREAM = LuaScript("delete_stream", uses=("ids", "registry"))
DELETE_GROUP = LuaScript("delete_group", uses=("ids", "registry"))
CHECKPOINT = LuaScript("checkpoint", uses=("ids", "registry"))
TRIM = LuaScript("trim", uses=("ids", "registry"))
COUNT_AFTER = LuaScript("count_after", uses=("ids",), read_only=True)
RESET_GROUP = LuaScript("reset_group", uses=("ids", "registry"))
REMOVE_CONSUMERS = LuaScript("remove_consumers", uses=("ids", "registry"))

# The temporary group claim_topic.lua uses on a key that did not exist a moment ago.
INIT_GROUP = "redistreams:init"
