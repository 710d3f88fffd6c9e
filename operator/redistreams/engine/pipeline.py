"""Talking to Redis: pipelined round trips, counted, with each reply handed to its caller.

Every command the engine sends goes through here, so round trips stay bounded and
countable (Stats), and names that are not UTF-8 go back to Redis as the bytes it has.

On a Redis Cluster (a ``redis.RedisCluster`` client) a pipeline becomes one round trip
per master, written to all of them before any is read (``ClusterSender``): each command
goes to the master of its key's slot, the scripts are loaded on each master in front of
their first use, redirections (MOVED, ASK), TRYAGAIN, CLUSTERDOWN, NOSCRIPT and lost
nodes are retried for a few seconds (a failover), and a slot that no master serves
fails its own commands only, as a reply naming the slot.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import redis
import redis.exceptions as rex
from redis.cluster import ClusterNode, PipelineCommand

from ..printable import wire
from .errors import Failure, describe, is_connection_problem
from .registry import key_slot
from .scripts import LuaScript


@dataclass
class Stats:
    """Work done against Redis, for benchmarks and for the no-op guarantee."""

    round_trips: int = 0  # on a cluster: one per master per pipeline
    commands: int = 0
    writes: int = 0
    node_round_trips: Counter[str] = field(default_factory=Counter)  # cluster: per "host:port"

    def reset(self) -> None:
        self.round_trips = self.commands = self.writes = 0
        self.node_round_trips.clear()


class Pipeliner:
    """Runs non-transactional pipelines and keeps Stats."""

    def __init__(self, client: redis.Redis | redis.RedisCluster, stats: Stats, target: str = "") -> None:
        self.client = client
        self.stats = stats
        self.target = target

    @property
    def cluster(self) -> bool:
        return isinstance(self.client, redis.RedisCluster)

    def run(self, build: Callable[[Any], None], *, writes: int = 0) -> list[Any]:
        if isinstance(self.client, redis.RedisCluster):
            pipe = _recorder()
        else:
            pipe = self.client.pipeline(transaction=False)
        build(pipe)
        size = len(pipe.command_stack)
        if not size:
            return []
        self.stats.commands += size
        self.stats.writes += writes
        as_sent(pipe.command_stack)
        if isinstance(self.client, redis.RedisCluster):
            return ClusterSender(self.client, self.stats).run(pipe.command_stack)
        self.stats.round_trips += 1
        replies: list[Any] = pipe.execute(raise_on_error=False)
        return replies


def _recorder() -> Any:
    """A pipeline that only records (a standalone one never executed): the engine builds
    with redis-py's command methods, ClusterSender routes what they queued."""
    global _RECORDING_CLIENT
    if _RECORDING_CLIENT is None:
        _RECORDING_CLIENT = redis.Redis()  # never connects: its pipelines are not executed
    return _RECORDING_CLIENT.pipeline(transaction=False)


_RECORDING_CLIENT: redis.Redis | None = None
# Commands whose first argument is not their key.
_KEYLESS = frozenset({"TIME", "PING", "INFO", "SCRIPT"})
_SCRIPT_CALLS = frozenset({"EVALSHA", "EVALSHA_RO", "EVAL", "EVAL_RO"})  # <script> <numkeys> <keys…>
# Replies worth another round: the slot moved or is moving, the node went away, the
# cluster is electing a new master, or a master lost its script cache.
_RETRY = (rex.MovedError, rex.AskError, rex.TryAgainError, rex.ClusterDownError, rex.ConnectionError,
          rex.TimeoutError, rex.NoScriptError)


class SlotUnservedError(rex.ClusterDownError):
    """A command's hash slot has no master (unassigned, or its master lost with no replica)."""

    def __init__(self, slot: int, detail: str = "") -> None:
        super().__init__(f"CLUSTERDOWN hash slot {slot} is served by no master of the Redis Cluster{detail}")
        self.slot = slot


class ClusterSender:
    """One recorded pipeline sent to a Redis Cluster: a round trip per master per round,
    rounds repeated (with a short backoff) for what was redirected or refused for a
    moment, until ``retry_seconds`` have passed."""

    retry_seconds = 6.0

    def __init__(self, client: redis.RedisCluster, stats: Stats) -> None:
        self.client = client
        self.stats = stats

    def run(self, stack: list[tuple[tuple[Any, ...], dict[str, Any]]]) -> list[Any]:
        results: list[Any] = [None] * len(stack)
        sources: dict[str, str] = {}  # sha -> script source, from the SCRIPT LOADs queued
        load_at: dict[str, int] = {}  # sha -> position of its SCRIPT LOAD in the stack
        slots: dict[int, int | None] = {}
        pending: list[int] = []
        for index, (args, _) in enumerate(stack):
            if _is_script_load(args):
                source = str(args[2])
                sha = hashlib.sha1(source.encode()).hexdigest()
                sources[sha], load_at[sha] = source, index
                results[index] = sha
            else:
                slots[index] = self._slot(args)
                pending.append(index)
        cache = self.client.nodes_manager.slots_cache
        if any(not cache.get(slot) for slot in {slots[i] for i in pending} if slot is not None):
            self._refresh()  # the slot map says a slot has no master: it may have one by now
        asking: dict[int, ClusterNode] = {}
        started = time.monotonic()
        delay = 0.05
        while pending:
            retry = self._round(stack, pending, slots, asking, sources, load_at, results)
            if not retry or time.monotonic() - started > self.retry_seconds:
                break
            if any(not isinstance(results[i], (rex.MovedError, rex.AskError)) for i in retry):
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
            if any(isinstance(results[i], (rex.MovedError, rex.ConnectionError, rex.TimeoutError,
                                           rex.ClusterDownError)) for i in retry):
                self._refresh()
            pending = retry
        for index in pending:  # still refused when the time was up
            reply = results[index]
            slot = slots.get(index)
            if slot is None:
                continue
            if isinstance(reply, rex.ClusterDownError) and not isinstance(reply, SlotUnservedError):
                results[index] = SlotUnservedError(slot, f" ({reply})")
            elif isinstance(reply, (rex.AskError, rex.MovedError, rex.TryAgainError)):
                results[index] = rex.TryAgainError(f"hash slot {slot} is being migrated between masters")
        return results

    def _round(self, stack: list[tuple[tuple[Any, ...], dict[str, Any]]], pending: list[int],
               slots: dict[int, int | None], asking: dict[int, ClusterNode], sources: dict[str, str],
               load_at: dict[str, int], results: list[Any]) -> list[int]:
        """Sends ``pending`` once; returns the positions to send again."""
        by_node: dict[str, list[int]] = {}
        nodes: dict[str, ClusterNode] = {}
        masters: dict[int | None, ClusterNode | None] = {}  # slot -> its master, this round
        for index in pending:
            slot = slots[index]
            node = asking.get(index)
            if node is None:
                if slot not in masters:
                    masters[slot] = self._node(slot)
                node = masters[slot]
            if node is None:
                slot = slots[index]
                results[index] = SlotUnservedError(slot if slot is not None else -1)
                continue
            nodes[node.name] = node
            by_node.setdefault(node.name, []).append(index)
        commands: list[PipelineCommand] = []
        sent: list[int | None] = []  # stack position per command; None: a load or ASKING
        for name, indices in by_node.items():
            node = nodes[name]
            needed = dict.fromkeys(str(stack[i][0][1]) for i in indices if stack[i][0][0] in _SCRIPT_CALLS)
            for sha in needed:
                if sha in sources:
                    commands.append(PipelineCommand(("SCRIPT", "LOAD", sources[sha]), {"target_nodes": node},  # type: ignore[no-untyped-call]
                                                    len(commands)))
                    sent.append(-1 - load_at[sha])  # a load: its failure is its script's
            for index in indices:
                args, options = stack[index]
                if index in asking:
                    commands.append(PipelineCommand(("ASKING",), {"target_nodes": node}, len(commands)))  # type: ignore[no-untyped-call]
                    sent.append(None)
                commands.append(PipelineCommand(args, {**options, "target_nodes": node}, len(commands)))  # type: ignore[no-untyped-call]
                sent.append(index)
            self.stats.node_round_trips[name] += 1
        if not commands:
            return []
        self.stats.round_trips += len(by_node)
        pipe = self.client.pipeline(transaction=False)  # type: ignore[no-untyped-call]
        try:
            replies = pipe.send_cluster_commands(commands, raise_on_error=False, allow_redirections=False)
        except (rex.RedisError, rex.RedisClusterException, OSError) as exc:
            error = exc if isinstance(exc, rex.RedisError) else rex.ConnectionError(f"Redis Cluster: {exc}")
            replies = [error] * len(commands)
        retry: list[int] = []
        asking_now: dict[int, ClusterNode] = {}
        loads: dict[int, Any] = {}  # stack position of a SCRIPT LOAD -> its sha, or its first error this round
        for position, reply in zip(sent, replies):
            if position is None:
                continue
            if position < 0:  # a script load, on one master
                load = -1 - position
                if not isinstance(loads.get(load), Exception):
                    loads[load] = reply
                continue
            results[position] = reply
            if isinstance(reply, rex.AskError):
                asking_now[position] = (self.client.get_node(host=reply.host, port=reply.port)  # type: ignore[no-untyped-call]
                                        or ClusterNode(reply.host, reply.port))  # type: ignore[no-untyped-call]
            if isinstance(reply, _RETRY) and not isinstance(reply, SlotUnservedError):
                retry.append(position)
        for load, reply in loads.items():
            results[load] = reply
        refused = {str(stack[load][0][2]) for load, reply in loads.items()
                   if isinstance(reply, Exception) and not isinstance(reply, _RETRY)}
        if refused:  # a load refused for good (ACL…): its calls fail with it, no NOSCRIPT rounds
            refused_shas = {hashlib.sha1(source.encode()).hexdigest() for source in refused}
            retry = [i for i in retry if not (isinstance(results[i], rex.NoScriptError)
                                              and str(stack[i][0][1]) in refused_shas)]
        asking.clear()
        asking.update(asking_now)
        return retry

    def _slot(self, args: tuple[Any, ...]) -> int | None:
        name = args[0]
        if name in _SCRIPT_CALLS:
            return key_slot(args[3]) if int(args[2]) else None
        if name in _KEYLESS or len(args) < 2:
            return None
        if name == "XINFO":  # sent as two words: XINFO <subcommand> <key>
            return key_slot(args[2])
        return key_slot(args[1])

    def _node(self, slot: int | None) -> ClusterNode | None:
        """The master of a slot by the client's slot map (its first node), or None."""
        if slot is None:
            node: ClusterNode | None = self.client.get_default_node()  # type: ignore[no-untyped-call]
            return node
        serving = self.client.nodes_manager.slots_cache.get(slot)
        return serving[0] if serving else None

    def _refresh(self) -> None:
        try:
            self.client.nodes_manager.initialize()
        except (rex.RedisError, rex.RedisClusterException, OSError):
            pass  # no node answered: the next round tries again with what is known


def _is_script_load(args: tuple[Any, ...]) -> bool:
    return args[0] == "SCRIPT" and len(args) > 2 and str(args[1]).upper() == "LOAD"


def as_sent(stack: list[Any]) -> None:
    """Every queued command with its names as Redis has them (see ``wire``)."""
    for index, (args, options) in enumerate(stack):
        for arg in args:
            if arg.__class__ is str and not arg.isascii():
                stack[index] = (tuple(wire(a) for a in args), options)
                break


@dataclass
class Call:
    """One command in a pipeline, with what to do with its reply."""

    build: Callable[[Any], None]
    done: Callable[[Any], None]
    fail: Callable[[Failure], None]
    write: bool = True
    script: LuaScript | None = None


def run_calls(io: Pipeliner, calls: list[Call], chunk: int = 5000) -> None:
    """Runs calls in pipelines of at most ``chunk`` commands, each script loaded in front
    of its first use (a server that lost its script cache costs no extra round trip). A
    lost connection fails the rest (on a cluster, only what went to that node: others
    may be up)."""
    dead: Failure | None = None
    for start in range(0, len(calls), chunk):
        part = calls[start : start + chunk]
        if dead is not None:
            for call in part:
                call.fail(dead)
            continue
        scripts = list(dict.fromkeys(c.script for c in part if c.script is not None))
        try:
            replies = io.run(partial(_queue, scripts, part), writes=sum(c.write for c in part))
        except (rex.ConnectionError, rex.TimeoutError, rex.AuthenticationError) as exc:
            failure = describe(exc, io.target)
            for call in part:
                call.fail(failure)
            if not io.cluster:
                dead = failure
            continue
        load_failures = {}
        for script, reply in zip(scripts, replies):
            if isinstance(reply, Exception):
                load_failures[script] = describe(reply, io.target)
        for call, reply in zip(part, replies[len(scripts) :]):
            if call.script in load_failures:
                call.fail(load_failures[call.script])
            elif isinstance(reply, Exception):
                failure = describe(reply, io.target)
                call.fail(failure)
                if is_connection_problem(failure) and not io.cluster:
                    dead = failure
            else:
                call.done(reply)


def _queue(scripts: list[LuaScript], calls: list[Call], pipe: Any) -> None:
    for script in scripts:
        script.load(pipe)
    for call in calls:
        call.build(pipe)
