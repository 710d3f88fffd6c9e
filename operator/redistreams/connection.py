"""Turning a Redis URL into a client. The engine only sees the client it is given.

Supported now: ``redis://`` (TCP), ``rediss://`` (TLS) and ``unix://`` (socket). Cluster
and Sentinel belong here too when they come; the engine does not change for them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

DEFAULT_URL = "redis://localhost:6379/0"
SCHEMES = ("redis", "rediss", "unix")

# go-redis accepts these in REDIS_URL; redis-py would pass them on as unknown keyword
# arguments and fail, so a URL shared with Go services is cleaned first.
_GO_ONLY_PARAMS = {
    "dial_timeout", "read_timeout", "write_timeout", "pool_fifo", "pool_size", "pool_timeout",
    "min_idle_conns", "max_idle_conns", "max_active_conns", "conn_max_idle_time",
    "conn_max_lifetime", "max_retries", "min_retry_backoff", "max_retry_backoff",
    "skip_verify", "protocol", "client_name", "db", "addr", "identitysuffix", "unstable_resp3",
}


class ConnectionConfigError(ValueError):
    """The URL itself is unusable."""


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
        scheme = urlsplit(self.url).scheme
        if scheme not in SCHEMES:
            raise ConnectionConfigError(
                f'unsupported Redis URL scheme "{scheme}" in {self.display} (use redis://, rediss:// or unix://)'
            )
        retry = Retry(ExponentialWithJitterBackoff(base=0.1, cap=1.0), self.retries)
        try:
            client = redis.Redis.from_url(
                _without_go_params(self.url),
                decode_responses=decode_responses,
                encoding_errors="surrogateescape",
                socket_timeout=self.socket_timeout,
                socket_connect_timeout=self.connect_timeout,
                retry=retry,
                protocol=2,
            )
            # Connections are made lazily; building one now turns an unknown URL
            # parameter into a clear error instead of a failure at first use.
            pool = client.connection_pool
            pool.connection_class(**pool.connection_kwargs)
        except (ValueError, TypeError) as exc:
            raise ConnectionConfigError(f"invalid Redis URL {self.display}: {exc}") from exc
        return client


def _without_go_params(url: str) -> str:
    base, sep, query = url.partition("?")
    if not sep:
        return url
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in _GO_ONLY_PARAMS or k == "db"]
    return f"{base}?{urlencode(kept)}" if kept else base


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def default_url() -> str:
    return os.environ.get("REDIS_URL") or DEFAULT_URL
