"""What the CLI checks before it plans: that Redis answers at all, and what each declared
resource already owns by the ownership registry.

The CLI keeps no memory between runs; the registry is its memory. A Topic whose record
names stream "a" and whose manifest now says streamName "b" would otherwise be planned as
a second stream, with "a" recorded as owned for good (an orphan no apply ever releases).
The CRD refuses that change (streamName, groupName and topicRef are immutable); the CLI
refuses it from the record. The same records tell a ConsumerGroup applied without its
Topic's file which stream that Topic owns.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

import redis
import redis.exceptions as rex
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..connection import SeedClient
from .errors import Failure, describe
from .intents import Owner
from .ownership import OwnerRecord
from .plan import Plan, TopicPlan, describe_owner

IMMUTABLE = "FieldImmutable"


def reach(client: redis.Redis | redis.RedisCluster, target: str) -> Failure | None:
    """One PING and a one-step SCAN (keyless, in every rule set that plans, so a key
    pattern cannot refuse it) on a new connection, without redis-py's retries (each would
    wait the whole socket timeout again): a Redis that is down, refuses the password or
    the TLS handshake, never answers or refuses the user everything costs one timeout and
    gives one failure, before any resource is planned. None when it answered (a refused
    PING is an answer: the manager's ACL need not allow it). Behind Sentinel the client's
    own retries apply: they ride out a failover."""
    if not isinstance(client, SeedClient):
        try:
            try:
                client.ping()
            except rex.ResponseError:
                pass
            client.scan(0, count=1)
        except rex.NoPermissionError as exc:
            return describe(exc, target)
        except rex.ResponseError:
            pass
        except (rex.RedisError, OSError) as exc:
            return describe(exc, target)
        return None
    pool = client.connection_pool
    options = {**pool.connection_kwargs, "retry": Retry(NoBackoff(), 0)}
    failure = None
    for address in client.seeds or (None,):  # a Redis Cluster: any seed answering will do
        connection = pool.connection_class(**(options if address is None else
                                              {**options, "host": address[0], "port": address[1]}))
        try:
            connection.connect()
            connection.send_command("PING")
            connection.send_command("SCAN", 0, "COUNT", 1)
            for command in ("PING", "SCAN"):
                try:
                    connection.read_response()
                except rex.NoPermissionError as exc:
                    if command == "SCAN":
                        return describe(exc, target)
                except rex.ResponseError:
                    pass
            return None
        except (rex.RedisError, OSError) as exc:
            failure = describe(exc, target)
        finally:
            connection.disconnect()
    return failure


@dataclass
class Claims:
    """Per owner, the (stream, group) keys it holds records of (group None: a Topic's)."""

    topics: dict[Owner, list[str]] = field(default_factory=dict)
    groups: dict[Owner, list[tuple[str, str]]] = field(default_factory=dict)


def read_claims(entries: Iterable[tuple[str, str, str]], topics: AbstractSet[Owner],
                groups: AbstractSet[Owner]) -> Claims:
    """The records of these Topic and ConsumerGroup owners among registry ``entries``
    (registry key, field, record). Unreadable fields and records are no one's."""
    claims = Claims()
    # A few owners are looked for by their name's text first (resource names need no JSON
    # escapes): a new Topic against 40,000 records decodes next to none of them.
    names = {o.name for o in (*topics, *groups)}
    few = len(names) <= 8
    for _, name, raw in entries:
        if few and not any(n in raw for n in names):
            continue
        try:
            parts = json.loads(name)
        except ValueError:
            continue
        if not isinstance(parts, list) or not parts or parts[0] not in ("topic", "group"):
            continue
        record = OwnerRecord.decode(raw)
        if record is None:
            continue
        if parts[0] == "topic" and len(parts) == 2 and record.owner in topics:
            claims.topics.setdefault(record.owner, []).append(parts[1])
        elif parts[0] == "group" and len(parts) == 3 and record.owner in groups:
            claims.groups.setdefault(record.owner, []).append((parts[1], parts[2]))
    return claims


def new_claims(plan: Plan) -> tuple[set[Owner], set[Owner]]:
    """Topic and ConsumerGroup owners whose resource would record a stream or group it
    holds no record of."""
    return ({p.intent.owner for p in plan.topics if p.record_is_new and not p.failure},
            {p.intent.owner for p in plan.groups if p.record_is_new and not p.failure})


def refuse_moves(plan: Plan, claims: Claims) -> None:
    """Fails each new claim of a resource that owns another stream or group (its groups
    fail with their Topic): nothing is written for it, and the old one stays owned."""
    failed: dict[Owner, TopicPlan] = {}
    for topic in plan.topics:
        owned = [s for s in claims.topics.get(topic.intent.owner, ()) if s != topic.intent.stream]
        if topic.record_is_new and not topic.failure and owned:
            failed[topic.intent.owner] = topic
            topic.failure = Failure(IMMUTABLE, (
                f'spec.streamName is immutable: {describe_owner(topic.intent.owner, "Topic")} owns stream '
                f'"{owned[0]}" (its ownership record), not "{topic.intent.stream}". To move it, delete the Topic '
                "(redistreams delete -f with the old manifest) and apply it again, or declare the new stream "
                "with a Topic of another name"
            ))
    for group in plan.groups:
        intent = group.intent
        if group.failure:
            continue
        if intent.topic in failed:
            topic = failed[intent.topic]
            assert topic.failure is not None
            group.failure = Failure(IMMUTABLE, f"{topic.intent.label}: {topic.failure.message}")
            continue
        owned_groups = [k for k in claims.groups.get(intent.owner, ()) if k != (intent.stream, intent.group)]
        if not group.record_is_new or not owned_groups:
            continue
        stream, name = owned_groups[0]
        what = "spec.groupName" if stream == intent.stream else "spec.topicRef"
        group.failure = Failure(IMMUTABLE, (
            f'{what} is immutable: {describe_owner(intent.owner, "ConsumerGroup")} owns group "{name}" on stream '
            f'"{stream}" (its ownership record), not group "{intent.group}" on "{intent.stream}". To move it, '
            "delete the ConsumerGroup (redistreams delete -f with the old manifest) and apply it again, or "
            "declare the new group with a ConsumerGroup of another name"
        ))
