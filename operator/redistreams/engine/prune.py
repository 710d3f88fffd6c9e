"""``apply --prune``: what one owner identity manages in Redis and no longer declares.

The candidates come from the ownership registry, never from key names: only records of
the given cluster id, in the given namespaces, whose stream or group no manifest of the
run declares. They become intents carrying the recorded deletionPolicy and are deleted
by the one delete path (Applier.delete), with all of its rules.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .intents import GroupIntent, Owner, TopicIntent
from .ownership import OwnerRecord, group_field, topic_field
from .registry import Registry

# Registry fields that are not ownership records (reset tokens, the registry's identity).
OTHER_FIELDS = ("reset", "epoch")


@dataclass
class Orphans:
    """Resources to prune, and registry entries that could not be read (left alone)."""

    topics: list[TopicIntent] = field(default_factory=list)
    groups: list[GroupIntent] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


def registry_keys(client: Any, registry: Registry) -> list[str]:
    """The hash(es) holding ownership records: the key itself, or on a Redis Cluster every
    per-slot ``<key>{tag}`` that exists (SCAN of every master)."""
    if not registry.per_slot:
        return [registry.key]
    pattern = "".join("\\" + c if c in "*?[]\\" else c for c in registry.key) + "{*}"
    return sorted({k for k in client.scan_iter(match=pattern, count=1000, _type="hash")})


def _parse_field(name: str) -> list[str] | None:
    try:
        parts = json.loads(name)
    except ValueError:
        return None
    if not isinstance(parts, list) or not parts or not all(isinstance(p, str) for p in parts):
        return None
    return parts


def _readable(raw: str) -> bool:
    try:
        data = json.loads(raw)
    except ValueError:
        return False
    return (isinstance(data, dict) and "created" in data
            and all(isinstance(data.get(k), str) for k in ("cluster", "namespace", "name")))


def find_orphans(
    entries: Iterable[tuple[str, str, str]],
    cluster: str,
    namespaces: set[str],
    topics: Iterable[TopicIntent],
    groups: Iterable[GroupIntent],
) -> Orphans:
    """From registry ``entries`` (registry key, field, record), the records of ``cluster``
    in ``namespaces`` that none of ``topics`` and ``groups`` declares. A field declared by
    any resource (even of another owner) is never a candidate: its stream or group is
    still wanted, nor the Topic of a declared group's stream (a file of groups alone)."""
    groups = list(groups)
    declared = ({topic_field(t.stream) for t in topics} | {topic_field(g.stream) for g in groups}
                | {group_field(g.stream, g.group) for g in groups})
    found = Orphans()
    topic_owners: dict[str, Owner] = {}
    pending_groups: list[tuple[list[str], OwnerRecord]] = []
    for registry, name, raw in entries:
        parts = _parse_field(name)
        kind = parts[0] if parts else None
        if kind in OTHER_FIELDS:
            continue
        if parts is None or not ((kind == "topic" and len(parts) == 2) or (kind == "group" and len(parts) == 3)):
            found.unreadable.append(f'{registry}: field "{name[:120]}" is not an ownership record; left alone')
            continue
        if not _readable(raw):
            found.unreadable.append(f'{registry}: the record of {name[:120]} is unreadable ("{raw[:80]}"); left alone')
            continue
        record = OwnerRecord.decode(raw)
        assert record is not None
        if kind == "topic":
            topic_owners[parts[1]] = record.owner
        if record.owner.cluster != cluster or record.owner.namespace not in namespaces or name in declared:
            continue
        if kind == "topic":
            found.topics.append(TopicIntent(label=f"topic/{record.owner.name}", owner=record.owner, stream=parts[1],
                                            deletion_policy=record.deletion_policy))
        else:
            pending_groups.append((parts, record))
    for (_, stream, group), record in pending_groups:
        found.groups.append(GroupIntent(
            label=f"consumergroup/{record.owner.name}", owner=record.owner,
            topic=topic_owners.get(stream, record.owner), stream=stream, group=group,
            deletion_policy=record.deletion_policy,
        ))
    return found


def scan_registry(client: Any, registry: Registry) -> Iterator[tuple[str, str, str]]:
    """(registry key, field, record) for every entry of every registry key."""
    for key in registry_keys(client, registry):
        for name, raw in client.hscan_iter(key, count=1000):
            yield key, name, raw
