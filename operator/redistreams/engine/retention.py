"""Retention: what maxLength/maxAge ask to remove, the safe point no trim may pass, and
the trimming itself (trim.lua), in bounded steps.

The safe point is the oldest entry some group has not received or not acknowledged;
nothing at or after it is removed unless allowTrimmingUnconsumed. trim.lua decides it
and trims in one atomic step, at most ``step`` entries per call, so no group can move in
between and a huge backlog never blocks Redis.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..units import format_duration
from .errors import Failure
from .ids import StreamId
from .intents import RetentionPolicy
from .pipeline import Call, Pipeliner, run_calls
from .scripts import TRIM
from .state import StreamState

PENDING = "pending"  # delivered, not acknowledged
UNDELIVERED = "undelivered"


def blocked_text(group: str, reason: str, pending: int | None = None) -> str:
    """Why retention stops where it does, for results, status messages and Events."""
    if reason == PENDING:
        count = f" ({pending} pending)" if pending is not None else ""
        return f'retention blocked by group "{group}": entries delivered but not acknowledged{count}'
    return f'retention blocked by group "{group}": entries not yet delivered to it'


@dataclass
class Decision:
    """What a policy asks of an observed stream."""

    trim: bool = False
    blocked: tuple[str, str] | None = None  # (group, reason) holding the head back
    notes: list[str] = field(default_factory=list)


def decide(policy: RetentionPolicy, state: StreamState) -> Decision:
    """Pure: whether to trim, as observed (trim.lua checks again, atomically)."""
    decision = Decision()
    if not state.exists or state.length == 0 or state.first_id is None:
        return decision
    reasons = []
    if policy.max_length is not None and state.length > policy.max_length:
        reasons.append(f"{state.length - policy.max_length} entries over maxLength {policy.max_length}")
    if policy.max_age_seconds is not None and state.server_time_ms is not None:
        cutoff = state.server_time_ms - policy.max_age_seconds * 1000
        if StreamId.parse(state.first_id).ms < cutoff:
            reasons.append(f"entries older than maxAge {format_duration(policy.max_age_seconds)}")
    if not reasons:
        return decision
    bound = None if policy.allow_trimming_unconsumed else state.safe_bound()
    if bound is not None and StreamId.parse(state.first_id) >= bound[0]:
        group = state.groups.get(bound[1])
        decision.blocked = (bound[1], bound[2])
        decision.notes.append(blocked_text(bound[1], bound[2], group.pending if group else None))
        return decision
    decision.trim = True
    decision.notes.append("trim " + " and ".join(reasons))
    return decision


@dataclass
class TrimStep:
    """What trimming one stream did: one step (a round) or all of them (to the end)."""

    removed: int = 0
    more: bool = False  # the last step was full: call again
    blocker: str | None = None  # the group holding entries back, if any
    reason: str | None = None  # PENDING or UNDELIVERED
    failure: Failure | None = None


def trim_args(policy: RetentionPolicy, step: int) -> list[int]:
    return [
        policy.max_length if policy.max_length is not None else -1,
        policy.max_age_seconds * 1000 if policy.max_age_seconds is not None else -1,
        1 if policy.allow_trimming_unconsumed else 0,
        step,
        int(time.time() * 1000),  # used only when the ACL denies TIME
    ]


class Trimmer:
    def __init__(self, io: Pipeliner, step: int = 1000, chunk: int = 5000) -> None:
        self.io = io
        self.step = step
        self.chunk = chunk

    def _call(self, stream: str, policy: RetentionPolicy, outcome: TrimStep) -> Call:
        args = trim_args(policy, self.step)

        def done(reply: Any) -> None:
            outcome.removed += int(reply[0])
            outcome.more = bool(int(reply[1]))
            outcome.blocker, outcome.reason = (reply[2] or None), (reply[3] or None)

        def fail(failure: Failure) -> None:
            outcome.failure, outcome.more = failure, False

        return Call(build=lambda pipe: TRIM.call(pipe, [stream], args), done=done, fail=fail, script=TRIM)

    def round(self, streams: list[tuple[str, RetentionPolicy]], per_pipeline: int = 50) -> list[TrimStep]:
        """One step per stream. Redis runs a client's pipeline without serving others in
        between, so pipelines stay short; callers pause between rounds and cap them."""
        steps = [TrimStep() for _ in streams]
        calls = [self._call(stream, policy, step) for (stream, policy), step in zip(streams, steps)]
        for start in range(0, len(calls), per_pipeline):
            run_calls(self.io, calls[start : start + per_pipeline], self.chunk)
        return steps

    def to_end(self, streams: list[tuple[str, RetentionPolicy]]) -> list[TrimStep]:
        """Steps until nothing is due or something blocks (the CLI's apply)."""
        totals = [TrimStep() for _ in streams]
        active = list(range(len(streams)))
        while active:
            calls = [self._call(*streams[i], totals[i]) for i in active]
            run_calls(self.io, calls, self.chunk)
            active = [i for i in active if totals[i].more and totals[i].failure is None]
        return totals
