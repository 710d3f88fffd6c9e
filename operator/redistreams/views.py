"""What observed streams look like to people and to Kubernetes: the status document of a
stream, and the Topic and ConsumerGroup manifests that adopt what exists.

Here rather than in the engine, which knows no Kubernetes naming, and rather than in
``model``, which knows no observed state; below the CLI so the operator can use both.
Pure: it reads ``StreamState`` values and touches no Redis.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .model import API
from .printable import printable

if TYPE_CHECKING:
    from .engine import OwnerRecord, StreamState


def _owner_dict(record: OwnerRecord | None) -> dict[str, str] | None:
    if record is None:
        return None
    return {"cluster": record.owner.cluster, "namespace": record.owner.namespace, "name": record.owner.name}


def status_dict(state: StreamState, declared_groups: list[str] | None = None) -> dict[str, Any]:
    """A stream's figures and its groups' (``exists: false`` for declared ones missing)."""
    data: dict[str, Any] = {"stream": state.key, "exists": state.exists}
    if state.failure:
        data["error"] = state.failure.message
        return data
    if not state.exists:
        if state.type != "none":
            data["type"] = state.type
        if declared_groups:
            data["groups"] = [{"name": g, "exists": False} for g in declared_groups]
        return data
    data.update(
        length=state.length,
        firstEntryId=state.first_id,
        lastEntryId=state.last_id,
        lastGeneratedId=state.last_generated_id,
        entriesAdded=state.entries_added,
        managedBy=_owner_dict(state.topic_owner),
    )
    groups = []
    for g in state.groups.values():
        idle_ms = g.oldest_pending_idle_ms
        groups.append(
            {
                "name": g.name,
                "exists": True,
                "consumers": g.consumers,
                "pending": g.pending,
                "lastDeliveredId": g.last_delivered_id,
                "entriesRead": g.entries_read,
                "lag": g.lag,
                "lagExact": g.lag_exact,
                "oldestPendingId": g.oldest_pending_id,
                "oldestPendingAgeSeconds": None if idle_ms is None else round(idle_ms / 1000, 3),
                "managedBy": _owner_dict(state.group_owners.get(g.name)),
            }
        )
    for name in declared_groups or []:
        if name not in state.groups:
            groups.append({"name": name, "exists": False})
    data["groups"] = groups
    return data


# -- export ------------------------------------------------------------------------------

_INVALID_NAME_CHARS = re.compile(r"[^a-z0-9.-]+")
_NAME_MAX = 240  # under the 253 of a DNS subdomain, leaving room for a "-N" suffix


def kube_name(text: str, taken: set[str]) -> str:
    """A valid, unused Kubernetes object name derived from a Redis name (added to ``taken``)."""
    name = _INVALID_NAME_CHARS.sub("-", text.lower())
    name = re.sub(r"[-.]{2,}", "-", name).strip("-.")[:_NAME_MAX].strip("-.") or "stream"
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}-{n}", n + 1
    taken.add(candidate)
    return candidate


def manifests_for(
    keys: list[str], states: dict[str, StreamState], namespace: str | None, default_namespace: str
) -> tuple[list[dict[str, Any]], list[str]]:
    """Topic and ConsumerGroup documents that adopt these streams and groups as they are,
    and notices for what cannot be declared.

    Names in ownership records are kept (when still free); others are derived from the
    Redis names. ``namespace`` overrides the recorded one; ``default_namespace`` is for
    streams without a record.
    """
    taken: set[str] = set()  # Topic names
    taken_groups: set[str] = set()  # ConsumerGroup names (a separate kind, a separate space)
    docs: list[dict[str, Any]] = []
    notices: list[str] = []
    for key in keys:
        state = states[key]
        if not state.exists:
            continue  # deleted since the scan
        if printable(key) != key:
            # YAML (and Kubernetes) hold text only: such a name cannot be declared.
            notices.append(f'skipping stream "{printable(key)}": its name is not UTF-8 and cannot be '
                           "written in a manifest")
            continue
        owner = state.topic_owner
        name = owner.owner.name if owner and owner.owner.name not in taken else kube_name(key, taken)
        taken.add(name)
        ns = namespace or (owner.owner.namespace if owner else None) or default_namespace
        spec: dict[str, Any] = {} if name == key else {"streamName": key}
        docs.append({"apiVersion": API, "kind": "Topic", "metadata": {"name": name, "namespace": ns}, "spec": spec})
        for group in state.groups:
            if printable(group) != group:
                notices.append(f'skipping group "{printable(group)}" of stream "{key}": its name is not UTF-8 '
                               "and cannot be written in a manifest")
                continue
            g_owner = state.group_owners.get(group)
            if g_owner and g_owner.owner.name not in taken_groups:
                g_name = g_owner.owner.name
                taken_groups.add(g_name)
            else:
                g_name = kube_name(f"{name}-{group}", taken_groups)
            g_spec: dict[str, Any] = {"topicRef": {"name": name}}
            if g_name != group:
                g_spec["groupName"] = group
            metadata = {"name": g_name, "namespace": ns}
            docs.append({"apiVersion": API, "kind": "ConsumerGroup", "metadata": metadata, "spec": g_spec})
    return docs, notices
