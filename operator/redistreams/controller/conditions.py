"""Status conditions as kstatus, Argo CD, Flux and `kubectl wait` read them.

Ready is the summary. Reconciling=True while work is under way or a transient error
will be retried; Stalled=True for errors that will not fix themselves, so kstatus
reports Failed instead of waiting for a timeout. lastTransitionTime moves only when a
condition's status changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..engine.errors import CLUSTER_NODE, CONFLICT, WRONG_TYPE
from ..printable import shown
from ..units import rfc3339

# Reasons the operator adds to the engine's (RedisUnavailable, PermissionDenied, …).
PROVISIONING = "Provisioning"
TOPIC_NOT_FOUND = "TopicNotFound"
SECRET_NOT_FOUND = "SecretNotFound"
INVALID_SPEC = "InvalidSpec"
PAUSED = "Paused"
STREAM_READY = "StreamReady"
GROUP_READY = "GroupReady"
# The operator's tenancy setting does not let the namespace declare the stream.
OUTSIDE_TENANT_PREFIX = "StreamOutsideTenantPrefix"

# Errors that need a person: retrying changes nothing.
TERMINAL = frozenset({WRONG_TYPE, CONFLICT, SECRET_NOT_FOUND, INVALID_SPEC, CLUSTER_NODE, OUTSIDE_TENANT_PREFIX})


@dataclass(frozen=True)
class Outcome:
    """What happened to one resource, in condition terms."""

    ready: bool | None  # None: not known yet
    reason: str
    message: str

    @property
    def stalled(self) -> bool:
        return self.ready is False and self.reason in TERMINAL


def now() -> str:
    return rfc3339()


def _condition(kind: str, status: str, reason: str, message: str, generation: int | None,
               previous: dict[str, dict[str, Any]], timestamp: str) -> dict[str, Any]:
    old = previous.get(kind)
    changed = old is None or old.get("status") != status
    condition = {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": shown(message),  # kubectl and dashboards print it: no terminal escapes
        "lastTransitionTime": timestamp if changed or old is None else old.get("lastTransitionTime", timestamp),
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition


def conditions(outcome: Outcome, generation: int | None, previous: list[dict[str, Any]] | None,
               timestamp: str | None = None) -> list[dict[str, Any]]:
    """The full conditions list (merge patches replace lists, so always all of it)."""
    timestamp = timestamp or now()
    # Only typed conditions can be the previous Ready, Reconciling or Stalled.
    before = {c["type"]: c for c in previous or [] if isinstance(c, dict) and isinstance(c.get("type"), str)}
    ready = "Unknown" if outcome.ready is None else ("True" if outcome.ready else "False")
    reconciling = outcome.ready is None or (outcome.ready is False and not outcome.stalled)
    stalled = outcome.stalled
    return [
        _condition("Ready", ready, outcome.reason, outcome.message, generation, before, timestamp),
        _condition(
            "Reconciling",
            "True" if reconciling else "False",
            outcome.reason if reconciling else "ReconcileSucceeded" if outcome.ready else outcome.reason,
            outcome.message if reconciling else "",
            generation, before, timestamp,
        ),
        _condition(
            "Stalled",
            "True" if stalled else "False",
            outcome.reason if stalled else "NotStalled",
            outcome.message if stalled else "",
            generation, before, timestamp,
        ),
    ]


def same_conditions(a: list[dict[str, Any]] | None, b: list[dict[str, Any]] | None) -> bool:
    """Equal but for timestamps: nothing worth a write."""

    def strip(items: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        return [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in items or []]

    return strip(a) == strip(b)
