"""Settings and the options the commands share.

The global options (--redis-url, -n, --cluster-id, --registry-key, --redis-timeout) are
accepted before or after the subcommand; the subcommand's value wins. Imports stay light
here: ``--help`` loads this module, so models, Redis and the engine are imported only when a command runs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

import click

from .. import DEFAULT_CLUSTER_ID, DEFAULT_REGISTRY_KEY
from ..printable import printable

if TYPE_CHECKING:
    from ..engine import Engine, Failure, GroupIntent, Plan, TopicIntent
    from ..manifests import ManifestSet, Source
    from ..probe import Probe

# kubectl's: 0 done (or in sync, ready), 1 some resources failed (or differences, timed
# out, missing), 2 invalid input or an error before anything was done.
EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2

REGISTRY_KEY, CLUSTER_ID = DEFAULT_REGISTRY_KEY, DEFAULT_CLUSTER_ID
REDIS_TIMEOUT = 10.0  # seconds
# Where a subcommand's --registry-key and --redis-timeout are kept (click's meta is shared
# by the whole command line); the root group's own are parameters.
_AFTER = {"registry_key": "redistreams.registry_key", "redis_timeout": "redistreams.redis_timeout"}


class Settings:
    def __init__(self, redis_url: str | None, namespace: str | None, cluster_id: str, registry_key: str,
                 timeout: float):
        from ..urltext import default_url  # not connection: that imports redis-py

        self.redis_url = redis_url or default_url()
        self._namespace = namespace
        self.cluster_id = cluster_id
        self.registry_key = registry_key
        self.timeout = timeout
        self._engine: Engine | None = None

    @property
    def namespace(self) -> str:
        from ..model import DEFAULT_NAMESPACE  # pub and sub never ask: they load no models

        return self._namespace or DEFAULT_NAMESPACE

    def engine(self) -> Engine:
        """The engine of this run (one, however often asked)."""
        from ..connection import ConnectionConfigError, RedisTarget
        from ..engine import Engine
        from .output import fail  # output needs the exit codes above: imported late

        if self._engine is None:
            # --redis-timeout bounds connecting too (redis-py's default would be 5 s apart).
            target = RedisTarget(self.redis_url, socket_timeout=self.timeout, connect_timeout=self.timeout)
            try:
                client = target.client()
            except ConnectionConfigError as exc:
                fail(str(exc))
            self._engine = Engine(client, target=target.display, registry_key=self.registry_key)
        return self._engine

    def reached_engine(self) -> Engine:
        """The engine, once Redis answered: unreachable, refusing the password or TLS, or
        silent past --redis-timeout is one error for the run (exit 2, nothing was done),
        after one timeout, not redis-py's retries of it for every resource."""
        engine = self.engine()
        failure = engine.reach()
        if failure is not None:
            self.fail_unreachable(failure)
        return engine

    def fail_unreachable(self, failure: Failure, resources: int = 0) -> NoReturn:
        from ..engine.errors import TIMEOUT
        from .output import fail

        message = failure.message.rstrip(".")
        if failure.reason == TIMEOUT:
            message += f" (waited {self.timeout:g}s: --redis-timeout)"
        if resources:
            message += f"; the same for all {resources} resources"
        fail(f"{message}; nothing was done")

    def probe(self) -> Probe | None:
        """A redis-py-free probe of what exists (``wait``), or None for a URL only the
        engine reads (it checks the URL and explains what is wrong with it)."""
        from ..probe import Probe

        return Probe.for_url(self.redis_url, socket_timeout=self.timeout)

    @property
    def display_url(self) -> str:
        from ..urltext import redact

        return redact(self.redis_url)

    def manifests(self, paths: tuple[str, ...]) -> ManifestSet:
        """The validated manifests; every error printed and exit 2 when there is one, or
        when they hold no Topic or ConsumerGroup at all (kubectl's "no objects passed"):
        a typo in apiVersion or a wrong folder must not pass as a run that did nothing."""
        from ..manifests import load

        manifests = load(list(paths), default_namespace=self.namespace)
        for notice in manifests.notices:
            click.echo(f"notice: {printable(notice)}", err=True)
        if not manifests.resources and not manifests.errors:
            command = click.get_current_context().info_name
            click.echo(f"error: no objects passed to {command}", err=True)
            sys.exit(EXIT_INVALID)
        if manifests.unresolved and not manifests.errors:
            self._resolve_topics(manifests)
        if manifests.errors:
            for error in manifests.errors:
                click.echo(f"error: {printable(error)}", err=True)
            click.echo(f"{len(manifests.errors)} error(s) in the input; nothing was changed", err=True)
            sys.exit(EXIT_INVALID)
        return manifests


    def _resolve_topics(self, manifests: ManifestSet) -> None:
        """Groups whose Topic is not among the manifests (a consumer team's own file):
        their Topic is the one the ownership registry records, under this cluster id, as
        owning a stream that exists (a group never creates its Topic's stream). ``delete``
        and ``status`` also find a group by its own record (its Topic may be deleted
        already); ``status`` skips a group it cannot place, with a notice; ``wait`` needs
        the Topic's file."""
        from ..engine import ObservationError, Owner
        from ..model import ConsumerGroup

        command = click.get_current_context().info_name
        where = ""
        if command != "wait":
            wanted: dict[int, tuple[Owner, Owner]] = {}
            for index, loaded in enumerate(manifests.unresolved):
                group = loaded.resource
                assert isinstance(group, ConsumerGroup)
                wanted[index] = (Owner(self.cluster_id, group.namespace, group.spec.topicRef.name),
                                 Owner(self.cluster_id, group.namespace, group.name))
            where = f" nor in Redis at {self.display_url} (cluster id \"{self.cluster_id}\")"
            try:
                engine = self.reached_engine() if command != "status" else self.engine()
                claims = engine.claims({t for t, _ in wanted.values()}, {g for _, g in wanted.values()})
                found = {}
                for index, (topic, group_owner) in wanted.items():
                    streams = claims.topics.get(topic, [])
                    if not streams and command in ("delete", "status"):
                        streams = [s for s, _ in claims.groups.get(group_owner, [])]
                    if streams:
                        found[index] = streams[0]
                states = engine.observe(set(found.values()), owners=False) if found else {}
            except ObservationError as exc:
                found, states = {}, {}
                where = f" (Redis could not be searched: {exc.failure.message})"
            for index, loaded in list(enumerate(manifests.unresolved))[::-1]:
                stream = found.get(index)
                if stream is None:
                    continue
                if states[stream].exists or command in ("delete", "status"):
                    manifests.resolve_topic(loaded, stream)
                else:
                    manifests.errors.append(manifests.unresolved_error(loaded, "") + (
                        f' (its Topic owns stream "{stream}", which does not exist: apply the Topic to '
                        "create it; a group never creates its Topic's stream)"))
                    manifests.unresolved.remove(loaded)
        for loaded in manifests.unresolved:
            if command == "status":
                click.echo(f"notice: {printable(manifests.unresolved_error(loaded, where))}; skipped", err=True)
            else:
                manifests.errors.append(manifests.unresolved_error(loaded, where))
        if command == "status":  # shown as far as they can be: the others
            skipped = {id(loaded) for loaded in manifests.unresolved}
            manifests.resources = [r for r in manifests.resources if id(r) not in skipped]


def settings(ctx: click.Context, redis_url: str | None, namespace: str | None, cluster_id: str | None) -> Settings:
    """The subcommand's global options, else the ones given before it, else defaults."""
    parent: dict[str, Any] = ctx.find_root().params
    after = [ctx.meta.get(_AFTER[name]) for name in ("registry_key", "redis_timeout")]
    return Settings(
        redis_url or parent.get("redis_url"),
        namespace or parent.get("namespace"),
        cluster_id or parent.get("cluster_id") or CLUSTER_ID,
        after[0] or parent.get("registry_key") or REGISTRY_KEY,
        next((t for t in (after[1], parent.get("redis_timeout")) if t is not None), REDIS_TIMEOUT),
    )


def _kept(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is not None and param.name:
        ctx.meta[_AFTER[param.name]] = seconds_option(value, "--redis-timeout") if param.name == "redis_timeout" \
            else value
    return value


def seconds_option(value: str | float, option: str | None = None) -> float:
    """Seconds from a duration (10s, 1m, 1h30m) or a bare number of seconds (0.5), above 0;
    a usage error (exit 2) naming ``option`` otherwise (read in a command's body, click
    cannot tell which option it was)."""
    from ..units import parse_duration

    hint = f"'{option}'" if option else None
    try:
        seconds = float(value)
    except ValueError:
        try:
            return float(parse_duration(str(value)))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=hint) from exc
    if not 0 < seconds < float("inf"):
        raise click.BadParameter(f'invalid duration "{value}" (use e.g. 10s, 1m, or seconds above 0)',
                                 param_hint=hint)
    return seconds


duration_option = seconds_option  # every duration option takes both forms


def connection_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The global options, also accepted after the subcommand (the root group declares
    --registry-key and --redis-timeout itself)."""
    declared = {p.name for p in getattr(func, "__click_params__", ())}
    if "redis_timeout" not in declared:
        func = click.option("--redis-timeout", metavar="DURATION", expose_value=False, callback=_kept,
                            help=f"How long to wait for Redis (default: {REDIS_TIMEOUT:g}s).")(func)
    if "registry_key" not in declared:
        func = click.option("--registry-key", expose_value=False, callback=_kept,
                            help=f"Hash holding ownership records (default: {REGISTRY_KEY}).")(func)
    func = click.option("--cluster-id", help="Owner identity of this user or cluster (default: default).")(func)
    func = click.option(
        "-n", "--namespace", help="Namespace for manifests that do not name one (default: default)."
    )(func)
    func = click.option(
        "--redis-url", metavar="URL", help="Redis to use (default: $REDIS_URL, else redis://localhost:6379/0)."
    )(func)
    return func


def files_option(required: bool) -> Callable[..., Any]:
    return click.option(
        "-f",
        "--filename",
        "paths",
        multiple=True,
        required=required,
        metavar="PATH",
        help="Manifest file, folder (recursive *.yaml/*.yml) or - for stdin. Repeatable.",
    )


def output_option(*choices: str) -> Callable[..., Any]:
    return click.option("-o", "--output", type=click.Choice(choices), default=choices[0], show_default=True)


def manifest_command(func: Callable[..., Any]) -> Callable[..., Any]:
    """The options of every command that reads manifests and changes or plans."""
    from .selector import selector_option

    for decorator in (click.pass_context, output_option("text", "name", "json", "yaml"), selector_option,
                      connection_options, files_option(True)):
        func = decorator(func)
    return func


def planned(engine: Engine, topics: list[TopicIntent], groups: list[GroupIntent],
            sources: Mapping[tuple[str, str, str], Source] | None = None) -> Plan:
    """The plan, with each new claim of a resource that owns another stream or group (its
    streamName, groupName or topicRef changed) refused, as the CRD refuses the change;
    the refusal names the manifest's file and document when ``sources`` knows them."""
    from ..engine import Failure, GroupPlan, ObservationError, TopicPlan
    from ..engine.claims import IMMUTABLE, new_claims, refuse_moves

    plan = engine.plan(topics, groups)
    topic_owners, group_owners = new_claims(plan)
    if not (topic_owners or group_owners):
        return plan
    try:
        refuse_moves(plan, engine.claims(topic_owners, group_owners))
    except ObservationError as exc:  # unchecked, a claim could orphan a record: none is made
        for item in [*plan.topics, *plan.groups]:
            if isinstance(item, (TopicPlan, GroupPlan)) and item.record_is_new and item.failure is None:
                item.failure = exc.failure
    items: list[TopicPlan | GroupPlan] = [*plan.topics, *plan.groups]
    for item in (i for i in items if i.failure is not None and i.failure.reason == IMMUTABLE):
        kind = "Topic" if isinstance(item, TopicPlan) else "ConsumerGroup"
        source = (sources or {}).get((kind, item.intent.owner.namespace, item.intent.owner.name))
        if source is not None and item.failure is not None:
            item.failure = Failure(IMMUTABLE, f"{source}: {item.failure.message}")
    return plan


def fail_if_unreachable(ctx: click.Context, failures: list[Failure | None], *, writes: bool = True) -> None:
    """One error for the run (exit 2) when every resource failed for the same reason of
    connection or permission (a user refused its first command, credentials or TLS
    refused): 10,000 resources are not 10,000 lines saying it. After writes, only reasons
    that mean nothing ran: a connection lost mid-way may have applied some, and a
    permission refused for the writes is named per resource (``reached_engine`` already
    failed a user refused its first command)."""
    from ..engine.errors import AUTH_FAILED, PERMISSION_DENIED, TLS_FAILED, is_connection_problem

    if not failures or any(f is None for f in failures):
        return
    first = failures[0]
    assert first is not None
    nothing_ran = first.reason in (AUTH_FAILED, TLS_FAILED) or (not writes and first.reason == PERMISSION_DENIED)
    if (nothing_ran or (not writes and is_connection_problem(first))) and \
            all(f is not None and f.reason == first.reason for f in failures):
        settings(ctx, None, None, None).fail_unreachable(first, len(failures) if len(failures) > 1 else 0)
