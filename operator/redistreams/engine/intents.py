"""What the engine is asked to make true, independent of where it was declared."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..units import format_duration, parse_duration
from .ids import StreamId

if TYPE_CHECKING:  # types only: status, reading Redis through the engine, loads no models (pydantic)
    from ..model import ConsumerGroup, PositionReset, Topic


@dataclass(frozen=True)
class Owner:
    """The declared resource that manages a stream or group.

    ``cluster`` tells apart Kubernetes clusters (or CLI users) sharing one Redis; the CLI
    and an operator using the same cluster id manage the same resources.
    """

    cluster: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.cluster}/{self.namespace}/{self.name}"


@dataclass(frozen=True)
class RetentionPolicy:
    max_length: int | None = None
    max_age_seconds: int | None = None
    allow_trimming_unconsumed: bool = False

    def describe(self) -> str:
        limits = []
        if self.max_length is not None:
            limits.append(f"maxLength {self.max_length}")
        if self.max_age_seconds is not None:
            limits.append(f"maxAge {format_duration(self.max_age_seconds)}")
        return ", ".join(limits)


@dataclass(frozen=True)
class Memory:
    """What the caller knows of a resource from before this pass (the operator: its
    status). The CLI knows only what Redis' ownership registry says."""

    epoch: str | None = None  # registry epoch it was last reconciled against; None: never
    position: str | None = None  # a group position from which re-creating loses nothing


@dataclass(frozen=True)
class TopicIntent:
    label: str  # "topic/orders", for messages
    owner: Owner
    stream: str
    retention: RetentionPolicy | None = None
    deletion_policy: str = "Retain"
    memory: Memory | None = None


@dataclass(frozen=True)
class ResetIntent:
    """spec.reset: move the group once per token."""

    token: str
    to: str  # as written: $, 0, an entry ID or an RFC 3339 time
    target: str  # what XGROUP SETID gets: $, 0 or an entry ID

    @classmethod
    def from_spec(cls, spec: PositionReset) -> ResetIntent:
        from ..model import reset_target_ms  # loaded already: spec is a model

        ms = reset_target_ms(spec.to)
        if ms is not None:
            # Just before <ms>-0, so an entry with exactly that ID is delivered too.
            before = StreamId(ms, 0).predecessor()
            target = "0" if before is None else str(before)
        elif spec.to in ("$", "0"):
            target = spec.to
        else:
            # "007-1" as "7-1": Redis accepts leading zeros, the scripts compare canonical IDs.
            target = str(StreamId.parse(spec.to))
        return cls(spec.token, spec.to, target)


@dataclass(frozen=True)
class GroupIntent:
    label: str  # "consumergroup/billing"
    owner: Owner
    topic: Owner
    stream: str
    group: str
    start_id: str = "$"
    deletion_policy: str = "Retain"
    reset: ResetIntent | None = None
    cleanup_idle_ms: int | None = None  # spec.consumerCleanup.idleAfter
    memory: Memory | None = None


def topic_intent(topic: Topic, cluster: str) -> TopicIntent:
    retention = None
    if topic.spec.retention is not None:
        spec = topic.spec.retention
        retention = RetentionPolicy(
            max_length=spec.maxLength,
            max_age_seconds=parse_duration(spec.maxAge) if spec.maxAge else None,
            allow_trimming_unconsumed=spec.allowTrimmingUnconsumed,
        )
    return TopicIntent(
        label=topic.label,
        owner=Owner(cluster, topic.namespace, topic.name),
        stream=topic.stream,
        retention=retention,
        deletion_policy=topic.spec.deletionPolicy,
    )


def group_intent(group: ConsumerGroup, topic: Topic, cluster: str) -> GroupIntent:
    return GroupIntent(
        label=group.label,
        owner=Owner(cluster, group.namespace, group.name),
        topic=Owner(cluster, topic.namespace, topic.name),
        stream=topic.stream,
        group=group.group,
        start_id=group.spec.startId,
        deletion_policy=group.spec.deletionPolicy,
        reset=ResetIntent.from_spec(group.spec.reset) if group.spec.reset else None,
        cleanup_idle_ms=(
            parse_duration(group.spec.consumerCleanup.idleAfter) * 1000 if group.spec.consumerCleanup else None
        ),
    )


def intents_from(
    topics: Iterable[Topic], groups: Iterable[tuple[ConsumerGroup, Topic]], cluster: str
) -> tuple[list[TopicIntent], list[GroupIntent]]:
    return (
        [topic_intent(t, cluster) for t in topics],
        [group_intent(g, t, cluster) for g, t in groups],
    )
