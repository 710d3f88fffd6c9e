"""Conditions as kstatus and `kubectl wait` read them."""

from __future__ import annotations

from redistreams.controller.conditions import Outcome, conditions, same_conditions


def by_type(items: list[dict]) -> dict[str, dict]:
    return {c["type"]: c for c in items}


def test_ready() -> None:
    c = by_type(conditions(Outcome(True, "StreamReady", "ok"), 3, None, "2026-01-01T00:00:00Z"))
    assert c["Ready"]["status"] == "True" and c["Ready"]["observedGeneration"] == 3
    assert c["Reconciling"]["status"] == "False" and c["Stalled"]["status"] == "False"


def test_transient_error_keeps_reconciling() -> None:
    c = by_type(conditions(Outcome(False, "RedisUnavailable", "down"), 1, None))
    assert (c["Ready"]["status"], c["Reconciling"]["status"], c["Stalled"]["status"]) == ("False", "True", "False")
    assert c["Reconciling"]["reason"] == "RedisUnavailable"


def test_terminal_error_stalls() -> None:
    for reason in ("Conflict", "WrongType", "SecretNotFound", "InvalidSpec"):
        c = by_type(conditions(Outcome(False, reason, "no"), 1, None))
        assert (c["Ready"]["status"], c["Reconciling"]["status"], c["Stalled"]["status"]) == ("False", "False", "True")
        assert c["Stalled"]["reason"] == reason


def test_provisioning_is_unknown() -> None:
    c = by_type(conditions(Outcome(None, "Provisioning", "..."), 1, None))
    assert c["Ready"]["status"] == "Unknown" and c["Reconciling"]["status"] == "True"


def test_transition_time_moves_only_on_status_change() -> None:
    first = conditions(Outcome(True, "StreamReady", "ok"), 1, None, "2026-01-01T00:00:00Z")
    again = conditions(Outcome(True, "StreamReady", "ok, still"), 2, first, "2026-02-02T00:00:00Z")
    assert by_type(again)["Ready"]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    failed = conditions(Outcome(False, "RedisUnavailable", "down"), 2, again, "2026-03-03T00:00:00Z")
    assert by_type(failed)["Ready"]["lastTransitionTime"] == "2026-03-03T00:00:00Z"
    assert same_conditions(first, conditions(Outcome(True, "StreamReady", "ok"), 1, None, "2030-01-01T00:00:00Z"))
    assert not same_conditions(first, again)


def test_a_message_carries_no_terminal_escapes() -> None:
    """A stream name in a message reaches kubectl's output: controls are shown escaped."""
    c = by_type(conditions(Outcome(False, "WrongType", 'stream "a\x1b[2J\u202eb" holds a list'), 1, None))
    assert c["Ready"]["message"] == 'stream "a\\x1b[2J\\u202eb" holds a list'
    assert c["Stalled"]["message"] == c["Ready"]["message"]
