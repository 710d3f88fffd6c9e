"""Reading Redis: a bounded number of pipelined round trips per batch of streams.

Per chunk of streams, one round trip reads XINFO STREAM, XINFO GROUPS and the ownership
records; a second one, only when needed, reads key types of non-streams, the oldest
pending entry of groups with pending entries, and exact lag where Redis reports none.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from functools import partial
from typing import Any, TypeVar

import redis.exceptions as rex

from .errors import PERMISSION_DENIED, Failure, describe
from .ids import StreamId
from .ownership import EPOCH_FIELD, OwnerRecord, ResetRecord, decode_epoch, group_field, reset_field, topic_field
from .pipeline import Pipeliner
from .registry import Registry
from .scripts import COUNT_AFTER
from .state import ConsumerState, GroupState, StreamState

LAG_COUNT_CAP = 100_000
# Groups with more consumers than this get no per-consumer detail (XINFO CONSUMERS is
# O(consumers) and its reply grows with them); their group figures are still read.
CONSUMER_DETAIL_CAP = 100
# spec.consumerCleanup needs the consumers of its groups; beyond this many it waits (plan says so).
CLEANUP_CONSUMER_CAP = 10_000


class ObservationError(Exception):
    """Redis could not be read at all (unreachable, auth); carries the Failure."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


_Item = TypeVar("_Item", tuple[str, str | None, str], tuple[str, str])


def _by_registry(registry: Registry, items: list[_Item]) -> dict[str, list[_Item]]:
    """Items (stream first) grouped by the registry key holding their stream's records."""
    grouped: dict[str, list[_Item]] = {}
    for item in items:
        grouped.setdefault(registry.key_for(item[0]), []).append(item)
    return grouped


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _server_time(reply: Any) -> int:
    """Milliseconds from TIME, or this machine's clock when TIME was refused (an ACL
    without +time): it only serves maxAge planning and idle figures."""
    if isinstance(reply, Exception):
        return int(time.time() * 1000)
    seconds, micros = reply
    return int(seconds) * 1000 + int(micros) // 1000


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


class Observer:
    def __init__(self, io: Pipeliner, registry_key: str, chunk_size: int = 500) -> None:
        self.io = io
        self.registry_key = registry_key
        self.registry = Registry(registry_key)  # per slot on a Redis Cluster (the engine sets it)
        self.chunk_size = chunk_size
        self.consumer_cap = CONSUMER_DETAIL_CAP
        self.consumers_skipped = 0  # groups left without consumer detail by the last observe

    def observe(
        self,
        keys: Iterable[str],
        *,
        owner_groups: Mapping[str, Iterable[str]] | None = None,
        detail_keys: Iterable[str] = (),
        exact_lag: bool = False,
        owners: bool = True,
        consumer_keys: Iterable[str] = (),
        reset_groups: Mapping[str, Iterable[str]] | None = None,
        cleanup_groups: Mapping[str, Iterable[str]] | None = None,
    ) -> dict[str, StreamState]:
        """State of each stream key. Raises ObservationError if Redis cannot be reached.

        reset_groups: groups whose spec.reset record to read; cleanup_groups: groups whose
        consumers to read for spec.consumerCleanup."""
        ordered = list(dict.fromkeys(keys))
        owner_groups = owner_groups or {}
        details = set(detail_keys)
        consumers = set(consumer_keys)
        reset_groups = reset_groups or {}
        cleanup = {(key, g) for key, groups in (cleanup_groups or {}).items() for g in groups}
        self.consumers_skipped = 0
        states: dict[str, StreamState] = {}
        server_time: int | None = None
        time_asked = False
        for chunk in _chunks(ordered, self.chunk_size):
            fields: list[tuple[str, str | None, str]] = []
            if owners:
                for key in chunk:
                    fields.append((key, None, topic_field(key)))
                    fields.extend((key, g, group_field(key, g)) for g in dict.fromkeys(owner_groups.get(key, ())))
            resets = [(key, g) for key in chunk for g in dict.fromkeys(reset_groups.get(key, ()))]
            # One read per registry key (one key, except on a Redis Cluster: see registry.py).
            field_reads = _by_registry(self.registry, fields)
            reset_reads = _by_registry(self.registry, resets)

            ask_time = not time_asked
            replies = self._run(partial(self._first_pass, chunk, field_reads, reset_reads, ask_time))
            if ask_time:
                time_asked = True
                server_time = _server_time(replies.pop())
            for index, key in enumerate(chunk):
                states[key] = self._stream_state(key, replies[2 * index], replies[2 * index + 1])
                states[key].server_time_ms = server_time
            read = iter(replies[2 * len(chunk):])
            for registry, some_fields in field_reads.items():
                self._apply_owners(states, some_fields, next(read), registry)
            for registry, some_resets in reset_reads.items():
                reset_reply = next(read)
                for (key, group), raw in zip(some_resets, [] if isinstance(reset_reply, Exception) else reset_reply):
                    record = ResetRecord.decode(raw)
                    if record is not None:
                        states[key].reset_records[group] = record
                if isinstance(reset_reply, Exception):
                    for key, _ in some_resets:
                        states[key].failure = states[key].failure or describe(reset_reply, self.io.target, registry)
            self._second_pass(chunk, states, details, exact_lag, consumers, cleanup)
        return states

    def _first_pass(self, chunk: list[str], field_reads: dict[str, list[tuple[str, str | None, str]]],
                    reset_reads: dict[str, list[tuple[str, str]]], ask_time: bool, pipe: Any) -> None:
        """Per stream XINFO STREAM and GROUPS, the ownership records and the epoch (per
        registry key), the reset records asked for, and TIME once."""
        for key in chunk:
            pipe.xinfo_stream(key)
            pipe.xinfo_groups(key)
        for registry, fields in field_reads.items():
            pipe.hmget(registry, [f for _, _, f in fields] + [EPOCH_FIELD])
        for registry, resets in reset_reads.items():
            pipe.hmget(registry, [reset_field(k, g) for k, g in resets])
        if ask_time:
            pipe.time()

    def _run(self, build: Callable[[Any], None]) -> list[Any]:
        try:
            return self.io.run(build)
        except (rex.ConnectionError, rex.TimeoutError, rex.AuthenticationError) as exc:
            raise ObservationError(describe(exc, self.io.target)) from exc

    def _stream_state(self, key: str, info: Any, groups: Any) -> StreamState:
        state = StreamState(key)
        if isinstance(info, Exception):
            text = str(info)
            if "no such key" in text:
                return state
            if text.startswith("WRONGTYPE"):
                state.type = "?"  # resolved in the second pass
                return state
            state.type = "unknown"
            state.failure = describe(info, self.io.target, key)
            return state
        state.type = "stream"
        state.length = int(info["length"])
        state.first_id = info["first-entry"][0] if info.get("first-entry") else None
        state.last_id = info["last-entry"][0] if info.get("last-entry") else None
        state.last_generated_id = info.get("last-generated-id") or "0-0"
        state.entries_added = _int_or_none(info.get("entries-added"))
        state.max_deleted_id = info.get("max-deleted-entry-id")
        state.radix_tree_keys = _int_or_none(info.get("radix-tree-keys"))
        state.radix_tree_nodes = _int_or_none(info.get("radix-tree-nodes"))
        if isinstance(groups, Exception):
            state.failure = describe(groups, self.io.target, key)
            return state
        for g in groups:
            state.groups[g["name"]] = GroupState(
                name=g["name"],
                consumers=int(g["consumers"]),
                pending=int(g["pending"]),
                last_delivered_id=g["last-delivered-id"],
                entries_read=_int_or_none(g.get("entries-read")),
                lag=_int_or_none(g.get("lag")),
            )
            group = state.groups[g["name"]]
            group.lag_exact = group.lag is not None and group.lag <= state.length
        return state

    def _apply_owners(self, states: dict[str, StreamState], fields: list[tuple[str, str | None, str]],
                      reply: Any, registry: str) -> None:
        if isinstance(reply, Exception):
            failure = describe(reply, self.io.target, registry)
            if failure.reason == "WrongType":
                failure = Failure(
                    failure.reason, f'the ownership registry key "{registry}" holds another type'
                )
            for key, _, _ in fields:
                states[key].failure = states[key].failure or failure
            return
        epoch = decode_epoch(reply[-1]) if len(reply) > len(fields) else None
        for key, _, _ in fields:
            states[key].registry_epoch = epoch
        for (key, group, _), raw in zip(fields, reply):
            record = OwnerRecord.decode(raw)
            if record is None:
                continue
            if group is None:
                states[key].topic_owner = record
            else:
                states[key].group_owners[group] = record

    def _second_pass(self, chunk: list[str], states: dict[str, StreamState], details: set[str], exact_lag: bool,
                     consumers: AbstractSet[str] = frozenset(),
                     cleanup: AbstractSet[tuple[str, str]] = frozenset()) -> None:
        calls: list[tuple[str, str, str | None]] = []  # (kind, key, group)

        def build(pipe: Any) -> None:
            lua_loaded = False
            for key in chunk:
                state = states[key]
                if state.type == "?":
                    pipe.type(key)
                    calls.append(("type", key, None))
                if not state.exists or state.failure:
                    continue
                for group in state.groups.values():
                    if key in details and group.pending:
                        pipe.xpending_range(key, group.name, "-", "+", 1)
                        calls.append(("pending", key, group.name))
                    if exact_lag and self._needs_count(state, group):
                        if not lua_loaded:
                            COUNT_AFTER.load(pipe)
                            calls.append(("load", key, None))
                            lua_loaded = True
                        COUNT_AFTER.call(pipe, [key], [group.last_delivered_id, LAG_COUNT_CAP])
                        calls.append(("count", key, group.name))
                    for_cleanup = (key, group.name) in cleanup
                    if (key in consumers or for_cleanup) and group.consumers:
                        if group.consumers > (CLEANUP_CONSUMER_CAP if for_cleanup else self.consumer_cap):
                            self.consumers_skipped += 1
                        else:
                            pipe.xinfo_consumers(key, group.name)
                            calls.append(("consumers", key, group.name))

        if not any(states[k].type == "?" for k in chunk) and not (details or exact_lag or consumers or cleanup):
            return
        replies = self._run(build)
        load_refused: Failure | None = None  # SCRIPT LOAD refused: each count says so, not NOSCRIPT
        for (kind, key, group), reply in zip(calls, replies):
            state = states[key]
            if isinstance(reply, Exception):
                refused = describe(reply, self.io.target, key)
                if kind == "load" and refused.reason == PERMISSION_DENIED:
                    load_refused = refused
                    continue
                if kind == "count" and load_refused is not None:
                    refused = load_refused
                if refused.reason == PERMISSION_DENIED:  # a refused read is named, never a figure left out
                    state.failure = state.failure or refused
                    continue
                if kind in ("load", "consumers"):
                    continue  # a group destroyed meanwhile, say: its detail is just missing
                if kind != "type" and group is not None and state.groups[group].lag is None:
                    continue  # lag stays unknown; not worth failing the stream
                state.failure = state.failure or describe(reply, self.io.target, key)
                continue
            if kind == "type":
                state.type = reply
                continue
            if group is None:
                continue  # a script load: nothing to record
            if kind == "pending" and reply:
                entry = reply[0]
                g = state.groups[group]
                g.oldest_pending_id = entry["message_id"]
                g.oldest_pending_idle_ms = int(entry["time_since_delivered"])
                g.oldest_pending_deliveries = int(entry["times_delivered"])
            elif kind == "consumers":
                state.groups[group].consumer_states = [
                    ConsumerState(
                        name=c["name"],
                        pending=int(c["pending"]),
                        idle_ms=int(c["idle"]),
                        inactive_ms=int(c["inactive"]) if int(c.get("inactive", -1)) >= 0 else None,
                    )
                    for c in reply
                ]
            elif kind == "count":
                g = state.groups[group]
                g.lag = int(reply)
                g.lag_exact = int(reply) < LAG_COUNT_CAP

    @staticmethod
    def _needs_count(state: StreamState, group: GroupState) -> bool:
        """True when Redis' lag is missing or cannot be right and must be counted."""
        if group.lag_exact:
            return False
        if state.length == 0 or state.first_id is None:
            group.lag, group.lag_exact = 0, True
            return False
        if StreamId.parse(group.last_delivered_id) < StreamId.parse(state.first_id):
            group.lag, group.lag_exact = state.length, True
            return False
        return True
