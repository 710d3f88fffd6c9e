"""A Sentinel group on loopback: 1 master, 2 replicas, 3 sentinels (`redis-server
<conf> --sentinel`, each with its own writable config in a temp dir), with helpers to
fail over (SENTINEL FAILOVER, or kill the master) and wait for the promotion."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import redis

from tests.support.net import ReservedPort
from tests.support.processes import terminate
from tests.support.redis_server import REDIS_SERVER, RedisServer
from tests.support.tls import Certificates, TLSRedisServer

T = TypeVar("T")

MASTER_NAME = "mymaster"
DOWN_AFTER_MS = 1000


class Sentinel:
    def __init__(self, directory: Path, master_port: int, password: str | None = None,
                 sentinel_password: str | None = None, certs: Certificates | None = None) -> None:
        self.reserved = ReservedPort()  # held until close(): see ReservedPort
        self.port = self.reserved.port
        self.dir = directory
        self.certs = certs
        self.conf = directory / f"sentinel-{self.port}.conf"
        listen = (f"port 0\ntls-port {self.port}\ntls-cert-file {certs.server_cert}\n"
                  f"tls-key-file {certs.server_key}\ntls-ca-cert-file {certs.ca}\ntls-auth-clients no\n"
                  "tls-replication yes\n") if certs else f"port {self.port}\n"
        self.conf.write_text(
            f"{listen}bind 127.0.0.1\ndir {directory}\ndaemonize no\n"
            f"logfile {directory / f'sentinel-{self.port}.log'}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER_NAME} 4000\n"
            f"sentinel parallel-syncs {MASTER_NAME} 2\n"
            + (f"sentinel auth-pass {MASTER_NAME} {password}\n" if password else "")
            + (f"requirepass {sentinel_password}\nsentinel sentinel-pass {sentinel_password}\n"
               if sentinel_password else "")
        )
        self.password = sentinel_password
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([REDIS_SERVER, str(self.conf), "--sentinel"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def client(self) -> redis.Redis:
        tls: dict[str, Any] = {"ssl": True, "ssl_ca_certs": str(self.certs.ca)} if self.certs else {}
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True, socket_timeout=2,
                           password=self.password, **tls)

    def master(self) -> tuple[str, int] | None:
        try:
            address = self.client().sentinel_get_master_addr_by_name(MASTER_NAME)
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            return None
        return (address[0], int(address[1])) if address else None

    def stop(self) -> None:
        terminate(self.process)

    def close(self) -> None:
        self.stop()
        self.reserved.release()


class SentinelGroup:
    """``url`` is the redis+sentinel:// URL; ``servers`` maps a port to its RedisServer.
    ``password``: the servers' requirepass (and masterauth); ``sentinel_password``: the
    sentinels' own requirepass; ``certs``: TLS only, everywhere (replication too)."""

    def __init__(self, replicas: int = 2, sentinels: int = 3, password: str | None = None,
                 sentinel_password: str | None = None, certs: Certificates | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="redistreams-sentinel-"))
        self.password = password
        self.sentinel_password = sentinel_password
        fast = ("--repl-diskless-sync-delay", "0")  # full syncs start at once (default: 5 s)
        auth = ("--masterauth", password) if password else ()
        self.certs = certs

        def server(*args: str) -> RedisServer:
            if certs:
                return TLSRedisServer(certs, *fast, *auth, "--tls-replication", "yes", *args, password=password)
            return RedisServer(*fast, *auth, *args, password=password)

        self.master_server = server()
        self.replica_servers = [server("--replicaof", "127.0.0.1", str(self.master_server.port))
                                for _ in range(replicas)]
        self.sentinels = [Sentinel(self.dir, self.master_server.port, password, sentinel_password, certs)
                          for _ in range(sentinels)]

    @property
    def servers(self) -> dict[int, RedisServer]:
        return {s.port: s for s in [self.master_server, *self.replica_servers]}

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        auth = f":{self.password}@" if self.password else ""
        options = [f"sentinel_password={self.sentinel_password}"] if self.sentinel_password else []
        if self.certs:
            options.append(f"ssl_ca_certs={self.certs.ca}")
        query = f"?{'&'.join(options)}" if options else ""
        scheme = "rediss+sentinel" if self.certs else "redis+sentinel"
        return f"{scheme}://{auth}{hosts}/{MASTER_NAME}/0{query}"

    def start(self, timeout: float = 60) -> SentinelGroup:
        """Waits until every sentinel knows the other sentinels and every replica: a sentinel
        that asked the master before a replica connected learns of it at its next INFO,
        10 s later; a loaded machine adds to that."""
        self.master_server.start()
        for replica in self.replica_servers:
            replica.start()
        for sentinel in self.sentinels:
            sentinel.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._ready():
                return self
            time.sleep(0.1)
        raise RuntimeError("the Sentinel group did not form")

    def _ready(self) -> bool:
        try:
            info = self.master_server.client().info("replication")
            online = [k for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)
                      and v.get("state") == "online"]
            if len(online) < len(self.replica_servers):
                return False
            for sentinel in self.sentinels:
                state = sentinel.client().sentinel_master(MASTER_NAME)
                if int(state.get("num-other-sentinels", 0)) < len(self.sentinels) - 1:
                    return False
                if int(state.get("num-slaves", 0)) < len(self.replica_servers):
                    return False
            return True
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            return False

    def master(self) -> RedisServer:
        """The server the sentinels currently name as master."""
        for sentinel in self.sentinels:
            address = sentinel.master()
            if address:
                return self.servers[address[1]]
        raise RuntimeError("no sentinel answers")

    def wait_for_new_master(self, old: RedisServer, timeout: float = 30) -> RedisServer:
        """Waits until every live sentinel names another master and it accepts writes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            named = {s.master() for s in self.sentinels if s.process and s.process.poll() is None}
            if len(named) == 1 and None not in named:
                ((_, port),) = named  # type: ignore[misc]
                if port != old.port:
                    server = self.servers[port]
                    try:
                        if server.client().info("replication")["role"] == "master":
                            return server
                    except (redis.ConnectionError, redis.TimeoutError):
                        pass
            time.sleep(0.1)
        raise RuntimeError(f"no failover away from port {old.port} within {timeout}s")

    def wait_settled(self, timeout: float = 30) -> RedisServer:
        """Waits until every live server replicates from the master the sentinels name."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            master = self.master()
            try:
                live = [s for s in self.servers.values() if s.process is not None and s is not master]
                infos = [s.client().info("replication") for s in live]
                if all(i["role"] == "slave" and int(i["master_port"]) == master.port
                       and i["master_link_status"] == "up" for i in infos):
                    return master
            except (redis.ConnectionError, redis.TimeoutError, KeyError):
                pass
            time.sleep(0.1)
        raise RuntimeError("the servers did not settle on one master")

    def failover(self) -> RedisServer:
        """A planned failover (SENTINEL FAILOVER): no write made before the call is lost.
        Returns the new master."""
        old = self.master()
        # Replication is asynchronous: a replica a loaded machine left behind would be
        # promoted without the last writes. Writes racing the failover stay the test's to judge.
        replicas = sum(1 for s in self.servers.values() if s is not old and s.process is not None)
        old.client(socket_timeout=20).execute_command("WAIT", replicas, 15_000)
        self.sentinels[0].client().sentinel_failover(MASTER_NAME)
        return self.wait_for_new_master(old)

    def kill_master(self) -> tuple[RedisServer, RedisServer]:
        """SIGKILL the master; returns (old, new) once a replica is promoted. The old one
        is not restarted (``restart(old)`` brings it back, as a replica)."""
        old = self.master()
        old.kill()
        return old, self.wait_for_new_master(old)

    def lose_writes(self, write: Callable[[], T]) -> tuple[T, RedisServer]:
        """Runs ``write`` on a master cut off from its replicas, then kills it: the write
        exists only on the dead master. Returns (what ``write`` returned, the promoted master).

        The replicas are paused (SIGSTOP, well under down-after-milliseconds) while the
        master drops their links, so they cannot reconnect before it dies."""
        master = self.master()
        replicas = [s for s in self.servers.values() if s is not master]
        for replica in replicas:
            assert replica.process is not None
            replica.process.send_signal(signal.SIGSTOP)
        try:
            master.client().execute_command("CLIENT", "KILL", "TYPE", "replica")
            result = write()
            master.kill()
        finally:
            for replica in replicas:
                assert replica.process is not None
                replica.process.send_signal(signal.SIGCONT)
        return result, self.wait_for_new_master(master)

    def restart(self, server: RedisServer) -> None:
        server.start()

    def close(self) -> None:
        for sentinel in self.sentinels:
            sentinel.close()
        for server in self.servers.values():
            server.close()
        shutil.rmtree(self.dir, ignore_errors=True)
