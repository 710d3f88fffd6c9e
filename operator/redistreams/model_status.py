"""The status of Topic and ConsumerGroup, written by the operator through the status
subresource.

These models are the schema of ``status`` in the generated CRDs (redistreams.crds). The
API server prunes fields that are not declared here, so everything the operator writes
must have a field below. Unknown fields are ignored when reading, like the API server does.

Apart from ``model`` so that reading manifests (``wait -f``, ``apply``…) does not build
them: 8 of the 21 classes, a quarter of the model's import time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .model import (
    CONDITION_REASON_PATTERN,
    CONDITION_TYPE_PATTERN,
    CONSUMER_NAME_MAX,
    ENTRY_ID_MAX,
    GROUP_NAME_MAX,
    INT64_MAX,
    REGISTRY_EPOCH_MAX,
    RESET_TOKEN_MAX,
    START_ID_MAX,
    STATUS_LIST_MAX,
    STREAM_NAME_MAX,
)


class _Status(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Condition(_Status):
    """One aspect of the resource's state (metav1.Condition): Ready, Reconciling or Stalled."""

    type: str = Field(
        max_length=316,
        pattern=CONDITION_TYPE_PATTERN,
        description="Condition type in CamelCase: Ready, Reconciling or Stalled.",
    )
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    observedGeneration: int | None = Field(
        None,
        ge=0,
        le=INT64_MAX,
        description="metadata.generation the condition was set for.",
    )
    lastTransitionTime: datetime = Field(
        description="When the status last changed from one value to another."
    )
    reason: str = Field(
        min_length=1,
        max_length=1024,
        pattern=CONDITION_REASON_PATTERN,
        description="Programmatic identifier of the reason for the last transition (CamelCase).",
    )
    message: str = Field(
        max_length=32768, description="Human-readable details about the transition (may be empty)."
    )


def _observed_generation() -> Any:
    return Field(
        -1,
        json_schema_extra={"format": "int64"},
        description="metadata.generation last fully processed by the operator; -1 until it has "
        "seen the resource (so GitOps tools wait instead of reporting a new resource as ready).",
    )


def _conditions() -> Any:
    return Field(
        default_factory=list,
        description="Ready (summary), Reconciling (work in progress or retrying) and Stalled "
        "(needs a person).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


def _last_sync() -> Any:
    return Field(None, description="When the operator last compared the resource with Redis.")


def _registry_epoch() -> Any:
    return Field(
        None, max_length=REGISTRY_EPOCH_MAX,
        description="Identity of the ownership registry in Redis this was last reconciled against. "
        "It changes only when Redis loses its data (restart without persistence, FLUSHALL, failover "
        "to an empty replica); the operator then re-creates the groups it had made from 0, so "
        "nothing published since is skipped.",
    )


class RetentionStatus(_Status):
    """What the operator's continuous retention did; written on change, at most every
    --status-interval (a change of blockedBy at once)."""

    trimmedTotal: int | None = Field(None, ge=0, description="Entries removed by retention so far.")
    lastTrimmed: int | None = Field(None, ge=0, description="Entries removed by the last pass that removed any.")
    lastTrimTime: datetime | None = Field(None, description="When that pass ran.")
    blockedBy: str | None = Field(
        None, max_length=GROUP_NAME_MAX,
        description="The consumer group holding retention back (entries it has not received or "
        "acknowledged); absent when nothing blocks it.",
    )
    blockedReason: Literal["pending", "undelivered"] | None = Field(
        None, description="pending: delivered but not acknowledged; undelivered: not yet delivered."
    )
    backlog: bool | None = Field(
        None, description="True while more is due than one pass may remove; the next passes continue."
    )


class TopicStatus(_Status):
    observedGeneration: int = _observed_generation()
    conditions: list[Condition] = _conditions()
    streamName: str | None = Field(
        None, max_length=STREAM_NAME_MAX, description="The Redis stream key this Topic manages."
    )
    length: int | None = Field(None, ge=0, description="Entries in the stream (XLEN).")
    lastGeneratedId: str | None = Field(
        None, max_length=ENTRY_ID_MAX, description="ID of the newest entry ever added."
    )
    entriesAdded: int | None = Field(
        None, ge=0, description="Entries ever added to the stream, trimmed or not."
    )
    groups: int | None = Field(None, ge=0, description="Consumer groups on the stream.")
    retention: RetentionStatus | None = Field(None, description="Continuous retention (operator).")
    registryEpoch: str | None = _registry_epoch()
    streamKeptBy: list[Annotated[str, Field(max_length=GROUP_NAME_MAX)]] | None = Field(
        None, max_length=STATUS_LIST_MAX,
        description="On deletion with deletionPolicy Delete: groups that keep the stream in place "
        "because they are not being deleted themselves (at most 10).",
    )
    lastSyncTime: datetime | None = _last_sync()




class LastReset(_Status):
    """The last position reset applied to the group (by the operator or the CLI)."""

    token: str = Field(max_length=RESET_TOKEN_MAX, description="spec.reset.token that was applied.")
    to: str = Field(max_length=START_ID_MAX, description="spec.reset.to that was applied.")
    id: str | None = Field(None, max_length=ENTRY_ID_MAX, description="The group's last-delivered ID after the reset.")
    at: datetime | None = Field(None, description="When the reset was applied.")


class RetainedConsumer(_Status):
    name: str = Field(max_length=CONSUMER_NAME_MAX + 1, description="Consumer name (shortened with … if long).")
    pending: int = Field(ge=0, description="Entries delivered to it and not acknowledged.")
    idleSince: datetime = Field(
        description="When it last received entries (Redis >= 7.2) or last read, to the minute."
    )


class ConsumerCleanupStatus(_Status):
    """Bounded: totals plus at most 10 names per list."""

    removed: int = Field(0, ge=0, description="Consumers the operator has removed from the group, in total.")
    lastRemoved: list[Annotated[str, Field(max_length=CONSUMER_NAME_MAX + 1)]] = Field(
        default_factory=list,
        max_length=STATUS_LIST_MAX,
        description="Consumers removed by the last cleanup that removed any (at most 10).",
    )
    lastRemovedTime: datetime | None = Field(None, description="When that cleanup ran.")
    retainedCount: int = Field(
        0, ge=0, description="Idle consumers kept because they have pending entries (removing them would drop those)."
    )
    retained: list[RetainedConsumer] = Field(
        default_factory=list,
        max_length=STATUS_LIST_MAX,
        description="The longest idle of them (at most 10).",
    )


class ConsumerGroupStatus(_Status):
    observedGeneration: int = _observed_generation()
    conditions: list[Condition] = _conditions()
    streamName: str | None = Field(
        None, max_length=STREAM_NAME_MAX, description="The Redis stream key the group reads."
    )
    groupName: str | None = Field(
        None, max_length=GROUP_NAME_MAX, description="The consumer group name in Redis."
    )
    lag: int | None = Field(
        None, ge=0, description="Entries not yet delivered to the group (absent when Redis cannot tell)."
    )
    lagExact: bool | None = Field(
        None, description="False when Redis could only estimate the lag (after deletions or trimming)."
    )
    pending: int | None = Field(
        None, ge=0, description="Entries delivered but not yet acknowledged (XPENDING)."
    )
    consumers: int | None = Field(None, ge=0, description="Consumers known to the group.")
    lastDeliveredId: str | None = Field(
        None, max_length=ENTRY_ID_MAX, description="ID of the last entry delivered to the group."
    )
    lastReset: LastReset | None = Field(None, description="The last spec.reset applied to the group.")
    consumerCleanup: ConsumerCleanupStatus | None = Field(
        None, description="What spec.consumerCleanup removed and kept."
    )
    registryEpoch: str | None = _registry_epoch()
    lastSyncTime: datetime | None = _last_sync()


STATUS_MODELS: dict[str, type[TopicStatus] | type[ConsumerGroupStatus]] = {
    "Topic": TopicStatus,
    "ConsumerGroup": ConsumerGroupStatus,
}
