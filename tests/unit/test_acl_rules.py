"""The documented ACL rule sets as data, and NOPERM explained (user, command, key)."""

from __future__ import annotations

import pytest

from redistreams.acl import CONSUMER, MANAGER, READER, RULE_SETS, combined, permission_message, user_of
from redistreams.engine.errors import PERMISSION_DENIED, describe


def test_setuser_lines() -> None:
    line = MANAGER.setuser("ops", ["team-a/*"])
    assert line.startswith("ACL SETUSER ops on >SECRET resetkeys ~team-a/* ~redistreams:owners resetchannels -@all ")
    assert "+xgroup|create" in line and "+time" not in line
    assert "+time" in MANAGER.setuser("ops", ["x"], with_optional=True)
    assert "~redistreams:owners{*}" in MANAGER.setuser("ops", ["x"], cluster=True)
    assert "~*" in READER.rules(["*"]) and not [r for r in READER.rules(["*"]) if "owners" in r]  # not after ~*
    assert not any(c in READER.commands for c in ("evalsha", "xgroup|create", "hset", "del", "xtrim", "xadd"))
    both = combined(["consumer", "reader"])
    assert set(both.commands) == set(CONSUMER.commands) | set(READER.commands) and both.registry
    assert set(RULE_SETS) == {"manager", "reader", "publisher", "consumer", "dead-letter"}


@pytest.mark.parametrize(("text", "expected"), [
    ("NOPERM this user has no permissions to run the 'xgroup|create' command or to access the key 'orders'",
     """user "ops" may not run 'xgroup|create' on key 'orders'"""),
    ("NOPERM this user has no permissions to run the 'xadd' command",
     """user "ops" may not run 'xadd' on key 'topic/1' (add +xadd to its ACL)"""),
    ("NOPERM this user has no permissions to access one of the keys used as arguments",
     """user "ops" may not access key 'topic/1' (no ~pattern of its ACL matches)"""),
])
def test_noperm_names_user_command_and_key(text: str, expected: str) -> None:
    assert expected in permission_message(text, "ops", "topic/1")


def test_user_of_urls() -> None:
    assert user_of("redis://ops:***@h:6379/0") == "ops"
    assert user_of("redis://h:6379/0") == "default"
    assert user_of('Secret "ns/s" key "url"') is None


def test_describe_names_the_user_from_the_target() -> None:
    import redis.exceptions as rex

    failure = describe(rex.NoPermissionError("this user has no permissions to run the 'scan' command"),
                       "redis://viewer:***@127.0.0.1:6379/0")
    assert failure.reason == PERMISSION_DENIED
    assert failure.message.startswith("permission denied by Redis ACL at redis://viewer:***@127.0.0.1:6379/0: "
                                      """user "viewer" may not run 'scan'""")


def test_readme_shows_the_rules_of_acl_py() -> None:
    """The README's ACL SETUSER lines are what acl.py (and `redistreams acl`) produce."""
    from pathlib import Path

    readme = " ".join((Path(__file__).resolve().parents[2] / "README.md").read_text().split())
    for line in (MANAGER.setuser("redistreams", ["topics/*", "orders*"], with_optional=True),
                 READER.setuser("viewer", ["topics/*", "orders*"], with_optional=True),
                 RULE_SETS["publisher"].setuser("orders-writer", ["orders"]),
                 CONSUMER.setuser("billing", ["orders"]),
                 combined(["consumer", "dead-letter"]).setuser("billing", ["orders", "orders.dead"])):
        assert line in readme, line
