"""Names from Redis that are not UTF-8: shown safely, sent back exactly.

Redis keys, group and consumer names are bytes. Clients here decode them with
``surrogateescape``, so a name that is not UTF-8 holds lone surrogates, which no
terminal, JSON document, Kubernetes object or Prometheus exposition can carry and which
redis-py's hiredis packer refuses to send. Every output path passes names through
``printable`` (invalid bytes shown as ``\\xNN``), every command through ``wire``.
Text for a terminal also goes through ``shown``: a name is anyone's (a tenant's, a
hostile client's) and must not move the cursor, retitle the window or reverse the line.
"""

from __future__ import annotations

import re
from typing import Any


def printable(text: str) -> str:
    """``text`` with bytes that are not UTF-8 shown as ``\\xNN`` (unchanged when valid)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


# Characters that would corrupt or spoof a terminal line: controls (ESC starts every
# terminal sequence), line separators, bidi overrides, zero-width ones and the byte-order mark.
TERMINAL_ESCAPES = {
    c: f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"
    for c in [*range(0x20), *range(0x7F, 0xA0), 0xAD, 0x61C, *range(0x200B, 0x2010),
              *range(0x2028, 0x202F), *range(0x2060, 0x2070), 0xFEFF]
}


def shown(text: str) -> str:
    """``printable`` text made safe for one terminal line: invisible characters escaped."""
    text = printable(text)
    return text if text.isprintable() else text.translate(TERMINAL_ESCAPES)


_UNSAFE = re.compile("[" + re.escape("".join(map(chr, TERMINAL_ESCAPES))) + "]")


def terminal_safe(document: str) -> bool:
    """Whether a document (JSON, YAML) holds none of the characters ``shown`` escapes raw:
    their own escaping leaves bidi overrides and C1 controls as they are."""
    return _UNSAFE.search(document) is None


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
