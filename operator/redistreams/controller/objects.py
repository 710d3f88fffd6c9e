"""The operator's copy of its objects, as the watch delivers them.

``Declared`` is one object's latest body (slimmed to what reconciling needs);
``ObjectCache`` keeps them by key, with an index from each Topic to the ConsumerGroups
that name it.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..engine import Memory
from ..engine.ownership import ENTRY_ID
from ..model import ConsumerGroup, Topic

SHARED_TEXT_MAX = 64  # shorter strings are shared between objects (keys, reasons, epochs, times)
PAUSED_ANNOTATION = "redistreams.dev/paused"
SKIP_CLEANUP_ANNOTATION = "redistreams.dev/skip-cleanup"
KEPT_ANNOTATIONS = frozenset((PAUSED_ANNOTATION, SKIP_CLEANUP_ANNOTATION))

Key = tuple[str, str, str]  # (kind, namespace, name)
Version = tuple[str | None, int | None]  # (uid, generation): one object's one spec


@dataclass
class Declared:
    """The latest body of one of our objects, as the watch delivered it."""

    kind: str
    body: dict[str, Any]

    @property
    def key(self) -> Key:
        meta = self.body["metadata"]
        return (self.kind, meta.get("namespace") or "default", meta["name"])

    @property
    def status(self) -> dict[str, Any]:
        return self.body.get("status") or {}

    @property
    def generation(self) -> int | None:
        generation: int | None = self.body["metadata"].get("generation")  # the API server's integer
        return generation

    @property
    def version(self) -> Version:
        return self.body["metadata"].get("uid"), self.generation

    @property
    def paused(self) -> bool:
        return (self.body["metadata"].get("annotations") or {}).get(PAUSED_ANNOTATION) == "true"

    def memory(self) -> Memory | None:
        """What status remembers: the registry epoch it was reconciled against and, for a
        group with nothing pending, a position from which re-creating it loses nothing."""
        epoch = self.status.get("registryEpoch")
        if not isinstance(epoch, str):
            return None
        last = self.status.get("lastDeliveredId")
        safe = self.status.get("pending") == 0 and isinstance(last, str) and ENTRY_ID.fullmatch(last)
        return Memory(epoch, last if safe else None)

    def model(self) -> Topic | ConsumerGroup:
        data = {k: self.body[k] for k in ("apiVersion", "kind", "metadata", "spec") if k in self.body}
        meta = data["metadata"]
        data["metadata"] = {k: meta[k] for k in ("name", "namespace", "labels", "annotations") if k in meta}
        return (Topic if self.kind == "Topic" else ConsumerGroup).model_validate(data)


class ObjectCache:
    """Our objects by key, fed by the watch (``remember``, ``forget``), and the
    ConsumerGroups of each Topic (an index: a burst of Topics must not scan every
    object each)."""

    def __init__(self) -> None:
        self.objects: dict[Key, Declared] = {}
        self._groups_by_topic: dict[Key, set[Key]] = {}

    def remember(self, kind: str, body: Mapping[str, Any]) -> Declared:
        """Keeps only what reconciling needs: managedFields and others' annotations
        (last-applied-configuration…) would triple the memory per object."""
        meta = body["metadata"]
        # Only those we read: kopf's own under our prefix (an older operator's diff-base
        # annotation, a copy of the spec on every Delete object) are not kept.
        annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k in KEPT_ANNOTATIONS}
        slim = {
            "apiVersion": _shared(body.get("apiVersion")),
            "kind": _shared(body.get("kind")),
            "metadata": {k: _shared(meta[k]) if k == "namespace" else meta[k]
                         for k in ("name", "namespace", "generation", "uid", "deletionTimestamp")
                         if k in meta} | ({"annotations": annotations} if annotations else {}),
            "spec": _shared(body.get("spec") or {}),
            "status": _shared(body.get("status") or {}),
        }
        declared = Declared(kind, slim)
        self.forget(kind, *declared.key[1:])
        self.objects[declared.key] = declared
        if kind == "ConsumerGroup":
            self._groups_by_topic.setdefault(self._topic_key(declared), set()).add(declared.key)
        return declared

    def forget(self, kind: str, namespace: str, name: str) -> None:
        gone = self.objects.pop((kind, namespace, name), None)
        if gone is not None and kind == "ConsumerGroup":
            members = self._groups_by_topic.get(self._topic_key(gone))
            if members is not None:
                members.discard(gone.key)
                if not members:
                    del self._groups_by_topic[self._topic_key(gone)]

    @staticmethod
    def _topic_key(group: Declared) -> Key:
        return ("Topic", group.key[1], ((group.body.get("spec") or {}).get("topicRef") or {}).get("name") or "")

    def groups_of(self, topic: Key) -> list[Declared]:
        """The ConsumerGroups that name this Topic (from the index)."""
        return [self.objects[k] for k in self._groups_by_topic.get(topic, ()) if k in self.objects]

    def topic_of(self, group: Declared) -> Declared | None:
        spec = group.body.get("spec") or {}
        name = (spec.get("topicRef") or {}).get("name")
        return self.objects.get(("Topic", group.key[1], name)) if name else None


def _shared(value: Any) -> Any:
    """A decoded JSON value whose short strings are shared: each watch event decodes its
    own copy of every key and value ("observedGeneration", "Ready", the registry epoch,
    the same second's timestamps), which made status most of the operator's memory."""
    if isinstance(value, dict):
        return {sys.intern(k) if isinstance(k, str) else k: _shared(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shared(v) for v in value]
    if isinstance(value, str) and len(value) <= SHARED_TEXT_MAX:
        return sys.intern(value)
    return value
