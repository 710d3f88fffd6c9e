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

    def successor(self) -> StreamId:
        if self.seq < U64_MAX:
            return StreamId(self.ms, self.seq + 1)
        return StreamId(self.ms + 1, 0)

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}"


ZERO = StreamId(0, 0)
