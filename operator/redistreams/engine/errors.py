"""Redis failures turned into a reason (for status conditions) and a clear message."""

from __future__ import annotations

from dataclasses import dataclass

import redis.exceptions as rex

from ..connection import redact

# Reasons double as Kubernetes condition reasons, so they are CamelCase words.
REDIS_UNAVAILABLE = "RedisUnavailable"
PERMISSION_DENIED = "PermissionDenied"
READ_ONLY = "ReadOnlyReplica"
TIMEOUT = "RedisTimeout"
WRONG_TYPE = "WrongType"
CONFLICT = "Conflict"
REDIS_ERROR = "RedisError"
AUTH_FAILED = "AuthenticationFailed"
TOPIC_NOT_READY = "TopicNotReady"
CLUSTER_NODE = "RedisClusterNode"


@dataclass(frozen=True)
class Failure:
    reason: str
    message: str

    def __str__(self) -> str:
        return self.message


def describe(exc: BaseException, target: str = "") -> Failure:
    """A Failure for any exception raised by redis-py (or returned in a pipeline).

    ``target`` is shown through ``redact`` whatever the caller passed.
    """
    at = f" at {redact(target)}" if target else ""
    text = str(exc).strip()
    if isinstance(exc, (rex.AuthenticationError, rex.AuthenticationWrongNumberOfArgsError)) or text.startswith(
        ("WRONGPASS", "NOAUTH")
    ):
        return Failure(AUTH_FAILED, f"Redis{at} refused the credentials: {text}")
    if isinstance(exc, rex.TimeoutError):
        return Failure(TIMEOUT, f"Redis{at} did not answer in time: {text or 'timeout'}")
    if isinstance(exc, rex.ConnectionError):
        return Failure(REDIS_UNAVAILABLE, f"Redis{at} is unreachable: {text or type(exc).__name__}")
    if isinstance(exc, rex.NoPermissionError) or text.startswith("NOPERM"):
        return Failure(PERMISSION_DENIED, f"permission denied by Redis ACL{at}: {text.removeprefix('NOPERM ')}")
    if isinstance(exc, rex.ReadOnlyError) or text.startswith("READONLY"):
        return Failure(READ_ONLY, f"Redis{at} is a read-only replica; point the URL at the primary")
    if isinstance(exc, (rex.MovedError, rex.AskError)) or text.startswith(("MOVED ", "ASK ", "CLUSTERDOWN")):
        # redis-py shows MOVED as a bare "3999 10.0.0.7:6379"; say what it means.
        slot, _, node = text.removeprefix("MOVED ").removeprefix("ASK ").partition(" ")
        where = f" (slot {slot} is served by {node})" if node else ""
        return Failure(CLUSTER_NODE, f"Redis{at} is a Redis Cluster node{where}: this version of redistreams "
                                     "connects to a standalone Redis (or the primary Sentinel reports) only")
    if text.startswith("WRONGTYPE"):
        return Failure(WRONG_TYPE, "the key holds a value of another type")
    if text.startswith("NOSCRIPT") or ("unknown command" in text and "eval" in text.lower()):
        return Failure(PERMISSION_DENIED, f"Redis{at} does not allow Lua scripts (EVAL/EVALSHA): {text}")
    return Failure(REDIS_ERROR, f"Redis error{at}: {text or type(exc).__name__}")


def is_connection_problem(failure: Failure) -> bool:
    return failure.reason in (REDIS_UNAVAILABLE, TIMEOUT, AUTH_FAILED)
