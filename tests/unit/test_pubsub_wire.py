"""Pub/sub URLs and entry encoding, checked against what the Go driver does (facts file)."""

from __future__ import annotations

import dataclasses

import pytest

from redistreams.pubsub import (
    Message,
    ReceivedMessage,
    URLError,
    parse_go_duration,
    parse_subscription_url,
    parse_topic_url,
)
from redistreams.pubsub.wire import decode_fields, encode_headers, shared_headers


@pytest.mark.parametrize(
    ("url", "stream", "maxlen"),
    [
        ("redis://orders", "orders", 0),
        ("redis://topics/1", "topics/1", 0),
        ("redis://Orders/EU", "Orders/EU", 0),  # case kept (urlparse().hostname would lower it)
        ("redis://a//b/./c/", "a/b/c", 0),  # path.Join cleans
        ("redis://a/b/../c", "a/c", 0),
        ("redis://orders?maxlen=1000", "orders", 1000),
        ("redis://orders?maxlen=0", "orders", 0),
        ("redis://host:123/x", "host:123/x", 0),
        ("redis://o/a%20b", "o/a b", 0),  # and unescapes the path
        ("redis:///only/path", "/only/path", 0),
        ("redis://user:pw@top/x", "top/x", 0),
    ],
)
def test_topic_urls(url: str, stream: str, maxlen: int) -> None:
    parsed = parse_topic_url(url)
    assert (parsed.stream, parsed.maxlen) == (stream, maxlen)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://orders?max=5", "open topic redis://orders?max=5: invalid query parameter 'max'"),
        ("redis://orders?maxlen=x", "'maxlen': 'x' is not an integer"),
        ("redis://orders?maxlen=-1", "must not be negative"),
        ("redis://", "undefined host/path topic name"),
        ("http://orders", "unsupported scheme 'http'"),
        ("redis://orders%2Fv2", "invalid URL escape"),  # Go's url.Parse refuses escapes in the host
    ],
)
def test_topic_url_errors(url: str, message: str) -> None:
    with pytest.raises(URLError, match=message.replace("?", r"\?")):
        parse_topic_url(url)


def test_subscription_url_full() -> None:
    parsed = parse_subscription_url("redis://Billing/EU?topic=Orders/EU&consumer=pod-1&from=$&autoclaim=90s&noack")
    assert (parsed.group, parsed.stream, parsed.consumer, parsed.start, parsed.autoclaim, parsed.noack) == (
        "Billing/EU", "Orders/EU", "pod-1", "$", 90.0, True)


def test_subscription_url_defaults_follow_go() -> None:
    parsed = parse_subscription_url("redis://g?topic=t&consumer=c")
    assert (parsed.start, parsed.autoclaim, parsed.noack) == ("0", 1800.0, False)
    # Go's u.Query() callers take the first of repeated values.
    assert parse_subscription_url("redis://g?topic=a&topic=b&consumer=c").stream == "a"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://g?topic=t", "undefined 'consumer' parameter"),
        ("redis://g?topic=t&consumer=", "undefined 'consumer' parameter"),
        ("redis://g?topic=t&consumer=c&group=x", "invalid query parameter 'group'"),
        ("redis://?topic=t&consumer=c", "undefined host/path group name"),
        ("redis://g?consumer=c", "undefined 'topic' parameter"),
        ("redis://g?topic=t&consumer=c&autoclaim=soon", 'bad autoclaim: time: invalid duration "soon"'),
        ("redis://g?topic=t&consumer=c&autoclaim=30", 'bad autoclaim: time: missing unit in duration "30"'),
    ],
)
def test_subscription_url_errors(url: str, message: str) -> None:
    with pytest.raises(URLError, match=f"open subscription .*{message}"):
        parse_subscription_url(url)


def test_unknown_parameter_is_reported_before_missing_consumer() -> None:
    # Go checks parameters first, then the consumer, then the group name.
    with pytest.raises(URLError, match="invalid query parameter 'x'"):
        parse_subscription_url("redis://?x=1")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800), ("90s", 90), ("1h30m", 5400), ("1.5s", 1.5), ("250ms", 0.25), ("2us", 2e-6), ("3µs", 3e-6),
     ("0", 0), ("-1m", -60), ("+5s", 5), (".5h", 1800), ("1h0m0s", 3600)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "m", "1d", "1 m", "1h-5m", "s1"])
def test_go_durations_reject(text: str) -> None:
    with pytest.raises(ValueError, match="time: "):
        parse_go_duration(text)


# Bytes Go's json.Marshal(map[string]string) produces (Go >= 1.22), from the facts file.
@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        (None, b"null"),
        ({}, b"null"),  # no metadata is written as Go writes a nil map
        ({"b": "2", "a": "1"}, b'{"a":"1","b":"2"}'),
        ({"k": "<a & b>"}, b'{"k":"\\u003ca \\u0026 b\\u003e"}'),
        ({"k": "line\u2028para\u2029"}, b'{"k":"line\\u2028para\\u2029"}'),
        ({"k": "caf\u00e9 \u65e5\u672c \U0001f600"}, '{"k":"café 日本 😀"}'.encode()),
        ({"k": 'q"b\\'}, b'{"k":"q\\"b\\\\"}'),
        ({"k": "\n\r\t\b\f\x01\x1f\x7f"}, b'{"k":"\\n\\r\\t\\b\\f\\u0001\\u001f\x7f"}'),
        ({"Z": "", "a": "", "\u00e9": "", "_": ""}, '{"Z":"","_":"","a":"","é":""}'.encode()),
    ],
)
def test_headers_match_go_json(metadata: dict[str, str] | None, expected: bytes) -> None:
    assert encode_headers(metadata) == expected


def test_headers_reject_non_strings() -> None:
    with pytest.raises(TypeError, match="str to str"):
        encode_headers({"n": 1})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="surrogate"):
        encode_headers({"k": "\ud800"})


def test_message_body_types() -> None:
    assert Message("héllo").body == "héllo".encode()
    assert Message(bytearray(b"\x00")).body == b"\x00"
    with pytest.raises(TypeError, match="bytes or str"):
        Message(5)  # type: ignore[arg-type]


def test_decode_entries() -> None:
    assert decode_fields(None) is None and decode_fields([]) is None  # deleted while pending
    decoded = decode_fields([b"body", b"\x00\x01", b"headers", b'{"a":"\\u003c"}'])
    assert decoded is not None and (decoded.body, decoded.metadata, decoded.problem) == (b"\x00\x01", {"a": "<"}, None)
    assert decode_fields([b"headers", b"null", b"body", b""]).metadata == {}  # type: ignore[union-attr]
    assert decode_fields([b"body", b"x"]).problem is None  # type: ignore[union-attr]  # no headers field: {}
    for fields, problem in [
        ([b"headers", b"null"], "no 'body' field"),
        ([b"headers", b"{", b"body", b"x"], "not JSON"),
        ([b"headers", b'{"a":1}', b"body", b"x"], "not a JSON object of strings"),
        ([b"headers", b"[1]", b"body", b"x"], "not a JSON object of strings"),
    ]:
        decoded = decode_fields(fields)
        assert decoded is not None and problem in (decoded.problem or "")


def test_shared_headers_are_copied_at_first_access() -> None:
    """The subscriber hands out headers seen before without parsing them again; a handler
    changing its message's metadata must not change the next message's."""
    raw = b'{"kind":"a","z":"\\u003c"}'
    assert decode_fields([b"headers", raw, b"body", b"x"]).metadata == {"kind": "a", "z": "<"}  # type: ignore[union-attr]
    shared = shared_headers(raw)
    assert shared == {"kind": "a", "z": "<"}
    assert shared_headers(b"null") == {} and shared_headers(b'{"never":"seen"}') is None
    first = ReceivedMessage(b"x", None, "1-1", False, None, None, shared)
    second = ReceivedMessage(b"x", None, "1-2", False, None, None, shared)
    first.metadata["kind"] = "changed"
    assert second.metadata == {"kind": "a", "z": "<"} and shared_headers(raw) == {"kind": "a", "z": "<"}
    assert first.metadata == {"kind": "changed", "z": "<"}  # the same dict on every access
    second.metadata = {"set": "by handler"}
    assert second.metadata == {"set": "by handler"}
    assert repr(first) == ("ReceivedMessage(body=b'x', metadata={'kind': 'changed', 'z': '<'}, id='1-1', "
                           "redelivered=False, problem=None)")
    # Built by the application as before: metadata owned, bodies encoded, equality on body and metadata.
    assert ReceivedMessage("é", {"a": "b"}, "2-1") == ReceivedMessage("é".encode(), {"a": "b"}, "2-2")  # type: ignore[arg-type]
    assert ReceivedMessage(b"y").metadata == {} and ReceivedMessage(b"y", None).metadata == {}


def test_a_received_message_has_every_field_of_a_message() -> None:
    """ReceivedMessage is hand-written for speed: a field added to Message must reach its
    constructor, its repr and its equality too."""
    names = [f.name for f in dataclasses.fields(Message)]
    values = {"body": b"v", "metadata": {"k": "v"}}
    assert sorted(values) == sorted(names), "a new Message field: give it a value here and in ReceivedMessage"
    received = ReceivedMessage(**values)  # type: ignore[arg-type]
    assert all(getattr(received, name) == values[name] for name in names)
    assert all(f"{name}={values[name]!r}" in repr(received) for name in names)
    assert received == ReceivedMessage(**values, id="9-9")  # type: ignore[arg-type]
    for name in names:
        other = {**values, name: {"other": "x"} if name == "metadata" else b"other"}
        assert received != ReceivedMessage(**other)  # type: ignore[arg-type]
