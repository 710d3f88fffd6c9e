"""Stream entry IDs: ``<ms>-<seq>``, both unsigned 64-bit."""

from __future__ import annotations

from typing import NamedTuple

U64_MAX = 2**64 - 1


class StreamId(NamedTuple):
    ms: int
    seq: int

    @classmethod
    def parse(cls, text: str) -> StreamId:
        ms, _, seq = text.partition("-")
        return cls(int(ms), int(seq or 0))

    def successor(self) -> StreamId | None:
        """The next ID; None after the largest one, which nothing can follow."""
        if self.seq < U64_MAX:
            return StreamId(self.ms, self.seq + 1)
        if self.ms < U64_MAX:
            return StreamId(self.ms + 1, 0)
        return None

    def predecessor(self) -> StreamId | None:
        """The previous ID; None before 0-0."""
        if self.seq > 0:
            return StreamId(self.ms, self.seq - 1)
        if self.ms > 0:
            return StreamId(self.ms - 1, U64_MAX)
        return None

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}"


ZERO = StreamId(0, 0)
MAX = StreamId(U64_MAX, U64_MAX)
