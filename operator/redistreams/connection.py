"""Turning a Redis URL into a client. The engine only sees the client it is given.

Supported now: ``redis://`` (TCP), ``rediss://`` (TLS) and ``unix://`` (socket). Cluster
and Sentinel belong here too when they come; the engine does not change for them.

A URL reaches output (terminal, status, Events, logs) only through ``redact``
(urltext.py). ``RedisTarget.client`` refuses a URL that redis-py would read differently
from how ``redact`` masks it: whatever redis-py sends as a secret is what gets masked.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import math
import re
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, unquote_plus, urlsplit

import redis
import redis.connection as rconn
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

# The URL's text (default, masking) lives in urltext.py, importable without redis-py;
# re-exported here, where callers have always found it.
from .urltext import DEFAULT_URL as DEFAULT_URL
from .urltext import DISPLAY_LIMIT as DISPLAY_LIMIT
from .urltext import GO_ONLY_PARAMS as _GO_ONLY_PARAMS
from .urltext import MASK as MASK
from .urltext import _is_secret_name, _mask
from .urltext import default_url as default_url
from .urltext import redact as redact
from .urltext import secret_parts as secret_parts

SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster")
CLUSTER_PREFIXES = ("redis+cluster://", "rediss+cluster://")  # see cluster.py

# Query parameters a URL may set: plain values. redis-py passes any name on as a keyword
# argument, so object-valued ones (retry, credential_provider…) would arrive as strings
# and fail at first use, far from the URL.
_URL_OPTIONS = frozenset({
    "db", "username", "password", "client_name", "lib_name", "lib_version", "encoding",
    "socket_timeout", "socket_connect_timeout", "socket_keepalive", "socket_read_size",
    "retry_on_timeout", "health_check_interval", "legacy_responses",
    "ssl_keyfile", "ssl_certfile", "ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_data", "ssl_ca_path",
    "ssl_password", "ssl_check_hostname", "ssl_ciphers", "ssl_min_version",
    "ssl_include_verify_flags", "ssl_exclude_verify_flags",
})
_POOL_OPTIONS = frozenset({"max_connections"})  # taken by the pool, not the connection
_NON_NEGATIVE = ("socket_timeout", "socket_connect_timeout", "health_check_interval")
_POSITIVE = ("socket_read_size", "max_connections")

_SCHEME_NAME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,31}")
_AMBIGUOUS = ("the user name or password is ambiguous: percent-encode '@', ':', '/', '?', '#' "
              "and '&' in them (e.g. '@' as %40), and in a socket path")


class ConnectionConfigError(ValueError):
    """The URL itself is unusable.

    ``problem`` says what is wrong without quoting the URL, so it can be shown for a URL
    read from a Secret; ``str()`` adds the redacted URL, for the CLI.
    """

    def __init__(self, problem: str, url: object = None, *, message: str | None = None) -> None:
        self.problem = problem
        if message is None:
            shown = "" if url is None else redact(url)
            message = f"invalid Redis URL {shown}: {problem}" if shown.strip() else f"invalid Redis URL: {problem}"
        super().__init__(message)

    def about(self, source: str) -> ConnectionConfigError:
        """The same problem, reported for a named source instead of the URL itself."""
        return ConnectionConfigError(self.problem, message=f"{source}: {self.problem}")


class SeedClient(redis.Redis):
    """A standalone client that may stand for a Redis Cluster, resolved at first use by
    ``cluster.resolve``: ``cluster_mode`` is True for a redis+cluster:// URL (``seeds`` are its
    hosts), None for a TCP URL whose server has not been asked yet, False otherwise."""

    cluster_mode: bool | None = False
    seeds: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class RedisTarget:
    url: str
    socket_timeout: float = 10.0
    connect_timeout: float = 5.0
    retries: int = 2

    @property
    def display(self) -> str:
        """The URL without its password, safe to print and to store in status."""
        return redact(self.url)

    def client(self, decode_responses: bool = True) -> redis.Redis:
        """A client for the URL; ``ConnectionConfigError`` (and nothing else) if unusable."""
        if isinstance(self.url, str) and self.url.startswith(("redis+sentinel://", "rediss+sentinel://")):
            from .sentinel import master_client  # sentinel.py builds on this module

            return master_client(self.url, decode_responses=decode_responses, socket_timeout=self.socket_timeout,
                                 connect_timeout=self.connect_timeout, retries=self.retries)
        seeds: list[tuple[str, int]] = []
        if isinstance(self.url, str) and self.url.startswith(CLUSTER_PREFIXES):
            from .cluster import cluster_seeds  # cluster.py builds on this module

            url, seeds = cluster_seeds(self.url)
        else:
            url = _checked(self.url)
        retry = Retry(ExponentialWithJitterBackoff(base=0.1, cap=1.0), self.retries)
        try:
            client: SeedClient = SeedClient.from_url(  # type: ignore[assignment]  # from_url is typed Redis
                url,
                decode_responses=decode_responses,
                encoding_errors="surrogateescape",
                socket_timeout=self.socket_timeout,
                socket_connect_timeout=self.connect_timeout,
                retry=retry,
                protocol=2,
            )
            # Connections are made lazily; building one now turns a bad setting into
            # this error instead of a failure at first use.
            pool = client.connection_pool
            pool.connection_class(**pool.connection_kwargs)
        except Exception:  # noqa: BLE001 - redis-py's text may quote the URL
            raise ConnectionConfigError("redis-py refused the connection settings", self.url) from None
        # A cluster URL, or a TCP URL whose server may turn out to be a cluster node: the
        # engine resolves it at first use (cluster.resolve).
        kwargs = client.connection_pool.connection_kwargs
        client.cluster_mode = True if seeds else (None if "host" in kwargs else False)
        client.seeds = tuple(seeds)
        return client


# -- checking -----------------------------------------------------------------------


def _parse_url(url: str) -> dict[str, Any]:
    """redis-py's reading of a URL: the keyword arguments its pool would get."""
    kwargs: dict[str, Any] = rconn.parse_url(url)  # type: ignore[no-untyped-call]  # untyped in redis-py
    return kwargs


def _checked(url: object) -> str:
    """The URL as redis-py should get it, or ConnectionConfigError saying what is wrong."""
    if not isinstance(url, str):
        raise ConnectionConfigError("the URL is not text", url)
    if not url.strip():
        raise ConnectionConfigError("the URL is empty", url)
    try:
        url.encode("utf-8")
    except UnicodeEncodeError:
        raise ConnectionConfigError("the URL holds bytes that are not UTF-8", url) from None
    # urlsplit drops tab, CR and LF (a trailing newline from a Secret is fine); other
    # control characters would reach the socket layer and fail there.
    if any(ord(c) < 32 and c not in "\t\r\n" or c == "\x7f" for c in url):
        raise ConnectionConfigError("the URL contains control characters", url)
    if url[0].isspace():
        raise ConnectionConfigError("the URL starts with whitespace", url)
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise _scheme_error(url)

    cleaned = _without_go_params(url)
    try:
        parts = urlsplit(cleaned)
        parts.port  # noqa: B018 - validates the port
    except ValueError as exc:
        raise ConnectionConfigError(_split_problem(str(exc)), url) from None
    try:
        ours = _parse_url(cleaned)
    except ValueError as exc:
        raise ConnectionConfigError(_parse_problem(str(exc)), url) from None
    try:
        masked = _parse_url(_without_go_params(_mask(url)))
    except ValueError:
        masked = None
    if masked is None or _public(masked) != _public(ours):
        raise ConnectionConfigError(_AMBIGUOUS, url)

    scheme = parts.scheme
    connection_class = ours.get("connection_class", rconn.Connection)
    accepted = (_URL_OPTIONS & _keywords(connection_class)) | _POOL_OPTIONS
    query = url.partition("?")[2].partition("#")[0]
    for index, (name, _) in enumerate(parse_qsl(query), 1):
        if name in accepted or name in _GO_ONLY_PARAMS:
            continue
        if name in _URL_OPTIONS:
            raise ConnectionConfigError(f"query parameter '{name}' does not apply to {scheme}:// URLs", url)
        if name in _keywords(rconn.SSLConnection) | _keywords(rconn.UnixDomainSocketConnection):
            raise ConnectionConfigError(f"query parameter '{name}' cannot be set in a URL", url)
        raise ConnectionConfigError(_unknown_parameter(index, name), url)

    _check_values(ours, parts.path if scheme != "unix" else "", "db" in ours and "db" in dict(parse_qsl(query)), url)
    kwargs = {k: v for k, v in ours.items() if k not in ("connection_class", *_POOL_OPTIONS)}
    try:
        connection_class(**kwargs)
    except Exception:  # noqa: BLE001 - find the setting; never show redis-py's text
        for name in kwargs:
            try:
                connection_class(**{name: kwargs[name]})
            except Exception:  # noqa: BLE001
                if name in _URL_OPTIONS:
                    raise ConnectionConfigError(f"invalid value for query parameter '{name}'", url) from None
        raise ConnectionConfigError("redis-py refused the connection settings", url) from None
    return cleaned


def _scheme_error(url: str) -> ConnectionConfigError:
    head, sep, _ = url.partition("://")
    use = "(use redis://, rediss://, unix://, redis+sentinel:// or redis+cluster://)"
    if not sep or not _SCHEME_NAME.fullmatch(head):
        return ConnectionConfigError(f"the URL does not start with a scheme {use}", url)
    if head.lower() in SCHEMES:
        return ConnectionConfigError(f"the scheme must be lower-case {use}", url)
    # The scheme is not secret; the CLI's message names it, the problem does not.
    return ConnectionConfigError(f"unsupported scheme {use}", url,
                                 message=f'unsupported Redis URL scheme "{head}" in {redact(url)} {use}')


def _split_problem(text: str) -> str:
    # Python's texts are matched, never shown: the port's one quotes the URL.
    if "IPv6" in text:
        return "the IPv6 address in brackets is malformed"
    if "Port out of range" in text:
        return "the port is out of range (0 to 65535)"
    if "Port" in text:
        return "the port is not a number"
    if "NFKC" in text:
        return "the host contains characters that change under Unicode normalization"
    return "the host and port cannot be read"


def _parse_problem(text: str) -> str:
    match = re.fullmatch(r"Invalid value for '(\w+)' in connection URL\.", text)
    if match and match.group(1) in rconn.URL_QUERY_ARGUMENT_PARSERS:
        return f"invalid value for query parameter '{match.group(1)}'"
    return "redis-py cannot read the URL"


def _check_values(kwargs: dict[str, Any], path: str, db_from_query: bool, url: str) -> None:
    if not db_from_query and path:
        number = unquote(path).replace("/", "")
        if number.strip():
            try:
                int(number)
            except ValueError:
                raise ConnectionConfigError("the path must be a database number such as /0", url) from None
    if kwargs.get("db", 0) < 0:
        raise ConnectionConfigError("the database number must not be negative", url)
    for name in _NON_NEGATIVE:
        if name in kwargs and not (math.isfinite(kwargs[name]) and kwargs[name] >= 0):
            raise ConnectionConfigError(f"query parameter '{name}' must be a number of seconds, 0 or more", url)
    for name in _POSITIVE:
        if name in kwargs and kwargs[name] <= 0:
            raise ConnectionConfigError(f"query parameter '{name}' must be positive", url)
    if "ssl_min_version" in kwargs:
        try:
            ssl.TLSVersion(kwargs["ssl_min_version"])
        except ValueError:
            raise ConnectionConfigError("query parameter 'ssl_min_version' is not a TLS version", url) from None
    host = kwargs.get("host")
    if host is not None:
        if any(ord(c) < 32 for c in host):
            raise ConnectionConfigError("the host name contains control characters", url)
        try:
            host.encode("idna")  # what the socket layer does with it
        except UnicodeError:
            raise ConnectionConfigError("the host name is not valid (an empty or over-long label?)", url) from None
    if kwargs.get("connection_class") is rconn.UnixDomainSocketConnection:
        socket_path = kwargs.get("path", "")
        if not socket_path:
            raise ConnectionConfigError("the socket path is missing (unix:///path/to/redis.sock)", url)
        if any(ord(c) < 32 for c in socket_path):
            raise ConnectionConfigError("the socket path contains control characters", url)


def _unknown_parameter(index: int, name: str) -> str:
    # The name itself is not quoted: it is part of the URL and could be anything.
    problem = f"query parameter {index} is not a Redis connection option"
    lowered = {n.lower(): n for n in _URL_OPTIONS | _POOL_OPTIONS}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.75)
    if close and close[0] == name.lower():
        problem += f" (names are case-sensitive: '{lowered[close[0]]}')"
    elif close:
        problem += f" (did you mean '{lowered[close[0]]}'?)"
    return problem


def _public(kwargs: dict[str, Any]) -> dict[str, str]:
    # repr: a nan timeout must equal itself here; its value is checked later
    return {k: repr(v) for k, v in kwargs.items() if not _is_secret_name(k)}


@functools.cache
def _keywords(cls: type) -> frozenset[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            names.update(inspect.signature(vars(klass)["__init__"]).parameters)
    return frozenset(names - {"self", "args", "kwargs"})


def _without_go_params(url: str) -> str:
    base, sep, rest = url.partition("?")
    if not sep:
        return url
    query, hash_sep, fragment = rest.partition("#")
    kept = "&".join(p for p in query.split("&")
                    if (name := unquote_plus(p.partition("=")[0])) not in _GO_ONLY_PARAMS or name == "db")
    return base + (f"?{kept}" if kept else "") + hash_sep + fragment
