"""Shared fixtures: real redis-server processes, the CLI run as a subprocess."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.support.cli import CLI
from tests.support.redis_cluster import RedisCluster
from tests.support.redis_server import RedisServer, acl_from_env
from tests.support.tls import Certificates, TLSRedisServer


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer(acl=acl_from_env()).start()
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
        kwargs.setdefault("acl", acl_from_env())
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


@pytest.fixture(scope="session")
def redis_cluster_session() -> Iterator[RedisCluster]:
    """One 3-master/3-replica Redis Cluster per test session (xdist: per worker), formed on
    first use (~6 s); every process is stopped at the end."""
    cluster = RedisCluster().start()
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def redis_cluster(redis_cluster_session: RedisCluster) -> RedisCluster:
    """The session's cluster, healed and flushed for this test: every node running, every
    slot served, no migration half-done (a bent topology is rebuilt: read ``url`` here)."""
    redis_cluster_session.heal()
    return redis_cluster_session


@pytest.fixture(scope="module")
def certs() -> Iterator[Certificates]:
    """A throwaway CA with server and client certificates (openssl), per module."""
    made = Certificates.make()
    yield made
    made.close()


@pytest.fixture(scope="module")
def mtls(certs: Certificates) -> Iterator[TLSRedisServer]:
    """A TLS-only server that requires a client certificate."""
    server = TLSRedisServer(certs, auth_clients="yes").start()
    yield server
    server.close()
