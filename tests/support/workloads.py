"""Traffic to run while something else happens (retention, an operator trimming).

``BusyStream``: one publisher thread and consumer threads on one stream and group. The
integration test runs retention steps itself while it is busy; the e2e test lets the
operator trim. A failure in a worker thread (an entry delivered without its body, a
Redis error) stops the other workers and is raised again in the caller by ``wait()``
(or when the ``with`` block ends), so it fails the test instead of becoming the
warning pytest shows for exceptions in threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

BODY_FIELD = "body"


def body(n: int) -> str:
    """The body of the n-th published entry."""
    return f"m{n}"


class BusyStream:
    """Publishes ``messages`` entries (``{"headers": "null", "body": "m<n>"}``) to ``key``
    while consumers of ``group`` read them, each acknowledging an entry ``ack_delay``
    seconds after receiving it (``consumers``: name → ack delay; a slow one keeps
    entries pending, which retention must not trim).

    ``published`` lists the entry IDs in order; ``delivered`` maps entry ID → body as
    the consumers received it. A consumer stops after ``quiet_rounds`` reads in a row
    that got nothing once everything is published; what it still holds is then read
    back from its own pending list (each must still have its body) and acknowledged.

        with BusyStream(server.client, "busy", "workers", messages=6000,
                        consumers={"fast": 0.0, "slow": 0.3}) as busy:
            while busy.running():
                ...  # trim
            busy.wait()
    """

    def __init__(self, connect: Callable[[], Any], key: str, group: str, *, messages: int,
                 consumers: Mapping[str, float], read_count: int = 100, block_ms: int = 50,
                 quiet_rounds: int = 20, pause_every: int = 0, pause: float = 0.01) -> None:
        self.connect = connect  # a new client per thread (decoded replies)
        self.key = key
        self.group = group
        self.messages = messages
        self.consumers = dict(consumers)
        self.read_count = read_count
        self.block_ms = block_ms
        self.quiet_rounds = quiet_rounds
        self.pause_every = pause_every  # publisher: sleep ``pause`` every this many entries (0: never)
        self.pause = pause
        self.published: list[str] = []
        self.delivered: dict[str, str] = {}
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._all_published = threading.Event()
        self._abort = threading.Event()
        self._threads = [threading.Thread(target=self._guard, args=(self._publish,), name="busy-publisher",
                                          daemon=True)]
        self._threads += [threading.Thread(target=self._guard, args=(self._consume, name, delay),
                                           name=f"busy-consumer-{name}", daemon=True)
                          for name, delay in self.consumers.items()]

    # -- the caller's side -------------------------------------------------------------

    def start(self) -> BusyStream:
        for thread in self._threads:
            thread.start()
        return self

    def running(self) -> bool:
        """Some worker is still going and none has failed."""
        return not self._abort.is_set() and any(t.is_alive() for t in self._threads)

    def wait(self, timeout: float | None = None) -> None:
        """Waits for every worker; raises the first worker failure, or AssertionError
        if they are still running after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        self.raise_failure()
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            self.stop()
            raise AssertionError(f"busy-stream workload still running after {timeout} s: {', '.join(alive)}")

    def raise_failure(self) -> None:
        with self._lock:
            error = self.errors[0] if self.errors else None
        if error is not None:
            raise error

    def stop(self) -> None:
        """Asks every worker to stop at its next step and waits a little for them."""
        self._abort.set()
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> BusyStream:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None:  # the caller failed: stop the workers, keep the caller's error
            self.stop()
            return
        self.wait()

    # -- worker threads ----------------------------------------------------------------

    def _guard(self, work: Callable[..., None], *args: Any) -> None:
        try:
            work(*args)
        except BaseException as exc:  # handed to the caller by wait()
            with self._lock:
                self.errors.append(exc)
            self._abort.set()

    def _publish(self) -> None:
        p = self.connect()
        for i in range(self.messages):
            if self._abort.is_set():
                return
            self.published.append(p.xadd(self.key, {"headers": "null", BODY_FIELD: body(i)}))
            if self.pause_every and i % self.pause_every == 0:
                time.sleep(self.pause)
        self._all_published.set()

    def _consume(self, name: str, ack_delay: float) -> None:
        c = self.connect()
        held: list[tuple[float, str]] = []  # (received at, entry ID), oldest first
        quiet = 0
        while quiet < self.quiet_rounds and not self._abort.is_set():
            got = c.xreadgroup(self.group, name, {self.key: ">"}, count=self.read_count, block=self.block_ms)
            entries = got[0][1] if got else []
            for entry_id, fields in entries:
                if not fields:
                    raise AssertionError(f"{entry_id} was delivered without its body")
            with self._lock:
                for entry_id, fields in entries:
                    self.delivered[entry_id] = fields[BODY_FIELD]
            now = time.monotonic()
            held += [(now, entry_id) for entry_id, _ in entries]
            due = [entry_id for received, entry_id in held if now - received >= ack_delay]
            if due:
                c.xack(self.key, self.group, *due)
                held = held[len(due):]  # held is oldest first: what is due is its head
            quiet = quiet + 1 if (not entries and self._all_published.is_set()) else 0
        if held and not self._abort.is_set():
            # Whatever it still holds must still be readable from its own PEL with a body.
            mine = c.xreadgroup(self.group, name, {self.key: "0"}, count=len(held) + 10)
            if not all(fields for _, fields in mine[0][1]):
                raise AssertionError("a pending entry lost its body")
            c.xack(self.key, self.group, *[entry_id for _, entry_id in held])
