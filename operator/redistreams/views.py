"""What observed streams look like to people and to Kubernetes: the status document of a
stream, and the Topic and ConsumerGroup manifests that adopt what exists.

Here rather than in the engine, which knows no Kubernetes naming, and rather than in
``model``, which knows no observed state; below the CLI so the operator can use both.
Pure: it reads ``StreamState`` values and touches no Redis.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .printable import printable

if TYPE_CHECKING:
    from .engine import GroupPlan, OwnerRecord, StreamState, TopicPlan


def _owner_dict(record: OwnerRecord | None) -> dict[str, str] | None:
    if record is None:
        return None
    return {"cluster": record.owner.cluster, "namespace": record.owner.namespace, "name": record.owner.name}


def status_dict(state: StreamState, declared_groups: list[str] | None = None,
                consumers: bool = False) -> dict[str, Any]:
    """A stream's figures and its groups' (``exists: false`` for declared ones missing).
    ``consumers``: each group's ``consumerDetails`` too (None: too many were there to read)."""
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
        if consumers:
            groups[-1]["consumerDetails"] = None if g.consumer_states is None and g.consumers else [
                {
                    "name": c.name,
                    "pending": c.pending,
                    "idleSeconds": round(c.idle_ms / 1000, 3),
                    "inactiveSeconds": None if c.inactive_ms is None else round(c.inactive_ms / 1000, 3),
                }
                for c in g.consumer_states or []
            ]
    for name in declared_groups or []:
        if name not in state.groups:
            groups.append({"name": name, "exists": False})
    data["groups"] = groups
    return data


# -- plan, field by field ------------------------------------------------------------------

def _owner_text(record: OwnerRecord) -> str:
    owner = record.owner
    return f"{owner.cluster}/{owner.namespace}/{owner.name}" + ("" if record.created else " (adopted)")


def _change(op: str, name: str, before: Any = None, after: Any = None, note: str | None = None) -> dict[str, Any]:
    change: dict[str, Any] = {"field": name, "op": op}
    if op != "add":
        change["from"] = before
    if op != "remove":
        change["to"] = after
    if note:
        change["note"] = note
    return change


def plan_changes(item: TopicPlan | GroupPlan) -> list[dict[str, Any]]:
    """What apply would change, field by field, as observed before and declared after:
    ``{"field", "op": add|change|remove, "from", "to", "note"?}``. Empty in sync or failed."""
    from .engine import TopicPlan
    from .engine.plan import idle_text

    if item.failure or not item.changes:
        return []
    state = item.state
    changes: list[dict[str, Any]] = []
    if isinstance(item, TopicPlan):
        if item.create_stream:
            changes.append(_change("add", "stream", after=item.intent.stream))
    elif item.create_at is not None:
        where = "$ (the end of the stream)" if item.create_at == "$" else item.create_at
        changes.append(_change("add", "group", after=item.intent.group))
        changes.append(_change("add", "lastDeliveredId", after=where))
    if item.record is not None:
        current = state.topic_owner if isinstance(item, TopicPlan) else state.group_owners.get(item.intent.group)
        if current is None:
            changes.append(_change("add", "managedBy", after=_owner_text(item.record)))
        else:
            changes.append(_change("change", "managedBy", _owner_text(current), _owner_text(item.record)))
    if isinstance(item, TopicPlan):
        changes.extend(_trim_changes(item))
        return changes
    if item.reset is not None and item.existing is not None:
        changes.append(_change("change", "lastDeliveredId", item.existing.last_delivered_id, item.reset.target,
                               f'reset token "{item.reset.token}"'))
    if item.record_reset and item.intent.reset is not None:
        token = item.intent.reset.token
        changes.append(_change("add", "lastReset", after=f'token "{token}" (recorded, nothing moves)'))
    for consumer in item.remove_consumers:
        changes.append(_change("remove", f"consumers.{consumer.name}",
                               f"idle {idle_text(consumer.idle_ms)}, {consumer.pending} pending"))
    return changes


def _trim_changes(item: TopicPlan) -> list[dict[str, Any]]:
    """Retention: the length maxLength leaves, the first ID maxAge leaves; noted when a
    group's entries stop the trim short of either."""
    policy, state = item.intent.retention, item.state
    if not item.trim or policy is None or state.first_id is None:
        return []
    from .engine.ids import StreamId

    bound = None if policy.allow_trimming_unconsumed else state.safe_bound()
    note = None
    if bound is not None and state.last_id is not None and bound[0] <= StreamId.parse(state.last_id):
        needs = "acknowledged" if bound[2] == "pending" else "received"
        note = f'entries group "{bound[1]}" has not {needs} are kept'
    changes = []
    if policy.max_length is not None and state.length > policy.max_length:
        changes.append(_change("change", "length", state.length, policy.max_length, note))
    if policy.max_age_seconds is not None and state.server_time_ms is not None:
        cutoff = state.server_time_ms - policy.max_age_seconds * 1000
        if StreamId.parse(state.first_id).ms < cutoff:
            changes.append(_change("change", "firstEntryId", state.first_id, f"{cutoff}-0 or later", note))
    return changes


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
    from .model import API  # here, not at the top: status, which reads this module too, loads no models

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
