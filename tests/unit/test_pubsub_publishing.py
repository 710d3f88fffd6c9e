"""The publisher's sans-I/O core: what both the asyncio and the blocking Topic send and
how they read Redis' replies (no Redis needed: replies as redis-py's parser gives them)."""

from __future__ import annotations

import pytest
from redis.exceptions import NoPermissionError, ResponseError

from redistreams.pubsub import Message, PublishError
from redistreams.pubsub.publisher import Publishing
from redistreams.pubsub.urls import TopicURL


def core(maxlen: int = 0, replicas: int = 0) -> Publishing:
    return Publishing(TopicURL("orders", maxlen), timeout=2.5, retry_for=1.0, replicas=replicas)


def test_commands_are_the_go_drivers_xadd() -> None:
    assert core().command(Message(b"b", {"z": "<", "a": "1"})) == (
        "XADD", "orders", "*", b"headers", b'{"a":"1","z":"\\u003c"}', b"body", b"b")
    assert core(maxlen=3).command("text") == ("XADD", "orders", "MAXLEN", 3, "*", b"headers", b"null",
                                              b"body", b"text")


def test_a_trip_ends_with_wait_only_when_replicas_are_asked() -> None:
    assert core().trip([("XADD",)]) == [("XADD",)]
    assert core(replicas=2).trip([("XADD",)]) == [("XADD",), ("WAIT", 2, 2500)]
    assert core(replicas=2).extra_timeout == 2.5 and core().extra_timeout == 0.0


def test_each_sender_gets_its_ids_or_its_error() -> None:
    refused = NoPermissionError("this user has no permissions to run the 'xadd' command")
    outcomes = core().outcomes([b"1-0", b"2-0", refused, b"3-0"], [2, 2])
    assert outcomes[0] == ["1-0", "2-0"]
    error = outcomes[1]
    assert isinstance(error, PublishError) and error.ids == [None, "3-0"]
    assert "1 of 2 messages not stored" in str(error) and "'xadd'" in str(error)


@pytest.mark.parametrize("wait", [0, ResponseError("ERR WAIT cannot be used with replica instances")])
def test_replicas_short_of_the_count_are_an_error_naming_the_stored_ids(wait: object) -> None:
    (outcome,) = core(replicas=1).outcomes([b"1-0", wait], [1])
    assert isinstance(outcome, PublishError) and outcome.ids == ["1-0"]
    assert "stored, but" in str(outcome)
    (confirmed,) = core(replicas=1).outcomes([b"1-0", 1], [1])
    assert confirmed == ["1-0"]


def test_a_refused_connection_stored_nothing() -> None:
    error = core().refused(ResponseError("NOPERM select"), 3)
    assert error.ids == [None, None, None] and "no message stored" in str(error)


def test_retries_stop_at_retry_for_or_when_closed() -> None:
    retries = core().retries()
    first = retries.delay(ConnectionError("down"), closed=False)
    assert first is not None and 0 < first <= 0.05
    assert retries.delay(ConnectionError("down"), closed=True) is None
    assert Publishing(TopicURL("s"), timeout=1, retry_for=0, replicas=0).retries().delay(OSError(), False) is None
