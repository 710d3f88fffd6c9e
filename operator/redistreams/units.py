"""Times and durations: RFC 3339 as Kubernetes writes it, and the durations of the
manifests (``90s``, ``15m``, ``36h``, ``7d``, ``1h30m``). Standard library only, so the CLI
can use them without loading the model."""

from __future__ import annotations

import re
from datetime import UTC, datetime

DURATION_PATTERN = r"^([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?$"
DURATION_MAX = 32
_DURATION_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION_PART = re.compile(r"([0-9]+)([dhms])")


def rfc3339(when: datetime | None = None, *, to_minute: bool = False) -> str:
    """``when`` (default: now) as ``2026-11-28T09:00:00Z``; ``to_minute`` drops the
    seconds, so a value derived from a moving clock reads the same within a minute."""
    when = (when or datetime.now(UTC)).astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:00Z" if to_minute else "%Y-%m-%dT%H:%M:%SZ")


def from_ms(ms: int) -> datetime:
    """A datetime for milliseconds since the epoch (entry IDs, Redis TIME)."""
    return datetime.fromtimestamp(ms / 1000, UTC)


def parse_duration(text: str) -> int:
    """Seconds in a duration such as ``90s``, ``15m``, ``36h``, ``7d`` or ``1h30m``."""
    if (
        not isinstance(text, str)
        or not text
        or len(text) > DURATION_MAX
        or not re.fullmatch(DURATION_PATTERN, text)
        or not re.search(r"[1-9]", text)
    ):
        raise ValueError(f'invalid duration "{text}" (use e.g. 90s, 15m, 36h, 7d, 1h30m)')
    return sum(int(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(text))


def format_duration(seconds: float) -> str:
    """The inverse of parse_duration, for display (``3723`` -> ``1h2m3s``)."""
    seconds = int(seconds)
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, size in _DURATION_UNITS.items():
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
