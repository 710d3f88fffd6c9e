"""Times as Kubernetes writes them: RFC 3339, UTC, to the second."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(when: datetime | None = None, *, to_minute: bool = False) -> str:
    """``when`` (default: now) as ``2026-11-28T09:00:00Z``; ``to_minute`` drops the
    seconds, so a value derived from a moving clock reads the same within a minute."""
    when = (when or datetime.now(UTC)).astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:00Z" if to_minute else "%Y-%m-%dT%H:%M:%SZ")


def from_ms(ms: int) -> datetime:
    """A datetime for milliseconds since the epoch (entry IDs, Redis TIME)."""
    return datetime.fromtimestamp(ms / 1000, UTC)
