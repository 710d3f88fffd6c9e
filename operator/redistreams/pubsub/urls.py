"""Topic and subscription URLs, parsed the way the Go driver parses them.

``redis://<stream key>[?maxlen=N]`` opens a topic and
``redis://<group>?topic=<stream key>&consumer=<name>[&from=ID][&autoclaim=30m][&noack]``
a subscription. The Redis server itself comes from ``REDIS_URL``, as in Go.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from ..connection import redact

DEFAULT_AUTOCLAIM = 30 * 60.0  # seconds; the Go driver's default
DEFAULT_FROM = "0"  # the Go driver's default start when it creates the group


class URLError(ValueError):
    """A topic or subscription URL the Go driver would refuse too. Its message shows the
    URL with any credential in it (``user:pw@``, ``?password=``) masked."""


@dataclass(frozen=True)
class TopicURL:
    stream: str
    maxlen: int = 0


@dataclass(frozen=True)
class SubscriptionURL:
    group: str
    stream: str
    consumer: str
    start: str = DEFAULT_FROM
    autoclaim: float = DEFAULT_AUTOCLAIM
    noack: bool = False


def parse_topic_url(url: str) -> TopicURL:
    name, params = _split(url, "topic")
    maxlen = 0
    for key, value in params.items():
        if key != "maxlen":
            raise URLError(f"open topic {redact(url)}: invalid query parameter {key!r}")
        if not re.fullmatch(r"[+-]?\d+", value):
            raise URLError(f"open topic {redact(url)}: invalid query parameter 'maxlen': {value!r} is not an integer")
        maxlen = int(value)
        if maxlen < 0:
            raise URLError(f"open topic {redact(url)}: invalid query parameter 'maxlen': must not be negative")
    if not name:
        raise URLError(f"open topic {redact(url)}: undefined host/path topic name")
    return TopicURL(stream=name, maxlen=maxlen)


def parse_subscription_url(url: str) -> SubscriptionURL:
    group, params = _split(url, "subscription")
    allowed = {"topic", "from", "consumer", "autoclaim", "noack"}
    for key in params:
        if key not in allowed:
            raise URLError(f"open subscription {redact(url)}: invalid query parameter {key!r}")
    consumer = params.get("consumer", "")
    if not consumer:
        raise URLError(f"open subscription {redact(url)}: undefined 'consumer' parameter")
    autoclaim = DEFAULT_AUTOCLAIM
    if params.get("autoclaim"):
        try:
            autoclaim = parse_go_duration(params["autoclaim"])
        except ValueError as exc:
            raise URLError(f"open subscription {redact(url)}: bad autoclaim: {exc}") from None
        if autoclaim <= 0:
            # Go would pass 0 on and fall back to its default; a negative idle is meaningless.
            autoclaim = DEFAULT_AUTOCLAIM
    if not group:
        raise URLError(f"open subscription {redact(url)}: undefined host/path group name")
    stream = params.get("topic", "")
    if not stream:
        # Go would create a stream named "" here; that is never what anyone meant.
        raise URLError(f"open subscription {redact(url)}: undefined 'topic' parameter")
    return SubscriptionURL(
        group=group, stream=stream, consumer=consumer,
        start=params.get("from") or DEFAULT_FROM, autoclaim=autoclaim, noack="noack" in params,
    )


def _split(url: str, what: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(url)
    if parts.scheme != "redis":
        raise URLError(f"open {what} {redact(url)}: unsupported scheme {parts.scheme!r} (want 'redis')")
    # Go's url.URL.Host keeps case and port but not user info; the name is path.Join(host, path).
    host = parts.netloc.rpartition("@")[2]
    if "%" in host:
        raise URLError(f"open {what} {redact(url)}: invalid URL escape in {host!r}")
    name = _go_path_join(host, unquote(parts.path))
    params: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        params.setdefault(key, value)  # Go's u.Query() callers take the first value
    return name, params


def _go_path_join(*elements: str) -> str:
    """Go's path.Join: join the non-empty elements and clean the result ("" if none)."""
    joined = "/".join(e for e in elements if e)
    if not joined:
        return ""
    cleaned = posixpath.normpath(joined)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")  # normpath keeps a leading "//"; Go does not
    return cleaned


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_COMPONENT = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(text: str) -> float:
    """Go's time.ParseDuration ("30m", "1h30m", "1.5s", "250ms"), in seconds."""
    original = text
    sign = 1.0
    if text[:1] in "+-" and text:
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if text == "0":
        return 0.0
    if not text:
        raise ValueError(f'time: invalid duration "{original}"')
    total = 0.0
    position = 0
    while position < len(text):
        match = _COMPONENT.match(text, position)
        if not match:
            if re.match(r"(\d+\.?\d*|\.\d+)$", text[position:]):
                raise ValueError(f'time: missing unit in duration "{original}"')
            raise ValueError(f'time: invalid duration "{original}"')
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    return sign * total
