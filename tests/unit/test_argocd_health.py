"""The Argo CD health script, run by a real Lua interpreter (lupa) on status samples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lupa

SCRIPT = (Path(__file__).resolve().parents[2] / "gitops" / "argocd" / "health.lua").read_text()


def health(obj: dict[str, Any]) -> tuple[str, str]:
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)

    def to_lua(value: Any) -> Any:
        if isinstance(value, dict):
            return lua.table_from({k: to_lua(v) for k, v in value.items()})
        if isinstance(value, list):
            return lua.table_from([to_lua(v) for v in value])
        return value

    lua.globals().obj = to_lua(obj)
    result = lua.execute(SCRIPT)
    return result["status"], result["message"]


def topic(generation: int = 2, status: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": "orders", "generation": generation, **meta}, "spec": {},
            **({"status": status} if status is not None else {})}


def conditions(ready: str, reason: str, stalled: str = "False", message: str = "m") -> list[dict[str, Any]]:
    return [
        {"type": "Ready", "status": ready, "reason": reason, "message": message},
        {"type": "Reconciling", "status": "False", "reason": reason, "message": ""},
        {"type": "Stalled", "status": stalled, "reason": reason if stalled == "True" else "NotStalled",
         "message": message if stalled == "True" else ""},
    ]


def test_fresh_object_is_progressing() -> None:
    assert health(topic())[0] == "Progressing"
    assert health(topic(status={"observedGeneration": -1}))[0] == "Progressing"


def test_ready_is_healthy_only_for_the_latest_generation() -> None:
    ready = {"observedGeneration": 2, "conditions": conditions("True", "StreamReady", message="stream exists")}
    assert health(topic(status=ready)) == ("Healthy", "stream exists")
    stale = {"observedGeneration": 1, "conditions": conditions("True", "StreamReady")}
    assert health(topic(status=stale))[0] == "Progressing"


def test_stalled_is_degraded() -> None:
    conflict = {"observedGeneration": 2, "conditions": conditions("False", "Conflict", "True", "owned by x")}
    assert health(topic(status=conflict)) == ("Degraded", "Conflict: owned by x")


def test_transient_failures_keep_progressing() -> None:
    down = {"observedGeneration": 2, "conditions": conditions("False", "RedisUnavailable", message="unreachable")}
    assert health(topic(status=down)) == ("Progressing", "RedisUnavailable: unreachable")


def test_deleting_is_progressing() -> None:
    ready = {"observedGeneration": 2, "conditions": conditions("True", "StreamReady")}
    assert health(topic(status=ready, deletionTimestamp="2026-11-27T00:00:00Z"))[0] == "Progressing"
