"""The ownership registry: which declared resource manages which stream and group.

One Redis hash (default ``redistreams:owners``) in the same database as the streams.
Fields are JSON arrays so that stream and group names with any characters stay
unambiguous; values are small JSON records. A record also says whether redistreams
created the stream or group: only what it created is ever deleted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .intents import Owner

DEFAULT_REGISTRY_KEY = "redistreams:owners"


def topic_field(stream: str) -> str:
    return json.dumps(["topic", stream], ensure_ascii=False, separators=(",", ":"))


def group_field(stream: str, group: str) -> str:
    return json.dumps(["group", stream, group], ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class OwnerRecord:
    owner: Owner
    created: bool

    def encode(self) -> str:
        return json.dumps(
            {
                "cluster": self.owner.cluster,
                "namespace": self.owner.namespace,
                "name": self.owner.name,
                "created": self.created,
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def decode(cls, raw: str | None) -> OwnerRecord | None:
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            return cls(Owner(str(data["cluster"]), str(data["namespace"]), str(data["name"])), bool(data["created"]))
        except (ValueError, KeyError, TypeError):
            # An unreadable record still marks the stream as taken: never steal it.
            return cls(Owner("?", "?", raw[:80]), False)
