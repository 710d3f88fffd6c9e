"""The ownership registry: which declared resource manages which stream and group.

One Redis hash (default ``redistreams:owners``) in the same database as the streams.
Fields are JSON arrays so that stream and group names with any characters stay
unambiguous; values are small JSON records. A record also says whether redistreams
created the stream or group: only what it created is ever deleted.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass

from .intents import Owner

ENTRY_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")
# The record's deletionPolicy: present only for Delete (registry.lua writes the same).
POLICY_KEY, DELETE = "deletionPolicy", "Delete"


def topic_field(stream: str) -> str:
    return _field("topic", stream)


def group_field(stream: str, group: str) -> str:
    return _field("group", stream, group)


def _field(*parts: str) -> str:
    # A JSON array: stream and group names may contain any character, separators included.
    return json.dumps(list(parts), ensure_ascii=False, separators=(",", ":"))


EPOCH_FIELD = _field("epoch")


def new_epoch() -> str:
    """A fresh identity for a registry, as its JSON record: it changes only when Redis
    lost the registry (a record nobody deletes)."""
    return json.dumps({"epoch": secrets.token_hex(8)}, separators=(",", ":"))


def decode_epoch(raw: str | None) -> str | None:
    if raw is None:
        return None
    try:
        return str(json.loads(raw)["epoch"])
    except (ValueError, KeyError, TypeError):
        return raw[:80]  # hand-edited: still an identity, compared as it is


@dataclass(frozen=True)
class OwnerRecord:
    """Who manages a stream or group, and whether redistreams created it.

    Group records also keep ``start``, the position the group was created at, and
    ``at``, a position from which re-creating it loses nothing (its last-delivered ID,
    or just before its oldest pending entry), moved forward by the operator's checkpoints.
    ``deletion_policy`` is the resource's, for ``apply --prune`` (which has no manifest to
    read it from): written only when Delete, so a record from before it was kept, or of a
    Retain resource, reads as Retain and is only ever released.
    """

    owner: Owner
    created: bool
    start: str | None = None
    at: str | None = None
    deletion_policy: str = "Retain"

    def same_claim(self, other: OwnerRecord | None) -> bool:
        """Same owner, creation flag and deletionPolicy: positions move on their own, they
        are no change."""
        return (other is not None and other.owner == self.owner and other.created == self.created
                and other.deletion_policy == self.deletion_policy)

    def encode(self) -> str:
        data: dict[str, object] = {
            "cluster": self.owner.cluster,
            "namespace": self.owner.namespace,
            "name": self.owner.name,
            "created": self.created,
        }
        if self.start is not None:
            data["start"] = self.start
        if self.at is not None:
            data["at"] = self.at
        if self.deletion_policy == DELETE:
            data[POLICY_KEY] = DELETE
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    @classmethod
    def decode(cls, raw: str | None) -> OwnerRecord | None:
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            return cls(Owner(str(data["cluster"]), str(data["namespace"]), str(data["name"])), bool(data["created"]),
                       _entry_id(data.get("start")), _entry_id(data.get("at")),
                       DELETE if data.get(POLICY_KEY) == DELETE else "Retain")
        except (ValueError, KeyError, TypeError, AttributeError):
            # An unreadable record still marks the stream as taken: never steal it.
            return cls(Owner("?", "?", raw[:80]), False)


def _entry_id(value: object) -> str | None:
    """An entry ID from a record, or None when absent or not one (hand-edited records)."""
    if isinstance(value, str) and ENTRY_ID.fullmatch(value):
        return value
    return None


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
