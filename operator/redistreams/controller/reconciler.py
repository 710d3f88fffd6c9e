"""From Kubernetes objects to engine batches, and deletion.

Handlers go through ``Reconciler.run`` and the periodic pass through ``Reconciler.sweep``:
resources are grouped by Redis connection and each group is one engine batch (a bounded
number of pipelined round trips), run in a worker thread so the event loop stays free.
A sweep's batch reads each stream once and that read serves everything the pass does:
the plan (drift, data loss, consumer cleanup), the recovery checkpoints, and what it
hands back (``Observed``) for the metrics and retention. What a result becomes in status
is status.py's; the objects themselves are objects.py's.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace

from pydantic import ValidationError

from .. import DEFAULT_REGISTRY_KEY, metrics
from ..connection import ConnectionConfigError, RedisTarget
from ..engine import Engine, Memory, Result, StreamState, TopicPlan
from ..engine.intents import GroupIntent, Owner, group_intent, topic_intent
from ..manifests import describe_validation_error
from ..model import ConsumerGroup, Topic
from ..tenancy import Tenancy
from ..tls import TLSMaterial, with_options
from .conditions import INVALID_SPEC, OUTSIDE_TENANT_PREFIX, SECRET_NOT_FOUND, TOPIC_NOT_FOUND, Outcome
from .kube import KubeAPI
from .objects import SKIP_CLEANUP_ANNOTATION, Declared, Key, ObjectCache
from .secrets import SecretCache
from .status import Computed, day2_fields, group_fields, group_outcome, scrubbed, topic_fields, topic_outcome

log = logging.getLogger("redistreams.operator")


@dataclass(frozen=True)
class Source:
    """Where a Topic's Redis is: a URL, and the Secret it came from. A Secret's value is
    never shown: messages name the Secret instead (a tenant may point secretRef at any
    Secret of its namespace, including ones it cannot read)."""

    url: str
    secret: str | None = None
    tls: TLSMaterial | None = None  # the Secret's ca.crt, tls.crt and tls.key, when it has any


@dataclass
class Observed:
    """One connection's read in a periodic pass, for what the pass does besides planning
    (observation.py: metrics, retention)."""

    engine: Engine
    states: dict[str, StreamState]  # stream -> as read
    topics: dict[Key, str]  # every Topic read: its stream (planned or only watched)
    plans: dict[Key, TopicPlan]  # the planned Topics' plans (retention decisions)
    consumers_skipped: int = 0  # groups left without per-consumer detail


@dataclass
class _Batch:
    """One connection's share of a run."""

    topics: list[tuple[Key, Topic]]
    groups: list[tuple[Key, ConsumerGroup, Topic]]
    watched: list[tuple[Key, Topic]]  # only read, for the pass's figures (paused, or the queue's)


class Reconciler(ObjectCache):
    """The object cache (objects.py), the engines of each connection, and the reconcile
    and delete passes over them."""

    def __init__(self, *, cluster_id: str, default_url: str, kube: KubeAPI | None = None,
                 registry_key: str = DEFAULT_REGISTRY_KEY, tenancy: Tenancy | None = None,
                 secrets: SecretCache | None = None) -> None:
        super().__init__()
        self.secrets = secrets  # connection Secrets kept by watches; without it, read on every pass
        self.cluster_id = cluster_id
        self.tenancy = tenancy or Tenancy()  # which streams each namespace may declare
        self.default_url = default_url
        self.kube = kube
        self.registry_key = registry_key
        self._engines: dict[Source, Engine] = {}
        # Sweeps done, and the sweep count at each engine's last use: a connection no Topic
        # used for a whole interval and a sweep (its Secret now names another URL, its Topics
        # are gone) is closed, not kept open for the operator's lifetime.
        self._sweeps = 0
        self._last_used: dict[Source, int] = {}
        self._retired = (0, 0)  # round trips and writes of the closed engines
        self.lock = asyncio.Lock()  # one engine pass at a time keeps Redis traffic ordered
        self._waiting: dict[Key, list[asyncio.Future[Computed | None]]] = {}
        self._flusher: asyncio.Task[None] | None = None
        self.linger = 0.05
        self.trim_on_apply = True  # False when the observation loop applies retention

    def tenant_refusal(self, namespace: str, stream: str) -> str | None:
        """Why the tenancy setting does not let ``namespace`` declare ``stream`` (None: it
        does). Checked before anything is read from or written to Redis for it."""
        return self.tenancy.refusal(namespace, stream)

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
        if self.secrets is not None:
            data = await self.secrets.data(topic.namespace, ref.name)
        else:
            data = await self.kube.secret_data(topic.namespace, ref.name)
        if data is None or ref.key not in data:
            return None
        try:
            url = data[ref.key].decode()
        except UnicodeDecodeError:
            problem = "the value is not UTF-8 text"
            raise ConnectionConfigError(problem, message=f"{secret}: {problem}") from None
        tls = TLSMaterial(data.get("ca.crt"), data.get("tls.crt"), data.get("tls.key"))
        return Source(url, secret, tls or None)

    def engine(self, source: Source) -> Engine:
        """The engine for a connection (``ConnectionConfigError`` if its URL is unusable;
        for a Secret the error names the Secret, never its value)."""
        engine = self._engines.get(source)
        if engine is None:
            target = RedisTarget(_with_tls(source))
            try:
                client = target.client()
            except ConnectionConfigError as exc:
                raise (exc.about(source.secret) if source.secret else exc) from None
            engine = self._engines[source] = Engine(client, target=source.secret or target.display,
                                                    registry_key=self.registry_key)
        engine.trim_on_apply = self.trim_on_apply
        self._last_used[source] = self._sweeps
        return engine

    def _close_unused(self) -> None:
        """Closes the engines unused since the sweep before this one (called under the lock,
        at the end of a sweep: no pass is using them)."""
        for source in [s for s, used in self._last_used.items() if used < self._sweeps]:
            del self._last_used[source]
            engine = self._engines.pop(source)
            trips, writes = self._retired
            self._retired = (trips + engine.stats.round_trips, writes + engine.stats.writes)
            try:
                engine.close()
            except Exception:  # noqa: BLE001 - a connection that fails to close is gone anyway
                log.debug("closing the connection to %s failed", engine.target, exc_info=True)
        self._sweeps += 1

    def redis_work(self) -> tuple[int, int]:
        """(round trips, write commands) sent so far, over every connection."""
        trips, writes = self._retired
        return (trips + sum(e.stats.round_trips for e in self._engines.values()),
                writes + sum(e.stats.writes for e in self._engines.values()))

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
                results, _ = await self._run(list(waiting))
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
            return (await self._run(keys))[0]

    async def sweep(self, keys: list[Key], watch: list[Key] | None
                    ) -> tuple[dict[Key, Computed], list[Observed]]:
        """The periodic pass: reconcile ``keys`` from one read per connection that also
        covers the ``watch`` Topics' streams and every group's pending entries and
        consumers; recovery checkpoints move from the same read. Returns the results and,
        per connection read, what was observed. ``watch`` None (observation off): a
        plain reconcile, nothing observed."""
        async with self.lock:
            swept = await self._run(keys, watch)
            self._close_unused()
            return swept

    async def _run(self, keys: list[Key], watch: list[Key] | None = None
                   ) -> tuple[dict[Key, Computed], list[Observed]]:
        computed: dict[Key, Computed] = {}
        batches: dict[Source, _Batch] = {}
        observed: list[Observed] = []
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
            refusal = self.tenant_refusal(model.namespace, model.stream)
            if refusal is not None:  # before its Secret is read: nothing is done for it
                computed[key] = Computed(Outcome(False, OUTSIDE_TENANT_PREFIX, refusal))
                return None
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
                    batches.setdefault(urls[key], _Batch([], [], [])).topics.append((key, model))
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
            batch_of = batches.setdefault(urls[topic_decl.key], _Batch([], [], []))
            # A Topic being deleted is not claimed again for its groups: its deletion
            # released its record, and the periodic pass plans its groups every interval.
            if not topic_decl.paused and topic_decl.key not in batched_topics and \
                    not topic_decl.body["metadata"].get("deletionTimestamp"):
                batched_topics.add(topic_decl.key)
                batch_of.topics.append((topic_decl.key, topic_model))
            batch_of.groups.append((key, group, topic_model))
        for key in dict.fromkeys(watch or ()):
            if key in batched_topics or key not in self.objects:
                continue
            model = await topic_ready(key)  # refused, invalid or without a Secret: not read
            computed.pop(key, None)  # only watched: its status is not this pass's
            if model is not None:
                batches.setdefault(urls[key], _Batch([], [], [])).watched.append((key, model))

        for source, batch_of in batches.items():
            topics, groups = batch_of.topics, batch_of.groups
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
                    batch = await asyncio.to_thread(self._batch, engine, topics, groups,
                                                    None if watch is None else batch_of.watched, observed)
            except Exception as exc:  # noqa: BLE001 - logged with its traceback, reported per resource
                log.exception("reconciling %d resources on %s failed", len(topics) + len(groups), engine.target)
                metrics.ERRORS.labels("reconcile", type(exc).__name__).inc()
                failure = Outcome(False, "InternalError",
                                  f"reconcile failed: {type(exc).__name__}; see the operator log")
                batch = {key: Computed(failure) for key in batch_keys}
            if source.secret:
                batch = {key: scrubbed(c, source.url) for key, c in batch.items()}
            computed.update(batch)
            metrics.REDIS_ROUND_TRIPS.inc(engine.stats.round_trips - trips)
            metrics.REDIS_WRITES.inc(engine.stats.writes - writes)
        for (kind, _, _), result in computed.items():
            outcome = result.outcome
            metrics.RECONCILES.labels(kind, "ready" if outcome.ready else outcome.reason).inc()
        return computed, observed

    def _batch(self, engine: Engine, topics: list[tuple[Key, Topic]], groups: list[tuple[Key, ConsumerGroup, Topic]],
               watched: list[tuple[Key, Topic]] | None = None, observed: list[Observed] | None = None
               ) -> dict[Key, Computed]:
        """One engine pass (in a worker thread). With ``watched`` (a sweep), the read also
        covers those Topics and the figures, the checkpoints move, and what was read is
        added to ``observed``."""
        # Status remembers the registry epoch and positions: a Redis that lost its data
        # is recognised from them, and lost groups come back from 0, never from "$".
        t_intents = [replace(topic_intent(model, self.cluster_id), memory=self._memory(key)) for key, model in topics]
        g_intents = [replace(group_intent(g, t, self.cluster_id), memory=self._memory(key)) for key, g, t in groups]
        if watched is None or observed is None:
            plan = engine.plan(t_intents, g_intents)
            results = engine.apply(plan)
        else:
            read = {key: t.stream for (key, _), t in zip(topics, t_intents)}
            read |= {key: topic_intent(model, self.cluster_id).stream for key, model in watched}
            states = engine.observe_intents(t_intents, g_intents, figures=True, also=read.values())
            skipped = engine.consumers_skipped
            # Before apply: a group this pass resets must not get its old position recorded.
            engine.checkpoint(states, [(g.stream, g.group, g.owner) for g in g_intents])
            plan = engine.plan(t_intents, g_intents, states)
            results = engine.apply(plan)
            observed.append(Observed(engine, states, read, {key: p for (key, _), p in zip(topics, plan.topics)},
                                     skipped))
        out: dict[Key, Computed] = {}
        created_groups: dict[str, set[str]] = {}
        for g in plan.groups:
            if g.create_at is not None:
                created_groups.setdefault(g.intent.stream, set()).add(g.intent.group)
        for (key, _), tplan, result in zip(topics, plan.topics, results[: len(topics)]):
            out[key] = Computed(topic_outcome(result, engine.target),
                                topic_fields(tplan, result, created_groups.get(tplan.intent.stream, set())),
                                result, reset=tplan.lost,
                                drift=tplan.create_stream and tplan.state.topic_owner is not None)
        for (key, _, _), gplan, result in zip(groups, plan.groups, results[len(topics):]):
            declared = self.objects.get(key)  # may be forgotten meanwhile (deleted)
            fields = group_fields(gplan, result) | day2_fields(gplan, result, declared.status if declared else {})
            out[key] = Computed(group_outcome(result), fields, result,
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
                if self.tenant_refusal(model.namespace, model.stream) is not None:
                    return None  # never provisioned: its stream is not the tenant's to delete
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
            where = topic_model.stream if isinstance(topic_model, Topic) else stream
            if where is not None and self.tenant_refusal(model.namespace, where) is not None:
                return None  # never provisioned: the group is not the tenant's to delete
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


_TLS_SCHEMES = ("rediss://", "rediss+sentinel://")


def _with_tls(source: Source) -> str:
    """The URL with the Secret's certificates as files (``ConnectionConfigError`` naming
    the Secret, never quoting it, when they cannot be used)."""
    if source.tls is None:
        return source.url
    problem = source.tls.problem()
    if problem is None and not source.url.startswith(_TLS_SCHEMES):
        problem = "ca.crt, tls.crt and tls.key are for TLS: the URL must start with rediss:// (or rediss+sentinel://)"
    if problem:
        raise ConnectionConfigError(problem, message=f"{source.secret}: {problem}")
    return with_options(source.url, source.tls.url_options())
