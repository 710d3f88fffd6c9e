"""Names from Redis that are not UTF-8: shown safely, sent back exactly.

Redis keys, group and consumer names are bytes. Clients here decode them with
``surrogateescape``, so a name that is not UTF-8 holds lone surrogates, which no
terminal, JSON document, Kubernetes object or Prometheus exposition can carry and which
redis-py's hiredis packer refuses to send. Every output path passes names through
``printable`` (invalid bytes shown as ``\\xNN``), every command through ``wire``.
"""

from __future__ import annotations

from typing import Any


def printable(text: str) -> str:
    """``text`` with bytes that are not UTF-8 shown as ``\\xNN`` (unchanged when valid)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def printable_tree(value: Any) -> Any:
    """``printable`` applied to every string (keys too) of a JSON-like value."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable_tree(k): printable_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [printable_tree(v) for v in value]
    return value


def wire(value: Any) -> Any:
    """A name as Redis has it: the original bytes when it is not UTF-8, else unchanged."""
    if value.__class__ is str and not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogateescape")
    return value
