"""Shared fixtures: real redis-server processes, the CLI run as a subprocess."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.support.cli import CLI
from tests.support.redis_server import RedisServer


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def raw(redis_server: RedisServer) -> redis.Redis:
    """A client that keeps replies as bytes (message bodies are binary)."""
    return redis_server.client(decode_responses=False)


@pytest.fixture
def url(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """The server's URL, also as REDIS_URL (the client reads it, like the Go driver)."""
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    return redis_server.url


@pytest.fixture
def make_redis() -> Iterator:
    """Factory for extra servers (replicas, ACL setups…); all are stopped afterwards."""
    servers: list[RedisServer] = []

    def make(*args: str, **kwargs: object) -> RedisServer:
        server = RedisServer(*args, **kwargs)  # type: ignore[arg-type]
        servers.append(server)
        return server.start()

    def adopt(server: RedisServer) -> RedisServer:
        """Starts a server configured by the caller (a chosen port…); stopped afterwards too."""
        servers.append(server)
        return server.start()

    make.adopt = adopt  # type: ignore[attr-defined]
    yield make
    for server in servers:
        server.close()


@pytest.fixture
def cli(redis_server: RedisServer) -> CLI:
    return CLI(redis_server.url)
