"""From Kubernetes objects to engine batches and back to status.

Handlers and the periodic resync both go through ``Reconciler.run``: resources are
grouped by Redis connection and each group is one engine batch (a bounded number of
pipelined round trips), run in a worker thread so the event loop stays free.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from .. import DEFAULT_REGISTRY_KEY, metrics
from ..connection import ConnectionConfigError, RedisTarget, redact, secret_parts
from ..engine import Engine, Memory, Result
from ..engine.intents import GroupIntent, Owner, group_intent, topic_intent
from ..engine.ownership import ENTRY_ID
from ..engine.plan import GroupPlan, TopicPlan, consumer_idle_ms
from ..engine.state import ConsumerState
from ..manifests import describe_validation_error
from ..model import CONSUMER_NAME_MAX, STATUS_LIST_MAX, ConsumerGroup, Topic
from ..units import from_ms, rfc3339
from .conditions import (
    GROUP_READY,
    INVALID_SPEC,
    SECRET_NOT_FOUND,
    STREAM_READY,
    TOPIC_NOT_FOUND,
    Outcome,
)
from .kube import KubeAPI

log = logging.getLogger("redistreams.operator")

PAUSED_ANNOTATION = "redistreams.dev/paused"
SKIP_CLEANUP_ANNOTATION = "redistreams.dev/skip-cleanup"

Key = tuple[str, str, str]  # (kind, namespace, name)


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


@dataclass(frozen=True)
class Source:
    """Where a Topic's Redis is: a URL, and the Secret it came from. A Secret's value is
    never shown: messages name the Secret instead (a tenant may point secretRef at any
    Secret of its namespace, including ones it cannot read)."""

    url: str
    secret: str | None = None


@dataclass
class Computed:
    """What a reconcile produced for one resource: conditions input and status fields."""

    outcome: Outcome
    fields: dict[str, Any] = field(default_factory=dict)
    result: Result | None = None
    reset: str | None = None  # Redis lost data we had made: why (and what came back from 0)
    drift: bool = False  # something we had made was deleted behind our back and is back


class Reconciler:
    def __init__(self, *, cluster_id: str, default_url: str, kube: KubeAPI | None = None,
                 registry_key: str = DEFAULT_REGISTRY_KEY) -> None:
        self.cluster_id = cluster_id
        self.default_url = default_url
        self.kube = kube
        self.registry_key = registry_key
        self.objects: dict[Key, Declared] = {}
        self._groups_by_topic: dict[Key, set[Key]] = {}
        self._engines: dict[Source, Engine] = {}
        self.lock = asyncio.Lock()  # one engine pass at a time keeps Redis traffic ordered
        self._waiting: dict[Key, list[asyncio.Future[Computed | None]]] = {}
        self._flusher: asyncio.Task[None] | None = None
        self.linger = 0.05
        self.trim_on_apply = True  # False when the observation loop applies retention

    # -- the watch feeds this -------------------------------------------------------

    def remember(self, kind: str, body: Mapping[str, Any]) -> Declared:
        """Keeps only what reconciling needs: managedFields and others' annotations
        (last-applied-configuration…) would triple the memory per object."""
        meta = body["metadata"]
        annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k.startswith("redistreams.dev/")}
        slim = {
            "apiVersion": body.get("apiVersion"),
            "kind": body.get("kind"),
            "metadata": {k: meta[k] for k in ("name", "namespace", "generation", "uid", "deletionTimestamp")
                         if k in meta} | ({"annotations": annotations} if annotations else {}),
            "spec": body.get("spec") or {},
            "status": body.get("status") or {},
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
        """The ConsumerGroups that name this Topic (an index: a burst of Topics must not
        scan every object each)."""
        return [self.objects[k] for k in self._groups_by_topic.get(topic, ()) if k in self.objects]

    def topic_of(self, group: Declared) -> Declared | None:
        spec = group.body.get("spec") or {}
        name = (spec.get("topicRef") or {}).get("name")
        return self.objects.get(("Topic", group.key[1], name)) if name else None

    # -- connections ----------------------------------------------------------------

    async def source_for(self, topic: Topic) -> Source | None:
        """Where the Topic's Redis is: the default URL or its Secret; None when the
        Secret or its key is missing. Secret contents are never shown (see Source)."""
        if topic.spec.connection is None:
            return Source(self.default_url)
        if self.kube is None:
            return None
        ref = topic.spec.connection.secretRef
        secret = f'Secret "{topic.namespace}/{ref.name}" key "{ref.key}"'
        try:
            url = await self.kube.secret_value(topic.namespace, ref.name, ref.key)
        except UnicodeDecodeError:
            problem = "the value is not UTF-8 text"
            raise ConnectionConfigError(problem, message=f"{secret}: {problem}") from None
        return None if url is None else Source(url, secret)

    def engine(self, source: Source) -> Engine:
        """The engine for a connection (``ConnectionConfigError`` if its URL is unusable;
        for a Secret the error names the Secret, never its value)."""
        engine = self._engines.get(source)
        if engine is None:
            target = RedisTarget(source.url)
            try:
                client = target.client()
            except ConnectionConfigError as exc:
                raise (exc.about(source.secret) if source.secret else exc) from None
            engine = self._engines[source] = Engine(client, target=source.secret or target.display,
                                                    registry_key=self.registry_key)
        engine.trim_on_apply = self.trim_on_apply
        return engine

    def redis_work(self) -> tuple[int, int]:
        """(round trips, write commands) sent so far, over every connection."""
        return (sum(e.stats.round_trips for e in self._engines.values()),
                sum(e.stats.writes for e in self._engines.values()))

    # -- reconcile ------------------------------------------------------------------

    async def submit(self, key: Key) -> Computed | None:
        """Reconcile one resource together with whatever else is asked for meanwhile:
        a burst of handlers (a GitOps sync, an operator restart) becomes a few engine
        batches instead of one round trip series per object."""
        future: asyncio.Future[Computed | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(future)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        await asyncio.sleep(self.linger)
        async with self.lock:
            waiting, self._waiting = self._waiting, {}
            self._flusher = None  # requests arriving from now on start the next batch
            try:
                results = await self._run(list(waiting))
            except Exception as exc:  # noqa: BLE001 - handed to every waiter
                for futures in waiting.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(exc)
                return
        for key, futures in waiting.items():
            for future in futures:
                if not future.done():
                    future.set_result(results.get(key))

    async def run(self, keys: list[Key]) -> dict[Key, Computed]:
        """Reconcile these resources (and the Topics their groups need) in batches."""
        async with self.lock:
            return await self._run(keys)

    async def _run(self, keys: list[Key]) -> dict[Key, Computed]:
        computed: dict[Key, Computed] = {}
        batches: dict[Source, tuple[list[tuple[Key, Topic]], list[tuple[Key, ConsumerGroup, Topic]]]] = {}
        topic_models: dict[Key, Topic] = {}
        urls: dict[Key, Source] = {}

        async def topic_ready(key: Key) -> Topic | None:
            """The Topic's model and URL, or None with the reason recorded."""
            if key in topic_models:
                return topic_models[key]
            declared = self.objects.get(key)
            if declared is None:
                return None
            try:
                model = declared.model()
            except ValidationError as exc:
                computed[key] = Computed(Outcome(False, INVALID_SPEC, _validation_message(exc)))
                return None
            assert isinstance(model, Topic)
            try:
                url = await self.source_for(model)
            except ConnectionConfigError as exc:
                computed[key] = Computed(Outcome(False, INVALID_SPEC, str(exc)))
                return None
            except Exception as exc:  # noqa: BLE001 - reported in status, retried
                computed[key] = Computed(Outcome(False, "KubernetesError", f"cannot read the connection Secret: {exc}"))
                return None
            if url is None:
                ref = model.spec.connection.secretRef if model.spec.connection else None
                what = f'Secret "{ref.name}" with key "{ref.key}"' if ref else "connection"
                missing = f"{what} not found in namespace {model.namespace}"
                computed[key] = Computed(Outcome(False, SECRET_NOT_FOUND, missing))
                return None
            topic_models[key] = model
            urls[key] = url
            return model

        batched_topics: set[Key] = set()  # each Topic once per batch, however many of its groups come
        for key in dict.fromkeys(keys):
            declared = self.objects.get(key)
            if declared is None:
                continue
            if declared.kind == "Topic":
                model = await topic_ready(key)
                if model is not None and not declared.paused and key not in batched_topics:
                    batched_topics.add(key)
                    batches.setdefault(urls[key], ([], []))[0].append((key, model))
                continue
            try:
                group = declared.model()
            except ValidationError as exc:
                computed[key] = Computed(Outcome(False, INVALID_SPEC, _validation_message(exc)))
                continue
            assert isinstance(group, ConsumerGroup)
            topic_decl = self.topic_of(declared)
            if topic_decl is None:
                computed[key] = Computed(Outcome(
                    False, TOPIC_NOT_FOUND,
                    f'Topic "{group.spec.topicRef.name}" not found in namespace {group.namespace}'))
                continue
            topic_model = await topic_ready(topic_decl.key)
            if topic_model is None:
                topic_failed = computed.get(topic_decl.key)
                computed[key] = Computed(Outcome(
                    False, topic_failed.outcome.reason if topic_failed else TOPIC_NOT_FOUND,
                    f"topic/{topic_decl.key[2]}: {topic_failed.outcome.message if topic_failed else 'not ready'}"))
                continue
            if declared.paused:
                continue
            topics, groups = batches.setdefault(urls[topic_decl.key], ([], []))
            if not topic_decl.paused and topic_decl.key not in batched_topics:
                batched_topics.add(topic_decl.key)
                topics.append((topic_decl.key, topic_model))
            groups.append((key, group, topic_model))

        for source, (topics, groups) in batches.items():
            batch_keys = [k for k, _ in topics] + [k for k, _, _ in groups]
            # One connection's problem (a malformed URL, a bug on odd data) is the failure
            # of that connection's resources only, never of the whole pass.
            try:
                engine = self.engine(source)
            except ConnectionConfigError as exc:
                for key in batch_keys:
                    computed[key] = Computed(Outcome(False, INVALID_SPEC, str(exc)))
                continue
            trips, writes = engine.stats.round_trips, engine.stats.writes
            try:
                with metrics.BATCH_SECONDS.time():
                    batch = await asyncio.to_thread(self._batch, engine, topics, groups)
            except Exception as exc:  # noqa: BLE001 - logged with its traceback, reported per resource
                log.exception("reconciling %d resources on %s failed", len(topics) + len(groups), engine.target)
                metrics.ERRORS.labels("reconcile", type(exc).__name__).inc()
                failure = Outcome(False, "InternalError",
                                  f"reconcile failed: {type(exc).__name__}; see the operator log")
                batch = {key: Computed(failure) for key in batch_keys}
            if source.secret:
                batch = {key: _scrubbed(c, source.url) for key, c in batch.items()}
            computed.update(batch)
            metrics.REDIS_ROUND_TRIPS.inc(engine.stats.round_trips - trips)
            metrics.REDIS_WRITES.inc(engine.stats.writes - writes)
        for (kind, _, _), result in computed.items():
            outcome = result.outcome
            metrics.RECONCILES.labels(kind, "ready" if outcome.ready else outcome.reason).inc()
        return computed

    def _batch(self, engine: Engine, topics: list[tuple[Key, Topic]],
               groups: list[tuple[Key, ConsumerGroup, Topic]]) -> dict[Key, Computed]:
        """One engine pass (in a worker thread)."""
        # Status remembers the registry epoch and positions: a Redis that lost its data
        # is recognised from them, and lost groups come back from 0, never from "$".
        t_intents = [replace(topic_intent(model, self.cluster_id), memory=self._memory(key)) for key, model in topics]
        g_intents = [replace(group_intent(g, t, self.cluster_id), memory=self._memory(key)) for key, g, t in groups]
        plan = engine.plan(t_intents, g_intents)
        results = engine.apply(plan)
        out: dict[Key, Computed] = {}
        created_groups: dict[str, set[str]] = {}
        for g in plan.groups:
            if g.create_at is not None:
                created_groups.setdefault(g.intent.stream, set()).add(g.intent.group)
        for (key, _), tplan, result in zip(topics, plan.topics, results[: len(topics)]):
            out[key] = Computed(_topic_outcome(result, engine.target),
                                _topic_fields(tplan, result, created_groups.get(tplan.intent.stream, set())),
                                result, reset=tplan.lost,
                                drift=tplan.create_stream and tplan.state.topic_owner is not None)
        for (key, _, _), gplan, result in zip(groups, plan.groups, results[len(topics):]):
            declared = self.objects.get(key)  # may be forgotten meanwhile (deleted)
            fields = _group_fields(gplan, result) | _day2_fields(gplan, result, declared.status if declared else {})
            out[key] = Computed(_group_outcome(result), fields, result,
                                reset=gplan.lost if gplan.redis_lost and result.ok else None,
                                drift=gplan.create_at is not None and gplan.intent.group in gplan.state.group_owners)
        return out

    def _leaving_group(self, group: Declared, topic: Topic) -> GroupIntent | None:
        try:
            model = group.model()
        except ValidationError:
            return None
        assert isinstance(model, ConsumerGroup)
        return group_intent(model, topic, self.cluster_id)

    def groups_blocking_delete(self, topic: Key) -> list[str]:
        """ConsumerGroups of this Topic with deletionPolicy Delete that are not (yet) being
        deleted: deleting the Topic now would keep its stream for them."""
        return [g.key[2] for g in self.groups_of(topic)
                if (g.body.get("spec") or {}).get("deletionPolicy") == "Delete" and not _deleting(g)]

    def _memory(self, key: Key) -> Memory | None:
        declared = self.objects.get(key)
        return declared.memory() if declared is not None else None

    async def delete(self, declared: Declared) -> Result | None:
        """Honour deletionPolicy for an object being deleted. None: nothing to do."""
        async with self.lock:
            model = declared.model()
            if isinstance(model, Topic):
                source = await self.source_for(model)
                if source is None:
                    return None
                engine = self.engine(source)
                leaving = [self._leaving_group(g, model) for g in self.groups_of(declared.key) if _deleting(g)]
                results = await asyncio.to_thread(engine.delete, [topic_intent(model, self.cluster_id)],
                                                  [g for g in leaving if g is not None])
                return results[-1]
            stream = declared.status.get("streamName")
            topic_decl = self.topic_of(declared)
            topic_model = topic_decl.model() if topic_decl is not None else None
            if stream is None and topic_model is None:
                return None  # never provisioned
            source = await self.source_for(topic_model) if isinstance(topic_model, Topic) else Source(self.default_url)
            if source is None:
                return None
            if isinstance(topic_model, Topic):
                intent = group_intent(model, topic_model, self.cluster_id)
                if stream and intent.stream != stream:  # delete where it was made
                    intent = replace(intent, stream=stream)
            else:  # the Topic went first: the stream is known from status
                assert stream is not None  # no Topic and no stream returned above
                intent = GroupIntent(model.label, Owner(self.cluster_id, model.namespace, model.name),
                                     Owner(self.cluster_id, model.namespace, model.spec.topicRef.name),
                                     stream, model.group, model.spec.startId, model.spec.deletionPolicy)
            results = await asyncio.to_thread(self.engine(source).delete, [], [intent])
            return results[0]


def _deleting(group: Declared) -> bool:
    """A ConsumerGroup being deleted whose deletion destroys its group in Redis."""
    meta = group.body["metadata"]
    annotations = meta.get("annotations") or {}
    return (bool(meta.get("deletionTimestamp")) and (group.body.get("spec") or {}).get("deletionPolicy") == "Delete"
            and not group.paused and annotations.get(SKIP_CLEANUP_ANNOTATION) != "true")


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(describe_validation_error(e) for e in exc.errors())


def _scrubbed(computed: Computed, url: str) -> Computed:
    """A result of a Secret's connection without any part of the Secret's value: Redis'
    own texts ("Error connecting to <host>:<port>") would show its host to anyone who
    can read status or Events, including a tenant pointing secretRef at a Secret that is
    not theirs."""
    parts = secret_parts(url)
    if not parts:
        return computed

    def clean(text: str) -> str:
        for part in parts:
            text = text.replace(part, "***")
        return text

    outcome = replace(computed.outcome, message=clean(computed.outcome.message))
    result = computed.result
    if result is not None:
        failure = replace(result.failure, message=clean(result.failure.message)) if result.failure else None
        result = replace(result, details=[clean(d) for d in result.details], failure=failure)
    return replace(computed, outcome=outcome, result=result)


def _topic_outcome(result: Result, target: str) -> Outcome:
    if result.failure:
        return Outcome(False, result.failure.reason, result.failure.message)
    return Outcome(True, STREAM_READY, f'stream "{result.stream}" exists on {redact(target)}')


def _group_outcome(result: Result) -> Outcome:
    if result.failure:
        return Outcome(False, result.failure.reason, result.failure.message)
    return Outcome(True, GROUP_READY, f'group "{result.group}" exists on stream "{result.stream}"')


def _topic_fields(plan: TopicPlan, result: Result, created: set[str]) -> dict[str, Any]:
    """``created``: groups this batch created on the stream (not in the observed state yet)."""
    state = plan.state
    fields: dict[str, Any] = {"streamName": plan.intent.stream}
    if result.failure:
        return fields
    fields.update(
        length=max(state.length - result.trimmed, 0),
        lastGeneratedId=state.last_generated_id,
        entriesAdded=state.entries_added or 0,
        groups=len(set(state.groups) | created),
    )
    if result.epoch:
        fields["registryEpoch"] = result.epoch
    return fields


def _group_fields(plan: GroupPlan, result: Result) -> dict[str, Any]:
    fields: dict[str, Any] = {"streamName": plan.intent.stream, "groupName": plan.intent.group}
    if result.failure:
        return fields
    if result.epoch:
        fields["registryEpoch"] = result.epoch
    existing = plan.existing
    if existing is not None:
        fields.update(pending=existing.pending, consumers=existing.consumers,
                      lastDeliveredId=existing.last_delivered_id, lagExact=existing.lag_exact)
        if existing.lag is not None:
            fields["lag"] = existing.lag
        return fields
    fields.update(pending=0, consumers=0)
    if result.created_at:
        fields["lastDeliveredId"] = result.created_at
    if plan.create_at == "$" or plan.state.length == 0:
        fields.update(lag=0, lagExact=True)
    return fields


def _day2_fields(plan: GroupPlan, result: Result, old: dict[str, Any]) -> dict[str, Any]:
    """status.lastReset and status.consumerCleanup: bounded, and the same from one pass to
    the next unless something happened, so an idle resync writes nothing."""
    fields: dict[str, Any] = {}
    if result.failure:
        return fields
    if result.reset is not None and result.reset.token:
        r = result.reset
        fields["lastReset"] = {"token": r.token, "to": r.to, "id": r.id, **({"at": r.at} if r.at else {})}
    if plan.intent.cleanup_idle_ms is None:
        if old.get("consumerCleanup") is not None:
            fields["consumerCleanup"] = None  # cleanup switched off: a merge patch null drops it
        return fields
    previous = old.get("consumerCleanup") or {}
    now_ms = plan.state.server_time_ms or int(datetime.now(UTC).timestamp() * 1000)
    cleanup: dict[str, Any] = {
        "removed": int(previous.get("removed") or 0) + len(result.consumers_removed),
        "retainedCount": len(result.consumers_kept),
        "retained": [{"name": _short(c.name), "pending": c.pending, "idleSince": _idle_since(c, now_ms)}
                     for c in result.consumers_kept[:STATUS_LIST_MAX]],
    }
    if result.consumers_removed:
        if plan.existing is not None:  # the count observed before the removal
            fields["consumers"] = max(plan.existing.consumers - len(result.consumers_removed), 0)
        cleanup["lastRemoved"] = [_short(n) for n in result.consumers_removed[:STATUS_LIST_MAX]]
        cleanup["lastRemovedTime"] = rfc3339()
    else:
        cleanup.update({k: previous[k] for k in ("lastRemoved", "lastRemovedTime") if previous.get(k)})
    fields["consumerCleanup"] = cleanup
    return fields


def _short(name: str) -> str:
    return name if len(name) <= CONSUMER_NAME_MAX else name[:CONSUMER_NAME_MAX] + "…"


def _idle_since(consumer: ConsumerState, now_ms: int) -> str:
    """To the minute, so that it reads the same on every pass while the consumer stays idle."""
    return rfc3339(from_ms(now_ms - consumer_idle_ms(consumer)), to_minute=True)
