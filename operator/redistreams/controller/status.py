"""What a reconcile result becomes in status: the outcome (for the conditions) and the
status fields of a Topic or a ConsumerGroup.

Pure: no Redis, no Kubernetes. The Reconciler builds a ``Computed`` per resource from
the engine's plan and result; ``runtime.write_status`` writes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from ..connection import redact, secret_parts
from ..engine import Result
from ..engine.plan import GroupPlan, TopicPlan, consumer_idle_ms
from ..engine.state import ConsumerState
from ..model import CONSUMER_NAME_MAX, STATUS_LIST_MAX
from ..units import from_ms, rfc3339
from .conditions import GROUP_READY, STREAM_READY, Outcome


@dataclass
class Computed:
    """What a reconcile produced for one resource: conditions input and status fields."""

    outcome: Outcome
    fields: dict[str, Any] = field(default_factory=dict)
    result: Result | None = None
    reset: str | None = None  # Redis lost data we had made: why (and what came back from 0)
    drift: bool = False  # something we had made was deleted behind our back and is back


def scrubbed(computed: Computed, url: str) -> Computed:
    """A result of a Secret's connection without any part of the Secret's value: Redis'
    own texts ("Error connecting to <host>:<port>") would show its host to anyone who
    can read status or Events, including a tenant pointing secretRef at a Secret that is
    not theirs."""
    parts = secret_parts(url)
    if not parts:
        return computed

    def clean(text: str) -> str:
        for part in parts:
            text = text.replace(part, "***")
        return text

    outcome = replace(computed.outcome, message=clean(computed.outcome.message))
    result = computed.result
    if result is not None:
        failure = replace(result.failure, message=clean(result.failure.message)) if result.failure else None
        result = replace(result, details=[clean(d) for d in result.details], failure=failure)
    return replace(computed, outcome=outcome, result=result)


# -- outcomes -------------------------------------------------------------------------

def topic_outcome(result: Result, target: str) -> Outcome:
    if result.failure:
        return Outcome(False, result.failure.reason, result.failure.message)
    return Outcome(True, STREAM_READY, f'stream "{result.stream}" exists on {redact(target)}')


def group_outcome(result: Result) -> Outcome:
    if result.failure:
        return Outcome(False, result.failure.reason, result.failure.message)
    return Outcome(True, GROUP_READY, f'group "{result.group}" exists on stream "{result.stream}"')


# -- status fields --------------------------------------------------------------------

def topic_fields(plan: TopicPlan, result: Result, created: set[str]) -> dict[str, Any]:
    """``created``: groups this batch created on the stream (not in the observed state yet)."""
    state = plan.state
    fields: dict[str, Any] = {"streamName": plan.intent.stream}
    if result.failure:
        return fields
    fields.update(
        length=max(state.length - result.trimmed, 0),
        lastGeneratedId=state.last_generated_id,
        entriesAdded=state.entries_added or 0,
        groups=len(set(state.groups) | created),
    )
    if result.epoch:
        fields["registryEpoch"] = result.epoch
    return fields


def group_fields(plan: GroupPlan, result: Result) -> dict[str, Any]:
    fields: dict[str, Any] = {"streamName": plan.intent.stream, "groupName": plan.intent.group}
    if result.failure:
        return fields
    if result.epoch:
        fields["registryEpoch"] = result.epoch
    existing = plan.existing
    if existing is not None:
        fields.update(pending=existing.pending, consumers=existing.consumers,
                      lastDeliveredId=existing.last_delivered_id, lagExact=existing.lag_exact)
        if existing.lag is not None:
            fields["lag"] = existing.lag
        return fields
    fields.update(pending=0, consumers=0)
    if result.created_at:
        fields["lastDeliveredId"] = result.created_at
    if plan.create_at == "$" or plan.state.length == 0:
        fields.update(lag=0, lagExact=True)
    return fields


def day2_fields(plan: GroupPlan, result: Result, old: dict[str, Any]) -> dict[str, Any]:
    """status.lastReset and status.consumerCleanup: bounded, and the same from one pass to
    the next unless something happened, so an idle resync writes nothing."""
    fields: dict[str, Any] = {}
    if result.failure:
        return fields
    if result.reset is not None and result.reset.token:
        r = result.reset
        fields["lastReset"] = {"token": r.token, "to": r.to, "id": r.id, **({"at": r.at} if r.at else {})}
    if plan.intent.cleanup_idle_ms is None:
        if old.get("consumerCleanup") is not None:
            fields["consumerCleanup"] = None  # cleanup switched off: a merge patch null drops it
        return fields
    previous = old.get("consumerCleanup") or {}
    now_ms = plan.state.server_time_ms or int(datetime.now(UTC).timestamp() * 1000)
    cleanup: dict[str, Any] = {
        "removed": int(previous.get("removed") or 0) + len(result.consumers_removed),
        "retainedCount": len(result.consumers_kept),
        "retained": [{"name": _short(c.name), "pending": c.pending, "idleSince": _idle_since(c, now_ms)}
                     for c in result.consumers_kept[:STATUS_LIST_MAX]],
    }
    if result.consumers_removed:
        if plan.existing is not None:  # the count observed before the removal
            fields["consumers"] = max(plan.existing.consumers - len(result.consumers_removed), 0)
        cleanup["lastRemoved"] = [_short(n) for n in result.consumers_removed[:STATUS_LIST_MAX]]
        cleanup["lastRemovedTime"] = rfc3339()
    else:
        cleanup.update({k: previous[k] for k in ("lastRemoved", "lastRemovedTime") if previous.get(k)})
    fields["consumerCleanup"] = cleanup
    return fields


def _short(name: str) -> str:
    return name if len(name) <= CONSUMER_NAME_MAX else name[:CONSUMER_NAME_MAX] + "…"


def _idle_since(consumer: ConsumerState, now_ms: int) -> str:
    """To the minute, so that it reads the same on every pass while the consumer stays idle."""
    return rfc3339(from_ms(now_ms - consumer_idle_ms(consumer)), to_minute=True)
