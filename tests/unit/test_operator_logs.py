"""Operator log lines cannot drive the terminal of an admin reading them."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import kopf
import pytest

from redistreams.controller.main import TerminalSafe, terminal_safe_logs

HOSTILE = "orders\x1b]0;owned\x07\x1b[2J\u202egpj.exe"


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(TerminalSafe())
    logger = logging.getLogger("test.operator.logs")
    logger.addHandler(handler)
    logger.propagate = False
    yield logger, out
    logger.removeHandler(handler)


def test_a_tenants_name_is_escaped_in_messages_and_tracebacks(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = captured
    logger.warning("cannot release %s in Redis", HOSTILE)
    try:
        raise RuntimeError(f"stream {HOSTILE} is gone")
    except RuntimeError:
        logger.exception("reconcile of %s failed", HOSTILE)
    text = out.getvalue()
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "cannot release orders\\x1b]0;owned\\x07\\x1b[2J\\u202egpj.exe in Redis\n" in text
    assert "RuntimeError: stream orders\\x1b]0;owned" in text
    assert "Traceback (most recent call last):\n" in text  # the traceback keeps its lines


def test_plain_lines_are_left_as_they_are(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = captured
    logger.warning("topic %s is Ready (%d entries, ünïcode kept)", "shop/orders", 3)
    assert out.getvalue() == "topic shop/orders is Ready (3 entries, ünïcode kept)\n"


def test_kopfs_handler_gets_the_filter_once() -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        kopf.configure(verbose=False, log_format=kopf.LogFormat.PLAIN)
        terminal_safe_logs()
        terminal_safe_logs()
        added = [h for h in root.handlers if h not in handlers]
        assert added and all(sum(isinstance(f, TerminalSafe) for f in h.filters) == 1 for h in added)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
