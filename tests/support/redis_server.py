"""Real redis-server processes for tests, each on its own free loopback port."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import redis

from tests.support.net import ReservedPort
from tests.support.processes import terminate

T = TypeVar("T")

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"

# REDISTREAMS_TEST_ACL=manager (or a comma list of rule sets from redistreams.acl, e.g.
# manager,publisher,consumer): the shared fixtures' ``url`` logs in as a user with exactly
# those documented rules (keys ~*); ``client()`` and ``admin_url`` stay the admin.
TEST_ACL_ENV = "REDISTREAMS_TEST_ACL"
ACL_USER, ACL_PASSWORD = "redistreams-test", "acl-test-pw"


def acl_from_env() -> tuple[str, ...]:
    """The rule sets the shared fixtures' user gets (empty: the default user)."""
    return tuple(n.strip() for n in os.environ.get(TEST_ACL_ENV, "").split(",") if n.strip())


class RedisServer:
    """One redis-server; ``stop()``/``start()`` simulate outages and restarts."""

    def __init__(self, *extra_args: str, persistence: bool = False, password: str | None = None,
                 acl: tuple[str, ...] = ()) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="redistreams-redis-"))
        self.reserved: list[ReservedPort] = [ReservedPort()]  # held until close(): see ReservedPort
        self.port = self.reserved[0].port
        self.extra_args = list(extra_args)
        self.persistence = persistence
        self.password = password
        self.acl = acl  # rule sets of the user ``url`` logs in as (see acl_from_env)
        self.process: subprocess.Popen[bytes] | None = None
        self.started = False  # once started, restarts keep the port

    @property
    def url(self) -> str:
        """The URL for the code under test: the documented-rules user when ``acl`` is set."""
        if self.acl:
            return f"redis://{ACL_USER}:{ACL_PASSWORD}@127.0.0.1:{self.port}/0"
        return self.admin_url

    @property
    def admin_url(self) -> str:
        """The default user (all commands): for tests that set up or break the server."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def unix_socket(self) -> Path:
        return self.dir / "redis.sock"

    def args(self) -> list[str]:
        args = [
            REDIS_SERVER,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--unixsocket", str(self.unix_socket),
            "--unixsocketperm", "700",
            "--logfile", str(self.dir / "redis.log"),
            "--daemonize", "no",
        ]
        if not self.persistence:
            args += ["--save", "", "--appendonly", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        return args + self.extra_args

    def new_port(self) -> int:
        """A port for a first start whose port was taken meanwhile (reserved like the first)."""
        self.release_ports()
        self.reserved = [ReservedPort()]
        return self.reserved[0].port

    def release_ports(self) -> None:
        for reserved in self.reserved:
            reserved.release()
        self.reserved = []

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Starts the server and waits until it answers. The port was free when it was
        picked (it is reserved, but a process that picked it earlier may bind it): a first
        start that finds it taken moves to another; a restart keeps it (clients hold the
        URL) and fails saying so."""
        for _ in range(5):
            if self._start_once(timeout) or self.started:
                break
            self.port = self.new_port()
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError(f"redis-server could not listen on port {self.port}: {self.log_tail()}")
        self.started = True
        return self

    def _start_once(self, timeout: float) -> bool:
        """False if the port was taken; raises on any other failure."""
        log = self.dir / "redis.log"
        logged = log.stat().st_size if log.exists() else 0
        self.process = subprocess.Popen(self.args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                if "Address already in use" in (log.read_text(errors="replace")[logged:] if log.exists() else ""):
                    return False
                raise RuntimeError(f"redis-server exited early: {self.log_tail()}")
            try:
                # Ours, not another worker's server on the same port (ours then fails to bind).
                if int(self.client().info("server")["process_id"]) == self.process.pid:
                    self._create_acl_user()
                    return True
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, redis.ResponseError, OSError):
                pass
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}: {self.log_tail()}")

    def _create_acl_user(self) -> None:
        """The test user with exactly the documented rules (again after every restart:
        users made by ACL SETUSER are not saved)."""
        if not self.acl:
            return
        from redistreams.acl import combined

        rules = combined(self.acl).rules(["*"], with_optional=True)
        self.client().execute_command("ACL", "SETUSER", ACL_USER, "reset", "on", f">{ACL_PASSWORD}", *rules)

    def stop(self) -> None:
        terminate(self.process)
        self.process = None

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        self.process = None

    def close(self) -> None:
        self.stop()
        self.release_ports()
        shutil.rmtree(self.dir, ignore_errors=True)

    def client(self, **kwargs: object) -> redis.Redis:
        options: dict[str, object] = {
            "decode_responses": True, "socket_timeout": 5, "protocol": 2, "password": self.password,
        }
        options.update(kwargs)
        return redis.Redis(host="127.0.0.1", port=self.port, **options)  # type: ignore[arg-type]

    def dirty(self) -> int:
        """Redis' count of writes since the last save: unchanged means nothing was written."""
        return int(self.client().info("persistence")["rdb_changes_since_last_save"])

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join((self.dir / "redis.log").read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"


def redis_env(url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["REDIS_URL"] = url
    return env


def settled(read: Callable[[], T], expected: T, timeout: float = 5.0) -> T:
    """``read()`` once it returns ``expected``, or its last value after ``timeout``.
    A server handles a peer's close in a later event-loop turn, so a CLIENT LIST sent
    right after a client closed its sockets may still show them."""
    deadline = time.monotonic() + timeout
    while (value := read()) != expected and time.monotonic() < deadline:
        time.sleep(0.02)
    return value
