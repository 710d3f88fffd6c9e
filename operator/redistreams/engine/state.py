"""What the engine observed in Redis."""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import Failure
from .ids import StreamId
from .ownership import OwnerRecord, ResetRecord


@dataclass
class ConsumerState:
    """One consumer of a group (XINFO CONSUMERS); read for metrics and spec.consumerCleanup."""

    name: str
    pending: int = 0
    idle_ms: int = 0
    inactive_ms: int | None = None  # Redis >= 7.2; None before, or when it never read


@dataclass
class GroupState:
    name: str
    consumers: int = 0
    pending: int = 0
    last_delivered_id: str = "0-0"
    entries_read: int | None = None
    lag: int | None = None
    # Filled when details are asked for (status, retention planning).
    oldest_pending_id: str | None = None
    oldest_pending_idle_ms: int | None = None
    oldest_pending_deliveries: int | None = None
    lag_exact: bool = False
    # Filled when consumer details are asked for (metrics); None: not read.
    consumer_states: list[ConsumerState] | None = None

    def safe_bound(self) -> tuple[StreamId, str] | None:
        """The oldest ID this group still needs, and why: entries below it may go.

        None when it needs none: it received the largest possible ID (there is no next
        one) and has nothing pending."""
        bound = StreamId.parse(self.last_delivered_id).successor()
        if self.pending and self.oldest_pending_id is not None:
            oldest = StreamId.parse(self.oldest_pending_id)
            if bound is None or oldest < bound:
                return oldest, "pending"
        return None if bound is None else (bound, "undelivered")


    def resume_position(self) -> str | None:
        """Where re-creating this group loses nothing: its last-delivered ID, or just
        before its oldest pending entry. None when that entry was not read."""
        at = StreamId.parse(self.last_delivered_id)
        if self.pending:
            if self.oldest_pending_id is None:
                return None
            before = StreamId.parse(self.oldest_pending_id).predecessor() or StreamId(0, 0)
            at = min(at, before)
        return str(at)


@dataclass
class StreamState:
    key: str
    type: str = "none"  # "none" when missing, "stream", or the type of another value
    length: int = 0
    first_id: str | None = None
    last_id: str | None = None
    last_generated_id: str = "0-0"
    entries_added: int | None = None
    max_deleted_id: str | None = None
    groups: dict[str, GroupState] = field(default_factory=dict)
    topic_owner: OwnerRecord | None = None
    group_owners: dict[str, OwnerRecord] = field(default_factory=dict)
    reset_records: dict[str, ResetRecord] = field(default_factory=dict)  # read for groups with spec.reset
    registry_epoch: str | None = None  # None: the registry has none (new, or lost with Redis' data)
    failure: Failure | None = None
    server_time_ms: int | None = None
    radix_tree_keys: int | None = None
    radix_tree_nodes: int | None = None

    @property
    def exists(self) -> bool:
        return self.type == "stream"

    def safe_bound(self) -> tuple[StreamId, str, str] | None:
        """The lowest bound over all groups: (bound, group, reason); None when no group
        holds anything back (or there are no groups)."""
        best = None
        for group in self.groups.values():
            needed = group.safe_bound()
            if needed is not None and (best is None or needed[0] < best[0]):
                best = (needed[0], group.name, needed[1])
        return best
