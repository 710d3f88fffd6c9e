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
    return _field("topic", stream)


def group_field(stream: str, group: str) -> str:
    return _field("group", stream, group)


def _field(*parts: str) -> str:
    # A JSON array: stream and group names may contain any character, separators included.
    return json.dumps(list(parts), ensure_ascii=False, separators=(",", ":"))


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


def reset_field(stream: str, group: str) -> str:
    """Where the last applied spec.reset of a group is recorded, next to its owner."""
    return _field("reset", stream, group)


@dataclass(frozen=True)
class ResetRecord:
    """A position reset that was applied: its token is never applied again."""

    token: str
    to: str
    id: str
    at: str  # RFC 3339, UTC
    earlier: tuple[str, ...] = ()  # tokens applied before this one (bounded), never applied again

    def applied(self, token: str) -> bool:
        return token == self.token or token in self.earlier

    def encode(self) -> str:
        data: dict[str, object] = {"token": self.token, "to": self.to, "id": self.id, "at": self.at}
        if self.earlier:
            data["earlier"] = list(self.earlier)
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    @classmethod
    def decode(cls, raw: str | None) -> ResetRecord | None:
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            earlier = data.get("earlier")
            return cls(str(data["token"]), str(data["to"]), str(data["id"]), str(data["at"]),
                       tuple(str(t) for t in earlier) if isinstance(earlier, list) else ())
        except (ValueError, KeyError, TypeError):
            # Unreadable: treat no token as applied rather than guess; the script only
            # compares tokens, so a token equal to the raw text still counts.
            return cls("", "", "", "")
