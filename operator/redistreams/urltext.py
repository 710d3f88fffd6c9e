"""Redis URLs as text, without redis-py: the default URL, and masking credentials.

A URL reaches output (terminal, status, Events, logs) only through ``redact``. It works
on text, not on a parsed URL, so it never fails and still masks a password in a URL that
does not parse. ``connection.RedisTarget.client`` refuses a URL that redis-py would read
differently from how ``redact`` masks it: whatever redis-py sends as a secret is what
gets masked. Kept apart from connection.py so that commands which never build a redis-py
client (``redistreams wait``, ``--help``) can name a URL without importing redis.
"""

from __future__ import annotations

import os
import re
import unicodedata
from urllib.parse import unquote, unquote_plus, urlsplit

from .printable import printable

DEFAULT_URL = "redis://localhost:6379/0"

# go-redis accepts these in REDIS_URL; redis-py would pass them on as unknown keyword
# arguments and fail, so a URL shared with Go services is cleaned first (connection.py;
# probe.py ignores them too). "db" stays: redis-py reads it.
GO_ONLY_PARAMS = frozenset({
    "dial_timeout", "read_timeout", "write_timeout", "pool_fifo", "pool_size", "pool_timeout",
    "min_idle_conns", "max_idle_conns", "max_active_conns", "conn_max_idle_time",
    "conn_max_lifetime", "max_retries", "min_retry_backoff", "max_retry_backoff",
    "skip_verify", "protocol", "client_name", "db", "addr", "identitysuffix", "unstable_resp3",
})

MASK = "***"
DISPLAY_LIMIT = 1000  # characters of a shown URL; a longer one is cut (after masking)

# Parameter names holding a secret, lower-cased fragments: password=, ssl_password=,
# and sentinel_password= or auth tokens that later schemes bring.
_SECRET_WORDS = ("pass", "pwd", "secret", "token", "credential", "auth")

# Where a URL starts in text: a scheme with "//", or a Redis-like scheme without it,
# at the start or after a space, quote, bracket, "=" or ",". A ":x://" inside a
# password is not a start.
_URL_START = re.compile(r"(?<![^\s\"'(<\[{=,])([A-Za-z][A-Za-z0-9+.-]{0,31}):(//)?")
_KEY = re.compile(r"(?:^|(?<=[?&;\s]))([^?&;=#\s]*)=")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def redact(url: object) -> str:
    """``url`` with every credential replaced by ``***``: the password of ``user:pw@``
    (any scheme, also when the URL does not parse), and the value of any parameter named
    like a secret (``password=``, ``ssl_password=``, in any case or %-encoding).

    Never raises, whatever it is given; the result is printable (bytes that are not
    UTF-8 as ``\\xNN``) and at most ``DISPLAY_LIMIT`` characters plus a note.
    """
    try:
        if url is None:
            return ""
        if isinstance(url, (bytes, bytearray)):
            text = os.fsdecode(bytes(url))
        else:
            text = url if isinstance(url, str) else str(url)
        shown = _printable(_mask(text))
        if len(shown) > DISPLAY_LIMIT:
            shown = f"{shown[:DISPLAY_LIMIT]}…({len(shown) - DISPLAY_LIMIT} more characters)"
        return shown
    except Exception:  # noqa: BLE001 - showing nothing beats showing a secret or failing
        return MASK


def default_url() -> str:
    return os.environ.get("REDIS_URL") or DEFAULT_URL


def secret_parts(url: str, shortest: int = 4) -> list[str]:
    """The pieces of a URL that texts about it may quote (the URL, its host, port, user,
    password, path), longest first, for hiding a URL that comes from a Secret. Pieces
    shorter than ``shortest`` are left: hiding "/0" would garble every message."""
    parts = {url, _mask(url)}
    try:
        split = urlsplit(url)
        host = split.hostname or ""
        parts.update({split.netloc, host, split.path, unquote(split.path), split.username or "",
                      split.password or "", unquote(split.password or ""), unquote(split.username or "")})
        port = split.port
        if port is not None:
            parts.update({f"{host}:{port}", f"[{host}]:{port}"})
    except ValueError:
        pass  # a URL that does not parse: only its whole text is known
    return sorted((p for p in parts if len(p) >= shortest), key=len, reverse=True)


# -- masking ------------------------------------------------------------------------


def _mask(text: str) -> str:
    out, pos = [], 0
    for start, end in _merged(_secret_spans(text)):
        out += [text[pos:start], MASK]
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(s for s in spans if s[0] < s[1]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _secret_spans(text: str) -> list[tuple[int, int]]:
    starts = [m for m in _URL_START.finditer(text)
              if m.group(2) or "redis" in m.group(1).lower() or m.group(1).lower() in ("unix", "valkey", "valkeys")]
    if starts:
        bounds = [(m.end(), nxt.start()) for m, nxt in zip(starts, starts[1:])] + [(starts[-1].end(), len(text))]
    else:
        bounds = [(0, len(text))]  # no scheme: maybe a URL without one (":pw@host")
    spans = [span for begin, end in bounds for span in _authority_spans(text, begin, end)]
    return spans + _param_spans(text)


def _authority_spans(text: str, begin: int, end: int) -> list[tuple[int, int]]:
    """The password of one URL's ``user:password@`` (text[begin:end] follows its scheme)."""
    rest = text[begin:end]
    # The userinfo ends at the last "@" not inside a query value, so a password holding
    # "/", "?", "#" or "@" unencoded is masked whole (urlsplit would cut it short).
    limit = len(rest)
    query = rest.find("?")
    if query >= 0:
        equals = rest.find("=", query)
        if equals >= 0:
            limit = equals
    at = rest.rfind("@", 0, limit)
    if at >= 0:
        colon = rest.find(":", 0, at)
        if colon >= 0:
            return [(begin + colon + 1, begin + at)]
    # No password before an "@": a port that is not a number is more likely a password
    # with the host forgotten ("redis://:pw", "redis://user:pw") or cut by a "/", "?" or
    # "#"; mask from there to the end of this URL.
    host_from = at + 1
    host_end = len(rest)
    for stop in "/?#":
        found = rest.find(stop, host_from)
        if 0 <= found < host_end:
            host_end = found
    hostinfo = rest[host_from:host_end]
    if hostinfo.startswith("["):
        close = hostinfo.find("]")
        colon = hostinfo.find(":", close) if close >= 0 else -1
    else:
        colon = hostinfo.find(":")
    if colon >= 0:
        port = hostinfo[colon + 1:]
        if port and not (port.isascii() and port.isdigit()) and not _host_list(hostinfo):
            return [(begin + host_from + colon + 1, end)]
    return []


def _host_list(hostinfo: str) -> bool:
    """Whether ``hostinfo`` is several ``host[:port]`` separated by commas (Cluster seeds,
    sentinels), each port a number: no password hides in it."""
    if "," not in hostinfo:
        return False
    for item in hostinfo.split(","):
        host, _, port = item.rpartition(":") if not item.endswith("]") else (item, "", "")
        if not (host or item) or (port and not (port.isascii() and port.isdigit())):
            return False
    return True


def _param_spans(text: str) -> list[tuple[int, int]]:
    """Values of query parameters named like a secret."""
    spans: list[tuple[int, int]] = []
    covered = 0
    for match in _KEY.finditer(text):
        if match.start() < covered or not _is_secret_name(match.group(1)):
            continue
        start = match.end()
        end = _next(text, "&", start)
        # redis-py keeps the value up to the next "&"; pieces after it without "=" are
        # dropped by the parser but were most likely part of the password ("a&b").
        while end < len(text):
            following = _next(text, "&", end + 1)
            if "=" in text[end + 1:following]:
                break
            end = following
        spans.append((start, end))
        covered = end
    return spans


def _next(text: str, char: str, start: int) -> int:
    found = text.find(char, start)
    return len(text) if found < 0 else found


def _is_secret_name(raw: str) -> bool:
    name = raw
    for _ in range(3):  # parse_qs decodes once; more rounds are cheap and catch %2570
        decoded = unquote_plus(name, errors="replace")
        if decoded == name:
            break
        name = decoded
    name = unicodedata.normalize("NFKC", name).casefold()
    if any(word in name for word in _SECRET_WORDS):
        return True
    # A misspelt "password" is refused by redis-py, and the error shows the URL.
    import difflib  # only for parameter names that are not plainly secret: most URLs have none

    return len(name) <= 40 and difflib.SequenceMatcher(None, name, "password").ratio() >= 0.7


def _printable(text: str) -> str:
    try:
        text = printable(text)
    except UnicodeError:  # a lone surrogate that surrogateescape did not make
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    # Control characters shown, not obeyed: a Secret's trailing newline becomes visible.
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
