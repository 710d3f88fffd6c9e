"""The Redis ACL rules redistreams needs, in one place: the README, `redistreams acl` and
the tests (tests/integration/test_acl.py, test_pubsub_acl.py, the ACL suite run) all read
them from here.

Each rule set is the minimum found by experiment against Redis 7.0: the tests remove each
command in turn and check that what needs it fails with an error naming it. Key patterns
are the caller's (the streams a user may touch); the manager also needs the registry key.
Pure data and string formatting: no Redis, no models.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from . import DEFAULT_REGISTRY_KEY

# On a Redis Cluster every user also needs the slot map (redis-py's cluster client reads
# CLUSTER SLOTS and COMMAND) and, to discover the cluster from a redis:// URL, INFO
# (without it a node is taken for a standalone server). Found by experiment on the
# 3-master fixture (tests/support/redis_cluster.py).
CLUSTER_COMMANDS = ("cluster|slots", "command", "info")


@dataclass(frozen=True)
class RuleSet:
    """One documented user: the commands it needs, and those it uses only when granted."""

    name: str
    summary: str
    commands: tuple[str, ...]
    optional: tuple[str, ...] = ()  # used when granted, never needed
    registry: bool = False  # needs the ownership registry key too

    def rules(self, keys: Iterable[str], registry_key: str = DEFAULT_REGISTRY_KEY,
              with_optional: bool = False, cluster: bool = False) -> list[str]:
        """``ACL SETUSER`` arguments after the user name and password: keys, then commands.
        On a Redis Cluster the registry is one hash per slot, ``<key>{<tag>}``."""
        patterns = list(keys)
        if self.registry and "*" not in patterns:  # Redis refuses patterns after ~*
            patterns.append(f"{registry_key}{{*}}" if cluster else registry_key)
        commands = [*self.commands, *(self.optional if with_optional else ()), *(CLUSTER_COMMANDS if cluster else ())]
        return ["resetkeys", *(f"~{p}" for p in dict.fromkeys(patterns)), "resetchannels", "-@all",
                *(f"+{c}" for c in commands)]

    def setuser(self, user: str, keys: Iterable[str], password: str = "SECRET",
                registry_key: str = DEFAULT_REGISTRY_KEY, with_optional: bool = False, cluster: bool = False) -> str:
        """The ``ACL SETUSER`` line for this rule set (``password`` after ``>``)."""
        rules = self.rules(keys, registry_key, with_optional, cluster)
        return " ".join(["ACL SETUSER", user, "on", f">{password}", *rules])


# apply, plan, delete (and status, wait, export) from the CLI, and the operator.
MANAGER = RuleSet(
    "manager",
    "the operator and the CLI's apply, plan, delete, status, wait and export",
    (
        # observe: stream and group state, key types, the oldest pending entry, exact lag
        "xinfo|stream", "xinfo|groups", "xinfo|consumers", "xpending", "xrange", "type", "scan",
        # the ownership registry (a hash); hscan: what a resource owns (the CLI's immutable names,
        # a group applied without its Topic's file)
        "hget", "hmget", "hscan", "hsetnx", "hset", "hdel",
        # changes: every write is a script that checks its commands first
        "evalsha", "evalsha_ro", "script|load", "xgroup|create", "xgroup|destroy", "xgroup|setid", "xgroup|delconsumer",
        "xlen", "xtrim", "del",
    ),
    optional=("time",),
    registry=True,
)

# status, wait, export: reading only; nothing these send can change data.
READER = RuleSet(
    "reader",
    "status, wait, export and sub without a group (a peek): reads only",
    ("xinfo|stream", "xinfo|groups", "xpending", "xrange", "type", "scan", "hmget", "evalsha_ro", "script|load",
     "xread"),
    optional=("time",),
    registry=True,
)

# Applications on redistreams.pubsub (and `redistreams pub`).
PUBLISHER = RuleSet("publisher", "an application that publishes (redistreams pub)", ("xadd",))

# A consumer whose group redistreams provisions (and `redistreams sub`).
CONSUMER = RuleSet(
    "consumer",
    "an application that consumes, its group provisioned by redistreams (redistreams sub)",
    ("xreadgroup", "xack", "xclaim", "xautoclaim", "xinfo|stream", "exists"),
    optional=("xgroup|create", "xgroup|createconsumer", "client|setname"),
)

# Added to CONSUMER by dead_letter=…: the dead-letter stream's key pattern too.
DEAD_LETTER = RuleSet(
    "dead-letter",
    "added to the consumer's rules with dead_letter=…",
    ("evalsha", "eval", "xpending", "xrange", "xadd"),
)

RULE_SETS = {r.name: r for r in (MANAGER, READER, PUBLISHER, CONSUMER, DEAD_LETTER)}


def combined(names: Iterable[str]) -> RuleSet:
    """The union of named rule sets (e.g. a CLI user that also runs pub and sub)."""
    sets = [RULE_SETS[n] for n in names]
    return RuleSet(
        "+".join(s.name for s in sets),
        "; ".join(s.summary for s in sets),
        tuple(dict.fromkeys(c for s in sets for c in s.commands)),
        tuple(dict.fromkeys(c for s in sets for c in s.optional)),
        any(s.registry for s in sets),
    )


# -- NOPERM, explained ------------------------------------------------------------------

_COMMAND = re.compile(r"run the '([^']+)' command")
_KEY = re.compile(r"access the key '(.*)'$")


def user_of(url: str) -> str | None:
    """The ACL user a Redis URL logs in as (``default`` without one); None for what is
    not a URL (a Secret's description, say)."""
    if "://" not in url:
        return None
    try:
        parts = urlsplit(url)
        return unquote(parts.username) if parts.username else "default"
    except ValueError:
        return None


def permission_message(text: str, user: str | None = None, key: str | None = None) -> str:
    """What a NOPERM reply means, naming the user, the command and the key when known:
    ``user "ops" may not run 'xgroup|create' on key 'orders'``. ``key`` is the resource's
    key, for replies that do not name one (Redis' own say "one of the keys")."""
    text = text.strip().removeprefix("NOPERM").strip()
    who = f'user "{user}"' if user else "this user"
    command, named_key = _COMMAND.search(text), _KEY.search(text)
    key = named_key.group(1) if named_key else key
    on = f" on key '{key}'" if key else ""
    if command and named_key:  # our scripts' check: the command or the key pattern
        return (f"{who} may not run '{command.group(1)}'{on} "
                "(its ACL lacks the command or a key pattern matching the key)")
    if command:
        return f"{who} may not run '{command.group(1)}'{on} (add +{command.group(1)} to its ACL)"
    if "keys" in text or "key" in text:
        return f"{who} may not access {f'key {key!r}' if key else 'one of the keys'} (no ~pattern of its ACL matches)"
    if "channel" in text:
        return f"{who} may not access one of the channels (its ACL lacks a &pattern)"
    return f"{who} was refused by the ACL: {text}"
