"""`redistreams operator`: run the kopf operator."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import kopf

from .. import metrics
from ..printable import shown
from .handlers import register
from .leadership import LeaseConfig, lead
from .runtime import OperatorConfig


class TerminalSafe(logging.Filter):
    """Escapes what would drive an admin's terminal (ESC sequences, bidi overrides) in a
    log line: messages and tracebacks carry tenants' stream and group names as they are."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.isprintable():
            record.msg, record.args = shown(message), None
        if record.exc_info and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = "\n".join(shown(line) for line in text.split("\n"))
        return True


def terminal_safe_logs() -> None:
    """``TerminalSafe`` on every handler of the root logger (kopf.configure's)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, TerminalSafe) for f in handler.filters):
            handler.addFilter(TerminalSafe())


def build(config: OperatorConfig) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    register(registry, config)
    return registry


def operator_kwargs(config: OperatorConfig, namespaces: list[str], liveness: str | None,
                    fence: Callable[[], None] | None = None) -> dict[str, Any]:
    return dict(
        registry=build(config),
        clusterwide=not namespaces,
        namespaces=namespaces,
        # No kopf peering: one replica runs kopf at a time, the one holding the Lease
        # (leadership.py), or the only one.
        standalone=True,
        liveness_endpoint=liveness,
        memo=kopf.Memo(fence=fence) if fence is not None else kopf.Memo(),
    )


def run(config: OperatorConfig, namespaces: list[str], liveness: str | None, verbose: bool, log_format: str,
        metrics_port: int = 0, lease: LeaseConfig | None = None) -> None:
    """Runs the operator; with ``lease``, only while this replica holds it."""
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat[log_format.upper()])
    terminal_safe_logs()
    if metrics_port:
        metrics.serve(metrics_port)
    if lease is None:
        metrics.LEADER.set(1)
        kopf.run(**operator_kwargs(config, namespaces, liveness))
        return

    async def operate(fence: Callable[[], None]) -> None:
        # No stop_flag: kopf stops on SIGTERM itself, and would wait 5 s for the flag's waiter.
        await kopf.operator(**operator_kwargs(config, namespaces, liveness, fence))

    asyncio.run(lead(lease, liveness, operate))


def run_in_thread(config: OperatorConfig, namespaces: Sequence[str] = (), liveness: str | None = None
                  ) -> tuple[threading.Thread, threading.Event, threading.Event]:
    """For tests and embedding: returns (thread, ready, stop)."""
    ready, stop = threading.Event(), threading.Event()

    def main() -> None:
        asyncio.run(kopf.operator(ready_flag=ready, stop_flag=stop,
                                  **operator_kwargs(config, list(namespaces), liveness)))

    thread = threading.Thread(target=main, name="redistreams-operator", daemon=True)
    thread.start()
    return thread, ready, stop
