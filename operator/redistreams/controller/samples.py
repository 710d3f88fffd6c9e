"""The metric samples an observation pass publishes: redis_exporter-style series for
each observed stream, its groups and consumers, and our resources' readiness."""

from __future__ import annotations

from typing import Any

from .. import metrics
from ..engine import StreamState
from ..engine.ids import StreamId
from .objects import Declared, Key


def _ms(entry_id: str | None) -> float | None:
    return None if not entry_id else float(StreamId.parse(entry_id).ms)


def stream_rows(state: StreamState, db: str, namespace: str, topic: str) -> list[metrics.Row]:
    """Exporter-style samples for one observed stream (nothing for a missing one)."""
    if not state.exists or state.failure:
        return []
    s = (db, state.key, namespace, topic)
    rows: list[metrics.Row] = [
        ("redis_stream_length", s, state.length),
        ("redis_stream_groups", s, len(state.groups)),
        ("redis_stream_last_generated_id", s, _ms(state.last_generated_id) or 0.0),
    ]
    for name, value in (("redis_stream_radix_tree_keys", state.radix_tree_keys),
                        ("redis_stream_radix_tree_nodes", state.radix_tree_nodes),
                        ("redis_stream_first_entry_id", _ms(state.first_id)),
                        ("redis_stream_last_entry_id", _ms(state.last_id)),
                        ("redis_stream_max_deleted_entry_id", _ms(state.max_deleted_id)),
                        ("redis_stream_entries_added", state.entries_added)):
        if value is not None:
            rows.append((name, s, value))
    first = StreamId.parse(state.first_id) if state.first_id else None
    for g in state.groups.values():
        gl = (db, state.key, g.name, namespace, topic)
        rows += [
            ("redis_stream_group_consumers", gl, g.consumers),
            ("redis_stream_group_messages_pending", gl, g.pending),
            ("redis_stream_group_last_delivered_id", gl, _ms(g.last_delivered_id) or 0.0),
            ("redis_stream_group_lag_valid", gl, 0 if g.lag is None else 1),
        ]
        if g.lag is not None:  # NULL lag: no sample, never a misleading 0
            rows.append(("redis_stream_group_lag", gl, g.lag))
        if g.entries_read is not None:
            rows.append(("redis_stream_group_entries_read", gl, g.entries_read))
        if g.pending and g.oldest_pending_idle_ms is not None:
            rows.append(("redistreams_stream_group_oldest_pending_seconds", gl, g.oldest_pending_idle_ms / 1000))
            if g.oldest_pending_id is not None:
                below = first is None or StreamId.parse(g.oldest_pending_id) < first
                rows.append(("redistreams_stream_group_pending_below_first_entry", gl, 1 if below else 0))
        for c in g.consumer_states or ():
            cl = (db, state.key, g.name, c.name, namespace, topic)
            rows += [
                ("redis_stream_group_consumer_messages_pending", cl, c.pending),
                ("redis_stream_group_consumer_idle_seconds", cl, c.idle_ms / 1000),
            ]
            if c.inactive_ms is not None:
                rows.append(("redistreams_stream_group_consumer_inactive_seconds", cl, c.inactive_ms / 1000))
    return rows


def ready_rows(objects: dict[Key, Declared]) -> dict[Any, list[metrics.Row]]:
    """redistreams_resource_ready for each object with a Ready condition."""
    out: dict[Any, list[metrics.Row]] = {}
    for key, declared in objects.items():
        conditions = {c.get("type"): c.get("status") for c in declared.status.get("conditions") or []}
        if "Ready" in conditions:  # Unknown until the first reconcile: no sample yet
            out[("ready", key)] = [("redistreams_resource_ready", key, 1 if conditions["Ready"] == "True" else 0)]
    return out
