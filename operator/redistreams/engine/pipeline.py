"""Talking to Redis: pipelined round trips, counted, with each reply handed to its caller.

Every command the engine sends goes through here, so round trips stay bounded and
countable (Stats), and names that are not UTF-8 go back to Redis as the bytes it has.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import redis
import redis.exceptions as rex

from ..printable import wire
from .errors import Failure, describe, is_connection_problem
from .scripts import LuaScript


@dataclass
class Stats:
    """Work done against Redis, for benchmarks and for the no-op guarantee."""

    round_trips: int = 0
    commands: int = 0
    writes: int = 0

    def reset(self) -> None:
        self.round_trips = self.commands = self.writes = 0


class Pipeliner:
    """Runs non-transactional pipelines and keeps Stats."""

    def __init__(self, client: redis.Redis, stats: Stats, target: str = "") -> None:
        self.client = client
        self.stats = stats
        self.target = target

    def run(self, build: Callable[[Any], None], *, writes: int = 0) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        build(pipe)
        size = len(pipe.command_stack)
        if not size:
            return []
        self.stats.round_trips += 1
        self.stats.commands += size
        self.stats.writes += writes
        as_sent(pipe.command_stack)
        return pipe.execute(raise_on_error=False)


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
    lost connection fails the rest."""
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
            dead = describe(exc, io.target)
            for call in part:
                call.fail(dead)
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
                if is_connection_problem(failure):
                    dead = failure
            else:
                call.done(reply)


def _queue(scripts: list[LuaScript], calls: list[Call], pipe: Any) -> None:
    for script in scripts:
        script.load(pipe)
    for call in calls:
        call.build(pipe)
