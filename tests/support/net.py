"""Loopback ports for the servers the tests start (redis-server, etcd, kube-apiserver)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ReservedPort:
    """A loopback port held bound (SO_REUSEADDR, never listening) until ``release()``.

    A port from ``free_port()`` is free only until another process (a parallel xdist
    worker, an outgoing connection) takes it, and a server stopped and restarted on it
    gives it up meanwhile. Held like this, the kernel hands it to no ``bind(('', 0))`` and
    no outgoing connection, while a server that binds with SO_REUSEADDR (redis-server
    does) still listens on it, again after every restart."""

    def __init__(self, port: int = 0) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.bind(("127.0.0.1", port))
        except OSError:
            self._sock.close()
            raise
        self.port: int = self._sock.getsockname()[1]

    def release(self) -> None:
        self._sock.close()

    def __enter__(self) -> int:
        """``with ReservedPort() as port``: a port where nothing listens (connections are
        refused) and nothing else can start listening meanwhile."""
        return self.port

    def __exit__(self, *exc: object) -> None:
        self.release()
