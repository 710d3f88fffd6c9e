"""Property tests of the engine's Lua scripts on a real redis-server.

Entry IDs are pairs of unsigned 64-bit integers while Lua numbers are doubles (exact only
up to 2^53), so the scripts compare and step IDs as decimal strings. The IDs drawn here
crowd the edges where double arithmetic breaks (2^53 +- 1, 2^63, 2^64 - 1); the scripts
are checked against Python integers (engine/ids.py) and against Redis' own ID handling.
One server per test; FLUSHALL between examples.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from redistreams.engine import Engine, Owner, TopicIntent
from redistreams.engine.ids import MAX, U64_MAX, ZERO, StreamId
from redistreams.engine.intents import ResetIntent, RetentionPolicy
from redistreams.engine.scripts import COUNT_AFTER, RESET_GROUP
from redistreams.engine.state import GroupState, StreamState
from redistreams.model import PositionReset
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration

KEY = "orders"
REGISTRY = "redistreams:test"
DOUBLE_EXACT = 2**53  # integers from here on are not all representable as Lua numbers
EDGES = (0, 1, 2, 2**53 - 1, 2**53, 2**53 + 1, 2**63 - 1, 2**63, 2**63 + 1, 2**64 - 2, U64_MAX)
LAST_RFC3339_MS = 253402300799999  # 9999-12-31T23:59:59.999Z


def bounded(examples: int) -> Any:
    # The server fixture is per test, not per example: each example starts with FLUSHALL.
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


# -- strategies --------------------------------------------------------------------

parts = st.one_of(st.sampled_from(EDGES), st.integers(0, 3), st.integers(0, U64_MAX))
any_id = st.one_of(st.just(MAX), st.just(ZERO), st.builds(StreamId, parts, parts))


@st.composite
def id_text(draw: st.DrawFn) -> str:
    """An ID as Redis accepts it: sometimes with leading zeros, sometimes a bare <ms>."""
    sid = draw(any_id)
    zeros = st.integers(0, 2).map(lambda n: "0" * n)
    if sid.seq == 0 and draw(st.booleans()):
        return draw(zeros) + str(sid.ms)
    return f"{draw(zeros)}{sid.ms}-{draw(zeros)}{sid.seq}"


def entry_ms(now_ms: int) -> st.SearchStrategy[int]:
    return st.one_of(
        st.sampled_from(EDGES),
        st.integers(0, 10**7),  # long ago
        st.integers(2**41, U64_MAX),  # after 2039: never old
        # Recent: a multiple of 10 s ago (minus < 0.3 s). Max ages below are 10 s * n + 5 s,
        # so no entry sits near the cutoff while the test runs.
        st.builds(lambda k, j: now_ms - k * 10_000 - j, st.integers(0, 6), st.integers(0, 299)),
    )


def stream_ids(now_ms: int, min_size: int = 0, max_size: int = 20) -> st.SearchStrategy[list[StreamId]]:
    seqs = st.one_of(st.sampled_from(EDGES), st.integers(0, 3))
    ids = st.lists(st.builds(StreamId, entry_ms(now_ms), seqs), min_size=min_size, max_size=max_size)
    # The largest ID is a valid entry, and the edge this suite is about (1 stream in 4).
    with_max = st.tuples(ids, st.integers(0, 3)).map(lambda t: t[0] + [MAX] if t[1] == 0 else t[0])
    return with_max.map(lambda ids: sorted(set(ids) - {ZERO}))


def position(entries: list[StreamId], symbolic: bool = True) -> st.SearchStrategy[str]:
    """Where a group is put: $, 0, an entry, next to an entry, anywhere (incl. 2^64 - 1)."""
    choices = [any_id.map(str), st.just(str(MAX))]
    if symbolic:
        choices.append(st.sampled_from(["$", "0"]))
    if entries:  # twice as likely: groups inside the stream are the ones that hold entries back
        near = st.sampled_from(entries).flatmap(
            lambda e: st.sampled_from([e, e.successor() or e, e.predecessor() or e]))
        choices += [near.map(str), near.map(str)]
    return st.one_of(choices)


# -- helpers -----------------------------------------------------------------------


def server_ms(r: Any) -> int:
    seconds, micros = r.time()
    return seconds * 1000 + micros // 1000


def add_entries(r: Any, entries: list[StreamId]) -> None:
    pipe = r.pipeline(transaction=False)
    for i, e in enumerate(entries):
        pipe.xadd(KEY, {"n": str(i)}, id=str(e))
    pipe.execute()


def existing(r: Any) -> list[StreamId]:
    return [StreamId.parse(i) for i, _ in r.xrange(KEY)] if r.exists(KEY) else []


def groups_now(r: Any) -> dict[str, dict]:
    """name -> {'last': StreamId, 'pending': n, 'oldest': StreamId | None}"""
    if not r.exists(KEY):
        return {}
    out = {}
    for g in r.xinfo_groups(KEY):
        summary = r.xpending(KEY, g["name"])
        out[g["name"]] = {
            "last": StreamId.parse(g["last-delivered-id"]),
            "pending": summary["pending"],
            "oldest": StreamId.parse(summary["min"]) if summary["pending"] else None,
        }
    return out


def expected_bound(g: dict) -> tuple[StreamId, str] | None:
    """Written out with integers, apart from the code under test."""
    last = g["last"]
    if g["pending"] and g["oldest"] <= last:
        return g["oldest"], "pending"
    if last == MAX:
        return None  # received everything there can be
    if last.seq == U64_MAX:
        return StreamId(last.ms + 1, 0), "undelivered"
    return StreamId(last.ms, last.seq + 1), "undelivered"


def rfc3339(ms: int) -> str:
    t = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    return (f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
            f".{t.microsecond // 1000:03d}Z")


# -- ID arithmetic -----------------------------------------------------------------

IDS_PROBE = (
    resources.files("redistreams.engine").joinpath("lua", "ids.lua").read_text(encoding="utf-8")
    + "\nlocal ms, seq = split(ARGV[1])\n"
    + "return {compare(ARGV[1], ARGV[2]), successor(ARGV[1]) or false, ms, seq}\n"
)


@bounded(300)
@given(a=id_text(), b=id_text())
def test_lua_id_helpers_agree_with_python_and_redis(redis_server: RedisServer, a: str, b: str) -> None:
    r = redis_server.client()
    r.flushall()
    x, y = StreamId.parse(a), StreamId.parse(b)
    order, after, ms, seq = r.eval(IDS_PROBE, 0, a, b)
    assert StreamId(int(ms), int(seq)) == x
    assert order == (x > y) - (x < y)
    assert after == (None if x.successor() is None else str(x.successor()))
    if x != ZERO:  # (predecessor: used for reset times)
        assert x.predecessor() is not None and x.predecessor().successor() == x

    # Redis' own order: XADD takes an explicit ID only above the stream's last one, and
    # '*' after an ID in the future gives that ID's successor (or fails after the maximum).
    if x == ZERO:
        return
    pipe = r.pipeline(transaction=False)
    pipe.xadd(KEY, {"f": "a"}, id=a)
    pipe.xadd(KEY, {"f": "b"}, id=b)
    pipe.xadd(KEY, {"f": "next"}, id="*")
    first, second, auto = pipe.execute(raise_on_error=False)
    assert first == str(x)
    assert (not isinstance(second, Exception)) == (y > x)
    last = y if y > x else x
    if last.ms > server_ms(r) + 60_000:
        if last == MAX:
            assert isinstance(auto, Exception)
        else:
            assert auto == str(last.successor())


@bounded(100)
@given(data=st.data())
def test_count_after_counts_entries_after_any_id(redis_server: RedisServer, data: st.DataObject) -> None:
    r = redis_server.client()
    r.flushall()
    entries = data.draw(stream_ids(server_ms(r)), label="entries")
    add_entries(r, entries)
    at = StreamId.parse(data.draw(position(entries, symbolic=False), label="at"))
    cap = data.draw(st.integers(1, 25), label="cap")
    pipe = r.pipeline(transaction=False)
    COUNT_AFTER.load(pipe)
    COUNT_AFTER.call(pipe, [KEY], [str(at), cap])
    assert pipe.execute()[1] == min(cap, sum(e > at for e in entries))


# -- retention (trim.lua through Applier.trim_round) ---------------------------------


@bounded(200)
@given(data=st.data())
def test_retention_never_passes_a_safe_point_and_otherwise_trims_to_the_limit(
    redis_server: RedisServer, data: st.DataObject
) -> None:
    r = redis_server.client()
    r.flushall()
    entries = data.draw(stream_ids(server_ms(r), min_size=3, max_size=25), label="entries")
    add_entries(r, entries)
    delete_early = data.draw(st.booleans(), label="delete before the groups read")
    doomed = data.draw(st.lists(st.sampled_from(entries), unique=True, max_size=len(entries) // 2),
                       label="XDEL") if entries else []
    if delete_early and doomed:
        r.xdel(KEY, *map(str, doomed))

    names = [f"g{i}" for i in range(data.draw(st.integers(0, 3), label="groups"))]
    for name in names:
        r.xgroup_create(KEY, name, data.draw(position(entries), label=f"{name} created at"), mkstream=True)
        delivered: list[str] = []
        for consumer, count in data.draw(
                st.lists(st.tuples(st.sampled_from(["c1", "c2"]), st.integers(1, 8)), min_size=1, max_size=3),
                label=f"{name} reads"):
            got = r.xreadgroup(name, consumer, {KEY: ">"}, count=count)
            delivered += [i for i, _ in got[0][1]] if got else []
        acked = data.draw(st.one_of(
            st.just([True] * len(delivered)), st.just([False] * len(delivered)),
            st.lists(st.booleans(), min_size=len(delivered), max_size=len(delivered))), label=f"{name} acks")
        if any(acked):
            r.xack(KEY, name, *[i for i, a in zip(delivered, acked) if a])
    if not delete_early and doomed:
        r.xdel(KEY, *map(str, doomed))
    for name in names:
        # XGROUP SETID to the largest ID (or to $ after it) is how a group gets past everything.
        moved = data.draw(st.none() | st.just(str(MAX)) | position(entries), label=f"{name} moved to")
        if moved is not None:
            r.xgroup_setid(KEY, name, moved)

    limits = data.draw(st.sampled_from(["maxLength", "maxAge", "both", "both", "none"]), label="limits")
    max_length = max_age = None
    if limits in ("maxLength", "both"):
        max_length = data.draw(st.integers(0, len(entries) + 1), label="maxLength")
    if limits in ("maxAge", "both"):
        max_age = data.draw(st.integers(0, 6).map(lambda n: n * 10 + 5) | st.sampled_from([10**9, 2**53, 2**62]),
                            label="maxAge")
    retention = RetentionPolicy(max_length, max_age, data.draw(st.booleans(), label="allowTrimmingUnconsumed"))
    step = data.draw(st.integers(1, 8), label="step")

    # What should happen, from the state just before trimming.
    before = existing(r)
    groups = groups_now(r)
    wanted = 0
    if retention.max_length is not None:
        wanted = max(wanted, len(before) - retention.max_length)
    if retention.max_age_seconds is not None:
        cutoff = server_ms(r) - retention.max_age_seconds * 1000
        wanted = max(wanted, sum(e.ms < cutoff for e in before))
    bounds = {name: expected_bound(g) for name, g in groups.items()}
    lowest = min((b[0] for b in bounds.values() if b is not None), default=None)
    free = len(before)
    if lowest is not None and not retention.allow_trimming_unconsumed:
        free = sum(e < lowest for e in before)
    removed = min(wanted, free)
    if groups and lowest is None:
        event("every group received the largest ID and acknowledged all")
    note(f"entries={before} groups={groups} wanted={wanted} free={free}")

    # The engine's own reading of the same state (used when planning) agrees.
    state = StreamState(KEY, groups={
        name: GroupState(name, pending=g["pending"], last_delivered_id=str(g["last"]),
                         oldest_pending_id=None if g["oldest"] is None else str(g["oldest"]))
        for name, g in groups.items()})
    planned = state.safe_bound()
    if lowest is None:
        assert planned is None
    else:
        assert planned is not None and planned[0] == lowest and bounds[planned[1]] == (lowest, planned[2])

    engine = Engine(r, trim_step=step)
    intent = TopicIntent("topic/orders", Owner("c", "ns", "orders"), KEY, retention=retention)
    steps = []
    for _ in range(len(before) // step + 3):
        (s,) = engine.applier.trim_round([intent])
        assert s.failure is None, s.failure
        steps.append(s)
        if not s.more:
            break
    assert not steps[-1].more, "retention did not converge"

    assert sum(s.removed for s in steps) == removed
    assert existing(r) == before[removed:]
    if lowest is not None and not retention.allow_trimming_unconsumed:
        assert all(e < lowest for e in before[:removed])
    for s in steps[:-1]:
        assert (s.removed, s.more, s.blocker, s.reason) == (step, True, None, None)
    last = steps[-1]
    event(f"held back: {last.reason}" if removed < wanted else "trimmed to the limit" if wanted else "nothing to trim")
    if removed < wanted:  # held back: by a group whose bound is the lowest, for its reason
        assert last.blocker in bounds and bounds[last.blocker] == (lowest, last.reason)
    else:
        assert (last.blocker, last.reason) == (None, None)
    assert groups_now(r) == groups  # trimming never moves a group or touches its pending entries


# -- reset_group.lua -----------------------------------------------------------------


@st.composite
def reset_target(draw: st.DrawFn, live: list[StreamId], gone: list[StreamId]) -> str:
    """spec.reset.to: $, 0, an entry ID (kept, deleted, trimmed, next to one, anywhere;
    sometimes with leading zeros) or an RFC 3339 time (around entries' times too)."""
    known = live + gone
    ids = st.one_of([any_id, st.just(MAX)] + ([st.sampled_from(live)] * 2 if live else []))
    if known:
        ids = ids | st.sampled_from(known).map(lambda e: e.successor() or e)
        ids = ids | st.sampled_from(known).map(lambda e: e.predecessor() or e)
    times = st.integers(0, 2**41) | st.sampled_from(EDGES[:3])
    if known:
        near = [e.ms + d for e in known for d in (-1, 0, 1) if 0 <= e.ms + d <= LAST_RFC3339_MS]
        if near:
            times = times | st.sampled_from(near)
    kind = draw(st.sampled_from(["$", "0", "id", "id", "time"]))
    if kind in ("$", "0"):
        return kind
    if kind == "time":
        return rfc3339(draw(times))
    sid = draw(ids)
    text = str(sid)
    if draw(st.booleans()) and len(text) < 40:  # the field allows 41 characters
        text = "0" + text.replace("-", "-0")
    return text


@bounded(200)
@given(data=st.data())
def test_reset_moves_the_group_once_and_claims_a_lag_only_when_redis_reports_it(
    redis_server: RedisServer, data: st.DataObject
) -> None:
    r = redis_server.client()
    r.flushall()
    entries = data.draw(stream_ids(server_ms(r), min_size=6), label="entries")
    add_entries(r, entries)
    r.xgroup_create(KEY, "g", data.draw(position(entries), label="created at"), mkstream=True)
    read = data.draw(st.integers(0, 5), label="read")
    if read:
        r.xreadgroup("g", "c", {KEY: ">"}, count=read)
    gone: list[StreamId] = []
    keep = data.draw(st.none() | st.integers(0, len(entries)), label="XTRIM MAXLEN")
    if keep is not None:
        r.xtrim(KEY, maxlen=keep, approximate=False)
        gone += entries[: len(entries) - keep]
    left = existing(r)
    doomed = data.draw(st.lists(st.sampled_from(left), unique=True, max_size=2), label="XDEL") if left else []
    if doomed:
        r.xdel(KEY, *map(str, doomed))
        gone += doomed
    huge = st.sampled_from([2**53 - 1, 2**53, 2**53 + 1, 2**62, 2**63 - 1])
    added = data.draw(st.one_of(st.none(), st.none(), huge), label="XSETID ENTRIESADDED")
    if added is not None:  # entries-added beyond what a double holds exactly
        last_id = r.xinfo_stream(KEY)["last-generated-id"]
        r.execute_command("XSETID", KEY, last_id, "ENTRIESADDED", added)

    to = data.draw(reset_target(existing(r), gone), label="to")
    # Small caps reach the script's "too many to count" path; 10 000 is what the applier uses.
    cap = data.draw(st.sampled_from([1, 2, 3, 10_000]), label="count cap")
    intent = ResetIntent.from_spec(PositionReset(token="t1", to=to))

    info = r.xinfo_stream(KEY)
    last = StreamId.parse(info["last-generated-id"])
    length, entries_added = info["length"], info["entries-added"]
    first = StreamId.parse(info["recorded-first-entry-id"])
    max_deleted = StreamId.parse(info["max-deleted-entry-id"])
    if to == "$":
        where = last
    elif to == "0":
        where = ZERO
    elif "T" in to:
        ms = (datetime.fromisoformat(to.replace("Z", "+00:00"))
              - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
        where = StreamId(ms - 1, U64_MAX) if ms else ZERO
    else:
        where = StreamId(*(int(p) for p in to.split("-")))
    now = existing(r)
    after = sum(e > where for e in now)
    # A deleted entry after the target still counts in entries-added but cannot be counted.
    deleted_ahead = length > 0 and max_deleted != ZERO and max_deleted >= first and max_deleted > where
    exact = not (entries_added >= DOUBLE_EXACT or deleted_ahead or where > last)
    countable = after <= cap or length - after <= cap or where == ZERO
    claim = entries_added - after if exact and countable else -1
    note(f"entries={now} where={where} last={last} added={entries_added} after={after} claim={claim}")
    event("lag claimed" if claim >= 0 else "entries-added beyond 2^53" if entries_added >= DOUBLE_EXACT
          else "deleted entry ahead" if deleted_ahead else "after the last entry" if where > last
          else "too many to count")

    def apply(token: str, target: str) -> list:
        pipe = r.pipeline(transaction=False)
        RESET_GROUP.load(pipe)
        RESET_GROUP.call(pipe, [KEY, REGISTRY],
                         ["g", "reset:g", token, target, to, "2026-11-27T09:00:00Z", cap, 3, "owner:g"])
        return pipe.execute()[1]

    reply = apply("t1", intent.target)
    position_text = {"$": str(last), "0": "0-0"}.get(intent.target, intent.target)
    assert reply == ["applied", position_text, claim]
    (g,) = r.xinfo_groups(KEY)
    assert g["last-delivered-id"] == str(where)
    if claim >= 0:
        assert g["entries-read"] == claim
        if max_deleted == where and length > 0 and max_deleted >= first:
            assert g["lag"] in (None, after)  # Redis waits until the group passes that tombstone
        else:
            assert g["lag"] == after
    record = json.loads(r.hget(REGISTRY, "reset:g"))
    assert (record["token"], record["id"]) == ("t1", position_text)

    # The group delivers exactly what follows the target.
    got = r.xreadgroup("g", "checker", {KEY: ">"}, count=1000)
    assert [StreamId.parse(i) for i, _ in (got[0][1] if got else [])] == [e for e in now if e > where]

    # Once per token: the same token again (from anywhere) never moves the group back.
    moved_to = r.xinfo_groups(KEY)[0]["last-delivered-id"]
    assert apply("t1", "0") == ["seen", position_text]
    assert r.xinfo_groups(KEY)[0]["last-delivered-id"] == moved_to
    assert apply("t2", "$")[0] == "applied"
    assert apply("t1", "0") == ["seen", str(last)]  # an earlier token is remembered too
