"""Redis failures turned into a reason (for status conditions) and a clear message."""

from __future__ import annotations

from dataclasses import dataclass

import redis.exceptions as rex

from ..acl import permission_message, user_of
from ..connection import redact
from ..tls import tls_problem

# Reasons double as Kubernetes condition reasons, so they are CamelCase words.
REDIS_UNAVAILABLE = "RedisUnavailable"
PERMISSION_DENIED = "PermissionDenied"
READ_ONLY = "ReadOnlyReplica"
TIMEOUT = "RedisTimeout"
WRONG_TYPE = "WrongType"
CONFLICT = "Conflict"
REDIS_ERROR = "RedisError"
AUTH_FAILED = "AuthenticationFailed"
TLS_FAILED = "TLSFailed"
TOPIC_NOT_READY = "TopicNotReady"
CLUSTER_NODE = "RedisClusterNode"  # a cluster node reached without a cluster connection
CLUSTER_DOWN = "ClusterSlotUnavailable"  # a hash slot without a master, or moving for too long


@dataclass(frozen=True)
class Failure:
    reason: str
    message: str

    def __str__(self) -> str:
        return self.message


def describe(exc: BaseException, target: str = "", key: str | None = None) -> Failure:
    """A Failure for any exception raised by redis-py (or returned in a pipeline).

    ``target`` is shown through ``redact`` whatever the caller passed; ``key``, the
    resource's key, is named in a NOPERM that does not name one.
    """
    at = f" at {redact(target)}" if target else ""
    text = str(exc).strip()
    if isinstance(exc, (rex.AuthenticationError, rex.AuthenticationWrongNumberOfArgsError)) or text.startswith(
        ("WRONGPASS", "NOAUTH")
    ):
        return Failure(AUTH_FAILED, f"Redis{at} refused the credentials: {text}")
    if isinstance(exc, (rex.ConnectionError, rex.TimeoutError, OSError)) and (tls := tls_problem(exc)):
        return Failure(TLS_FAILED, f"TLS connection to Redis{at} failed: {tls}")
    if type(exc).__name__ == "MasterNotFoundError":  # redis.sentinel's and redis.asyncio.sentinel's
        return Failure(REDIS_UNAVAILABLE, f"Redis{at}: no sentinel named the master: the sentinels are unreachable, "
                                          "refused their credentials (sentinel_username, sentinel_password) or do "
                                          "not monitor that name")
    if isinstance(exc, rex.TimeoutError):
        return Failure(TIMEOUT, f"Redis{at} did not answer in time: {text or 'timeout'}")
    if isinstance(exc, rex.ConnectionError):
        # A TLS-only port resets a plain-text client at its first command.
        hint = " (if the server only accepts TLS, use rediss://)" if "reset by peer" in text else ""
        return Failure(REDIS_UNAVAILABLE, f"Redis{at} is unreachable: {text or type(exc).__name__}{hint}")
    if isinstance(exc, rex.NoPermissionError) or text.startswith("NOPERM"):
        return Failure(PERMISSION_DENIED,
                       f"permission denied by Redis ACL{at}: {permission_message(text, user_of(target), key)}")
    if isinstance(exc, rex.ReadOnlyError) or text.startswith("READONLY"):
        return Failure(READ_ONLY, f"Redis{at} is a read-only replica; point the URL at the primary")
    if isinstance(exc, (rex.ClusterDownError, rex.SlotNotCoveredError)) or text.startswith("CLUSTERDOWN"):
        return Failure(CLUSTER_DOWN, f"Redis Cluster{at}: {text.removeprefix('CLUSTERDOWN ')}")
    if isinstance(exc, rex.TryAgainError) or text.startswith("TRYAGAIN"):
        return Failure(CLUSTER_DOWN, f"Redis Cluster{at}: the hash slot was being migrated for longer than "
                                     f"redistreams waits ({text.removeprefix('TRYAGAIN ')}); apply again")
    if isinstance(exc, (rex.MovedError, rex.AskError)) or text.startswith(("MOVED ", "ASK ")):
        # A cluster connection follows these; a standalone one reached a cluster node whose
        # cluster could not be found out. redis-py shows MOVED as a bare "3999 10.0.0.7:6379".
        slot, _, node = text.removeprefix("MOVED ").removeprefix("ASK ").partition(" ")
        where = f" (slot {slot} is served by {node})" if node else ""
        return Failure(CLUSTER_NODE, f"Redis{at} is a Redis Cluster node{where}, reached without a cluster "
                                     "connection: use redis+cluster://host:port[,host:port…]")
    if text.startswith("WRONGTYPE"):
        return Failure(WRONG_TYPE, "the key holds a value of another type")
    if text.startswith("NOSCRIPT") or ("unknown command" in text and "eval" in text.lower()):
        return Failure(PERMISSION_DENIED, f"Redis{at} does not allow Lua scripts (EVAL/EVALSHA): {text}")
    return Failure(REDIS_ERROR, f"Redis error{at}: {text or type(exc).__name__}")


def is_connection_problem(failure: Failure) -> bool:
    return failure.reason in (REDIS_UNAVAILABLE, TIMEOUT, AUTH_FAILED, TLS_FAILED)
