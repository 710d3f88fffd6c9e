"""pubsub.cluster.SlotMap: CLUSTER SLOTS' ranges, gaps (slots no master serves), MOVED on top."""

from __future__ import annotations

from redistreams.pubsub.cluster import SlotMap


def test_ranges_gaps_and_moved_slots() -> None:
    slots = SlotMap([(5461, 10922, ("b", 2)), (0, 5460, ("a", 1)), (10924, 16383, ("c", 3))])
    assert [slots.get(s) for s in (0, 5460, 5461, 10922, 16383)] == [("a", 1), ("a", 1), ("b", 2), ("b", 2), ("c", 3)]
    assert slots.get(10923) is None  # unassigned
    slots.move(10923, ("c", 3))
    slots.move(0, ("b", 2))
    assert slots.get(10923) == ("c", 3) and slots.get(0) == ("b", 2) and slots.get(1) == ("a", 1)
    assert SlotMap([]).get(0) is None
