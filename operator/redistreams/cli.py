"""The ``redistreams`` command: apply the same manifests as the operator, straight to Redis.

Exit codes follow kubectl: apply/delete 0 done, 1 some resources failed, 2 invalid input
(nothing written); plan 0 in sync, 1 differences, 2 invalid input or error; wait 0 ready,
1 timed out; status 1 when a requested stream or group is missing.
"""

from __future__ import annotations

import json
import re
import sys
import time
from contextlib import nullcontext
from typing import Any, Callable, NoReturn

import click
import yaml
from rich.console import Console
from rich.console import Group as RichGroup
from rich.live import Live
from rich.table import Table

from . import __version__
from .connection import ConnectionConfigError, RedisTarget, default_url, redact
from .engine import Engine, ObservationError, Result, StreamState, intents_from
from .engine.plan import GroupPlan, Plan, TopicPlan, plan_details
from .manifests import ManifestSet, load
from .model import API, DEFAULT_NAMESPACE, format_duration, parse_duration
from .printable import printable, printable_tree, wire

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def _stderr() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def _stdout() -> Console:
    # A pipe gets a wide console so tables are not wrapped mid-row.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def fail(message: str, code: int = EXIT_INVALID) -> NoReturn:
    click.echo(f"error: {printable(message)}", err=True)
    sys.exit(code)


class Settings:
    def __init__(self, redis_url: str | None, namespace: str, cluster_id: str, registry_key: str, timeout: float):
        self.redis_url = redis_url or default_url()
        self.namespace = namespace
        self.cluster_id = cluster_id
        self.registry_key = registry_key
        self.timeout = timeout

    def engine(self) -> Engine:
        target = RedisTarget(self.redis_url, socket_timeout=self.timeout)
        try:
            client = target.client()
        except ConnectionConfigError as exc:
            fail(str(exc))
        return Engine(client, target=target.display, registry_key=self.registry_key)

    @property
    def display_url(self) -> str:
        return RedisTarget(self.redis_url).display


def _settings(
    ctx: click.Context, redis_url: str | None, namespace: str | None, cluster_id: str | None
) -> Settings:
    parent: dict[str, Any] = ctx.find_root().params
    return Settings(
        redis_url or parent.get("redis_url"),
        namespace or parent.get("namespace") or DEFAULT_NAMESPACE,
        cluster_id or parent.get("cluster_id") or "default",
        parent.get("registry_key") or "redistreams:owners",
        parent.get("redis_timeout") or 10.0,
    )


def connection_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The global options, also accepted after the subcommand."""
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


def _load(paths: tuple[str, ...], settings: Settings) -> ManifestSet:
    manifests = load(list(paths), default_namespace=settings.namespace)
    for notice in manifests.notices:
        click.echo(f"notice: {printable(notice)}", err=True)
    if manifests.errors:
        for error in manifests.errors:
            click.echo(f"error: {printable(error)}", err=True)
        click.echo(f"{len(manifests.errors)} error(s) in the input; nothing was changed", err=True)
        sys.exit(EXIT_INVALID)
    return manifests


def _intents(manifests: ManifestSet, settings: Settings) -> tuple[list[Any], list[Any]]:
    return intents_from(
        manifests.topics, [(g, manifests.topic_for(g)) for g in manifests.groups], settings.cluster_id
    )


def _declared(ctx: click.Context, paths: tuple[str, ...], redis_url: str | None, namespace: str | None,
              cluster_id: str | None) -> tuple[Engine, list[Any], list[Any]]:
    """Settings, validated manifests (exit 2 on bad input) and an engine, for -f commands."""
    settings = _settings(ctx, redis_url, namespace, cluster_id)
    topics, groups = _intents(_load(paths, settings), settings)
    return settings.engine(), topics, groups


def manifest_command(func: Callable[..., Any]) -> Callable[..., Any]:
    """The options every command that reads manifests and changes or plans takes."""
    for decorator in (click.pass_context, output_option("text", "json"), connection_options, files_option(True)):
        func = decorator(func)
    return func


def _progress(message: str) -> Any:
    """A spinner on an interactive terminal, nothing otherwise."""
    console = _stderr()
    return console.status(message) if console.is_terminal else nullcontext()


def _print_results(results: list[Result], output: str) -> None:
    if output == "json":
        payload = printable_tree({"results": [r.as_dict() for r in results]})
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False))
        return
    for result in results:
        if result.failure:
            click.echo(printable(f"error: {result.label}: {result.failure.message}"), err=True)
            continue
        line = f"{result.label} {result.outcome}"
        if result.details:
            line += ": " + "; ".join(result.details)
        click.echo(printable(line))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="redistreams")
@connection_options
@click.option("--registry-key", default="redistreams:owners", show_default=True, help="Hash holding ownership records.")
@click.option("--redis-timeout", type=float, default=10.0, show_default=True, help="Seconds to wait for Redis.")
def cli(**_: Any) -> None:
    """Declarative Redis Streams topics and consumer groups.

    Applies Topic and ConsumerGroup manifests (redistreams.dev/v1alpha1) straight to Redis:
    streams and groups exist before any publisher runs.
    """


@cli.command()
@manifest_command
def apply(ctx: click.Context, paths: tuple[str, ...], redis_url: str | None, namespace: str | None,
          cluster_id: str | None, output: str) -> None:
    """Create streams and groups, adopt existing ones, enforce retention."""
    engine, topics, groups = _declared(ctx, paths, redis_url, namespace, cluster_id)
    with _progress(f"applying {len(topics)} topics and {len(groups)} groups to {engine.target}"):
        results = engine.reconcile(topics, groups)
    _print_results(results, output)
    sys.exit(EXIT_FAILED if any(not r.ok for r in results) else EXIT_OK)


def _plan_lines(plan: Plan) -> list[tuple[str, str, str]]:
    """(symbol, resource, text) per resource."""
    rows = []
    symbols = {"create": "+", "configure": "~", "unchanged": " ", "fail": "!"}
    item: TopicPlan | GroupPlan
    for item in [*plan.topics, *plan.groups]:
        notes = list(item.notes)
        if isinstance(item, TopicPlan):
            if item.failure:
                text = item.failure.message
            elif item.create_stream:
                text = f'create stream "{item.intent.stream}"'
            elif item.changes:
                text = ""  # the notes say what changes (ownership, trim)
            else:
                text = "in sync"
        else:
            if item.failure:
                text = item.failure.message
            elif item.create_at is not None:
                where = "the end of the stream" if item.intent.start_id == "$" else item.create_at
                text = f'create group "{item.intent.group}" on "{item.intent.stream}" at {where}'
            elif item.changes:
                text = ""
            else:
                text = "in sync"
            if item.start_id_note:
                notes.append(item.start_id_note)
        if item.record is not None and not item.failure:
            notes.append("record ownership" if item.record_is_new else "update the ownership record")
        text = "; ".join(t for t in [text, *notes] if t)
        rows.append((symbols[item.verb], item.intent.label, text))
    return rows


@cli.command()
@manifest_command
def plan(ctx: click.Context, paths: tuple[str, ...], redis_url: str | None, namespace: str | None,
         cluster_id: str | None, output: str) -> None:
    """Show what apply would change. Exit 0 in sync, 1 differences, 2 error."""
    engine, topics, groups = _declared(ctx, paths, redis_url, namespace, cluster_id)
    the_plan = engine.plan(topics, groups)
    rows = _plan_lines(the_plan)
    if output == "json":
        items = [*the_plan.topics, *the_plan.groups]
        payload = [
            {
                "resource": label,
                "action": item.verb,
                "summary": text,
                **({"reason": item.failure.reason} if item.failure else {}),
                **plan_details(item),
            }
            for (symbol, label, text), item in zip(rows, items)
        ]
        click.echo(json.dumps(printable_tree({"inSync": not the_plan.changes, "plan": payload}), indent=2,
                              ensure_ascii=False))
    else:
        for symbol, label, text in rows:
            click.echo(printable(f"{symbol} {label}: {text}"))
        changed = sum(1 for p in [*the_plan.topics, *the_plan.groups] if p.changes)
        failed = sum(1 for p in [*the_plan.topics, *the_plan.groups] if p.failure)
        summary = f"{changed} to change, {len(rows) - changed - failed} in sync"
        if failed:
            summary += f", {failed} with errors"
        click.echo(summary, err=True)
    if the_plan.failures:
        sys.exit(EXIT_INVALID)
    sys.exit(EXIT_FAILED if the_plan.changes else EXIT_OK)


@cli.command()
@manifest_command
def delete(ctx: click.Context, paths: tuple[str, ...], redis_url: str | None, namespace: str | None,
           cluster_id: str | None, output: str) -> None:
    """Delete (deletionPolicy Delete) or release (Retain) what the manifests declare.

    Only streams and groups that redistreams created and that these resources own are
    ever deleted; everything else is released and left in place.
    """
    engine, topics, groups = _declared(ctx, paths, redis_url, namespace, cluster_id)
    results = engine.delete(topics, groups)
    _print_results(results, output)
    sys.exit(EXIT_FAILED if any(not r.ok for r in results) else EXIT_OK)


# -- status ----------------------------------------------------------------------------


def _owner_dict(record: Any) -> dict[str, str] | None:
    if record is None:
        return None
    return {"cluster": record.owner.cluster, "namespace": record.owner.namespace, "name": record.owner.name}


def status_dict(state: StreamState, declared_groups: list[str] | None = None, now_ms: int | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"stream": state.key, "exists": state.exists}
    if state.failure:
        data["error"] = state.failure.message
        return data
    if not state.exists:
        if state.type != "none":
            data["type"] = state.type
        if declared_groups:
            data["groups"] = [{"name": g, "exists": False} for g in declared_groups]
        return data
    data.update(
        length=state.length,
        firstEntryId=state.first_id,
        lastEntryId=state.last_id,
        lastGeneratedId=state.last_generated_id,
        entriesAdded=state.entries_added,
        managedBy=_owner_dict(state.topic_owner),
    )
    groups = []
    for g in state.groups.values():
        groups.append(
            {
                "name": g.name,
                "exists": True,
                "consumers": g.consumers,
                "pending": g.pending,
                "lastDeliveredId": g.last_delivered_id,
                "entriesRead": g.entries_read,
                "lag": g.lag,
                "lagExact": g.lag_exact,
                "oldestPendingId": g.oldest_pending_id,
                "oldestPendingAgeSeconds": (
                    None if g.oldest_pending_idle_ms is None else round(g.oldest_pending_idle_ms / 1000, 3)
                ),
                "managedBy": _owner_dict(state.group_owners.get(g.name)),
            }
        )
    for name in declared_groups or []:
        if name not in state.groups:
            groups.append({"name": name, "exists": False})
    data["groups"] = groups
    return data


def _lag_text(group: dict[str, Any]) -> str:
    lag = group.get("lag")
    if lag is None:
        return "?"
    if group.get("lagExact"):
        return str(lag)
    return f"≥{lag}"


def _status_tables(entries: list[dict[str, Any]]) -> Any:
    streams = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("STREAM", "LENGTH", "FIRST ID", "LAST ID", "GROUPS", "MANAGED BY"):
        streams.add_column(column, overflow="fold", justify="right" if column in ("LENGTH", "GROUPS") else "left")
    groups = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("STREAM", "GROUP", "LAG", "PENDING", "CONSUMERS", "LAST DELIVERED", "OLDEST PENDING"):
        groups.add_column(column, overflow="fold", justify="right" if column in ("LAG", "PENDING", "CONSUMERS") else "left")
    group_rows = 0
    for entry in entries:
        if "error" in entry:
            streams.add_row(entry["stream"], "-", "-", "-", "-", f"error: {entry['error']}")
            continue
        if not entry["exists"]:
            what = f"not a stream ({entry['type']})" if "type" in entry else "missing"
            streams.add_row(entry["stream"], "-", "-", "-", "-", what)
            for g in entry.get("groups", []):
                groups.add_row(entry["stream"], g["name"], "-", "-", "-", "missing", "-")
                group_rows += 1
            continue
        owner = entry["managedBy"]
        streams.add_row(
            entry["stream"],
            str(entry["length"]),
            entry["firstEntryId"] or "-",
            entry["lastEntryId"] or "-",
            str(sum(1 for g in entry["groups"] if g["exists"])),
            f"{owner['namespace']}/{owner['name']}" if owner else "-",
        )
        for g in entry["groups"]:
            group_rows += 1
            if not g["exists"]:
                groups.add_row(entry["stream"], g["name"], "-", "-", "-", "missing", "-")
                continue
            age = g["oldestPendingAgeSeconds"]
            groups.add_row(
                entry["stream"],
                g["name"],
                _lag_text(g),
                str(g["pending"]),
                str(g["consumers"]),
                g["lastDeliveredId"],
                "-" if age is None else format_duration(age),
            )
    return RichGroup(streams, "", groups) if group_rows else streams


@cli.command()
@click.argument("streams", nargs=-1)
@files_option(required=False)
@click.option("--match", default=None, help="Glob pattern of stream keys (without STREAM or -f: all streams).")
@click.option("-w", "--watch", is_flag=True, help="Keep refreshing (a live table; with -o json, one document per line).")
@click.option("--interval", default="2s", show_default=True, help="Time between refreshes with --watch.")
@connection_options
@output_option("table", "json", "yaml")
@click.pass_context
def status(ctx: click.Context, streams: tuple[str, ...], paths: tuple[str, ...], match: str | None, watch: bool,
           interval: str, redis_url: str | None, namespace: str | None, cluster_id: str | None, output: str) -> None:
    """Length, entry IDs and groups per stream; lag, pending, consumers per group."""
    settings = _settings(ctx, redis_url, namespace, cluster_id)
    declared: dict[str, list[str]] = {s: [] for s in streams}
    if paths:
        manifests = _load(paths, settings)
        for topic in manifests.topics:
            declared.setdefault(topic.stream, [])
        for group in manifests.groups:
            declared.setdefault(manifests.topic_for(group).stream, []).append(group.group)
    engine = settings.engine()

    def observe() -> list[dict[str, Any]]:
        keys = list(declared)
        if not keys or match:
            try:
                keys += [k for k in engine.discover(match or "*") if k not in declared]
            except ObservationError as exc:
                return [{"stream": match or "*", "exists": False, "error": exc.failure.message}]
        states = engine.observe(keys, owner_groups=declared, detail_keys=keys, exact_lag=True)
        return printable_tree([status_dict(states[k], declared.get(k)) for k in keys])

    if watch:
        if output == "yaml":
            fail("--watch prints a table or JSON lines (-o json), not YAML")
        _watch_status(observe, _duration_option(interval), output)
        return
    entries = observe()
    if output == "json":
        click.echo(json.dumps({"streams": entries}, indent=2, ensure_ascii=False))
    elif output == "yaml":
        click.echo(yaml.safe_dump({"streams": entries}, sort_keys=False, allow_unicode=True), nl=False)
    else:
        _stdout().print(_status_tables(entries))
    errors = list(dict.fromkeys(e["error"] for e in entries if "error" in e))
    if errors:
        for error in errors:
            click.echo(f"error: {error}", err=True)
        sys.exit(EXIT_INVALID)
    missing = any(not e["exists"] or any(not g["exists"] for g in e.get("groups", [])) for e in entries)
    sys.exit(EXIT_FAILED if missing and declared else EXIT_OK)


def _watch_status(observe: Callable[[], list[dict[str, Any]]], interval: float, output: str) -> None:
    """Refresh until interrupted; Redis errors are shown and retried, not fatal."""
    if output == "json":
        try:
            while True:
                entries = observe()
                click.echo(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                       "streams": entries}, ensure_ascii=False))
                sys.stdout.flush()
                time.sleep(interval)
        except KeyboardInterrupt:
            return
    console = _stdout()

    def frame() -> Any:
        stamp = time.strftime("%H:%M:%S")
        header = f"[dim]every {format_duration(interval)} · {stamp} · Ctrl-C to stop[/dim]"
        return RichGroup(header, _status_tables(observe()))

    try:
        if not console.is_terminal:  # a pipe or a log: one table per refresh
            while True:
                console.print(frame())
                console.print()
                sys.stdout.flush()
                time.sleep(interval)
        with Live(frame(), console=console, auto_refresh=False, screen=False) as live:
            while True:
                time.sleep(interval)
                live.update(frame(), refresh=True)
    except KeyboardInterrupt:
        pass


# -- wait --------------------------------------------------------------------------------


class _OrderedCommand(click.Command):
    """Remembers the order options were given in, to pair each --group with its --stream."""

    def make_parser(self, ctx: click.Context) -> Any:
        parser = super().make_parser(ctx)
        parse = parser.parse_args

        def parse_args(args: list[str]) -> Any:
            opts, rest, order = parse(args)
            ctx.meta["redistreams.order"] = [p.name for p in order]
            return opts, rest, order

        parser.parse_args = parse_args  # type: ignore[method-assign]
        return parser


def _pair_groups(ctx: click.Context, streams: tuple[str, ...], groups: tuple[str, ...]) -> dict[str, list[str]]:
    order = ctx.meta.get("redistreams.order", [])
    wanted: dict[str, list[str]] = {}
    stream_iter, group_iter = iter(streams), iter(groups)
    current: str | None = None
    for name in order:
        if name == "streams":
            current = next(stream_iter)
            wanted.setdefault(current, [])
        elif name == "groups":
            group = next(group_iter)
            if current is None:
                fail(f'--group "{group}" must follow the --stream it belongs to')
            wanted[current].append(group)
    return wanted


def _duration_option(value: str) -> float:
    try:
        return float(parse_duration(value))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


@cli.command(cls=_OrderedCommand)
@files_option(required=False)
@click.option("--stream", "streams", multiple=True, metavar="KEY", help="A stream that must exist. Repeatable.")
@click.option("--group", "groups", multiple=True, metavar="NAME", help="A group on the preceding --stream. Repeatable.")
@click.option("--timeout", default="60s", show_default=True, help="Give up after this long (e.g. 90s, 5m).")
@click.option("--interval", default="1s", show_default=True, help="Time between checks.")
@connection_options
@click.pass_context
def wait(ctx: click.Context, paths: tuple[str, ...], streams: tuple[str, ...], groups: tuple[str, ...], timeout: str,
         interval: str, redis_url: str | None, namespace: str | None, cluster_id: str | None) -> None:
    """Wait until streams and groups exist: for a publisher's init container.

    Exit 0 once everything exists, 1 on timeout (naming what is missing).
    """
    settings = _settings(ctx, redis_url, namespace, cluster_id)
    timeout_s, interval_s = _duration_option(timeout), _duration_option(interval)
    if not paths and not streams:
        fail("give -f PATH or --stream KEY")
    wanted = _pair_groups(ctx, streams, groups)
    if paths:
        manifests = _load(paths, settings)
        for topic in manifests.topics:
            wanted.setdefault(topic.stream, [])
        for group in manifests.groups:
            wanted.setdefault(manifests.topic_for(group).stream, []).append(group.group)
    engine = settings.engine()
    total_groups = sum(len(g) for g in wanted.values())
    click.echo(f"waiting for {len(wanted)} streams and {total_groups} groups on {engine.target}", err=True)
    deadline = time.monotonic() + timeout_s
    while True:
        states = engine.observe(wanted, owners=False)
        missing = _missing(states, wanted)
        missing = [printable(m) for m in missing]
        if not missing:
            click.echo(f"ready: {len(wanted)} streams and {total_groups} groups exist", err=True)
            sys.exit(EXIT_OK)
        if time.monotonic() + interval_s > deadline:
            click.echo(f"error: timed out after {timeout} waiting for: {'; '.join(missing)}", err=True)
            sys.exit(EXIT_FAILED)
        time.sleep(interval_s)


def _missing(states: dict[str, StreamState], wanted: dict[str, list[str]]) -> list[str]:
    missing = []
    for key, groups in wanted.items():
        state = states[key]
        if state.failure:
            missing.append(f'stream "{key}" ({state.failure.message})')
        elif state.type not in ("stream", "none"):
            missing.append(f'stream "{key}" (the key holds a {state.type})')
        elif not state.exists:
            missing.append(f'stream "{key}"')
        else:
            missing.extend(f'group "{g}" on stream "{key}"' for g in groups if g not in state.groups)
    return missing


# -- export ------------------------------------------------------------------------------

_INVALID_NAME_CHARS = re.compile(r"[^a-z0-9.-]+")


def kube_name(text: str, taken: set[str]) -> str:
    """A valid, unused Kubernetes object name derived from a Redis name."""
    name = _INVALID_NAME_CHARS.sub("-", text.lower())
    name = re.sub(r"[-.]{2,}", "-", name).strip("-.")[:240].strip("-.") or "stream"
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}-{n}", n + 1
    taken.add(candidate)
    return candidate


@cli.command()
@click.option("--match", default="*", show_default=True, help="Glob pattern of stream keys.")
@connection_options
@click.pass_context
def export(ctx: click.Context, match: str, redis_url: str | None, namespace: str | None, cluster_id: str | None) -> None:
    """Print Topic and ConsumerGroup manifests for the streams and groups that exist.

    Applying the output adopts them as they are. Names recorded by redistreams are kept.
    """
    settings = _settings(ctx, redis_url, namespace, cluster_id)
    engine = settings.engine()
    try:
        keys = engine.discover(match)
    except ObservationError as exc:
        fail(exc.failure.message)
    states = engine.observe(keys)
    errors = [s for s in states.values() if s.failure]
    if errors:
        fail(errors[0].failure.message if errors[0].failure else "cannot read Redis")
    # Group owner records need the group names, which the first pass discovered.
    states = engine.observe(keys, owner_groups={k: list(s.groups) for k, s in states.items()})
    taken: set[str] = set()  # Topic names
    taken_groups: set[str] = set()  # ConsumerGroup names (a separate kind, a separate space)
    docs = []
    for key in keys:
        state = states[key]
        if not state.exists:
            continue  # deleted since the scan
        if printable(key) != key:
            # YAML (and Kubernetes) hold text only: such a name cannot be declared.
            click.echo(f'notice: skipping stream "{printable(key)}": its name is not UTF-8 and cannot be '
                       "written in a manifest", err=True)
            continue
        owner = state.topic_owner
        name = owner.owner.name if owner and owner.owner.name not in taken else kube_name(key, taken)
        taken.add(name)
        ns = namespace or (owner.owner.namespace if owner else None) or settings.namespace
        spec: dict[str, Any] = {} if name == key else {"streamName": key}
        docs.append({"apiVersion": API, "kind": "Topic", "metadata": {"name": name, "namespace": ns}, "spec": spec})
        for group in state.groups:
            if printable(group) != group:
                click.echo(f'notice: skipping group "{printable(group)}" of stream "{key}": its name is not UTF-8 '
                           "and cannot be written in a manifest", err=True)
                continue
            g_owner = state.group_owners.get(group)
            if g_owner and g_owner.owner.name not in taken_groups:
                g_name = g_owner.owner.name
                taken_groups.add(g_name)
            else:
                g_name = kube_name(f"{name}-{group}", taken_groups)
            g_spec: dict[str, Any] = {"topicRef": {"name": name}}
            if g_name != group:
                g_spec["groupName"] = group
            docs.append(
                {"apiVersion": API, "kind": "ConsumerGroup", "metadata": {"name": g_name, "namespace": ns}, "spec": g_spec}
            )
    click.echo(yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True), nl=False)
    click.echo(f"exported {len(keys)} streams", err=True)


# -- pub / sub: messages in the Go driver's format, for debugging ----------------------


def _stream_of(target: str, kind: str) -> str:
    """A plain stream key, or the key a Go-driver URL names."""
    from .pubsub import URLError, parse_subscription_url, parse_topic_url

    if not target.startswith("redis://"):
        return target
    try:
        return parse_topic_url(target).stream if kind == "topic" else parse_subscription_url(target).stream
    except URLError as exc:
        fail(redact(str(exc)))


def _plain_key_url(key: str) -> str:
    # The driver's URLs carry the name in host and path (cleaned like Go's path.Join).
    if any(c in key for c in "?#%@") or "//" in key or key.startswith("/") or key.endswith("/"):
        fail(f"{key!r} cannot be written as a Go-driver URL name; rename it or use a subscription URL")
    return f"redis://{key}"


def _headers_option(values: tuple[str, ...]) -> dict[str, str]:
    metadata: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="'-H/--header'")
        metadata[key] = value
    return metadata


@cli.command()
@click.argument("topic")
@click.argument("bodies", nargs=-1)
@click.option("-H", "--header", "headers", multiple=True, metavar="KEY=VALUE", help="Metadata. Repeatable.")
@click.option("--lines", is_flag=True, help="Without BODY arguments: one message per stdin line (else all of stdin).")
@connection_options
@output_option("text", "json")
@click.pass_context
def pub(ctx: click.Context, topic: str, bodies: tuple[str, ...], headers: tuple[str, ...], lines: bool,
        redis_url: str | None, namespace: str | None, cluster_id: str | None, output: str) -> None:
    """Publish messages to TOPIC (a stream key or redis://KEY[?maxlen=N]) as the Go driver does.

    Each BODY is one message; without BODY the message is read from stdin.
    """
    from .pubsub import Message, PubSubError, URLError, sync

    settings = _settings(ctx, redis_url, namespace, cluster_id)
    metadata = _headers_option(headers)
    url = topic if topic.startswith("redis://") else _plain_key_url(topic)
    if bodies:
        payloads = [b.encode() for b in bodies]
    else:
        data = sys.stdin.buffer.read()
        payloads = [line for line in data.split(b"\n") if line] if lines else [data]
    try:
        with sync.open_topic(url, redis_url=settings.redis_url, retry_for=settings.timeout) as publisher:
            ids = publisher.send_batch([Message(p, metadata) for p in payloads])
    except (URLError, ConnectionConfigError) as exc:
        fail(redact(str(exc)))
    except (PubSubError, ValueError) as exc:
        fail(str(exc), EXIT_FAILED)
    except Exception as exc:  # noqa: BLE001 - Redis unreachable and the like: one line, no traceback
        fail(f"{settings.display_url}: {exc}", EXIT_FAILED)
    if output == "json":
        click.echo(json.dumps({"stream": publisher.stream, "ids": ids}))
    else:
        for entry_id in ids:
            click.echo(entry_id)


def _message_dict(entry_id: str, body: bytes, metadata: dict[str, str], problem: str | None) -> dict[str, Any]:
    data: dict[str, Any] = {"id": entry_id, "metadata": metadata}
    try:
        data["body"] = body.decode("utf-8")
    except UnicodeDecodeError:
        import base64

        data["bodyBase64"] = base64.b64encode(body).decode()
    if problem:
        data["problem"] = problem
    return data


def _print_message(message: dict[str, Any], output: str) -> None:
    if output == "json":
        click.echo(json.dumps(message, ensure_ascii=False))
        return
    meta = " ".join(f"{k}={v}" for k, v in sorted(message["metadata"].items()))
    body = message["body"] if "body" in message else f"<{len(message['bodyBase64']) * 3 // 4} bytes, base64> " \
        f"{message['bodyBase64']}"
    click.echo(f"{message['id']}  {meta + '  ' if meta else ''}{body}")


@cli.command()
@click.argument("topic")
@click.option("--group", "-g", default=None, help="Read as this consumer group (acknowledging). Without: peek, "
              "reading the stream without a group and changing nothing.")
@click.option("--consumer", "-c", default=None, help="Consumer name with --group (default: redistreams-cli-HOST-PID).")
@click.option("--from", "start", default="$", show_default=True,
              help="Peek: start after this ID ($ = only new, 0 = from the beginning).")
@click.option("--count", type=int, default=0, help="Stop after this many messages (0: keep going).")
@click.option("--timeout", default=None, help="Stop when no message arrives for this long (e.g. 10s).")
@click.option("--no-ack", is_flag=True, help="With --group: leave messages pending (they will be redelivered).")
@connection_options
@output_option("text", "json")
@click.pass_context
def sub(ctx: click.Context, topic: str, group: str | None, consumer: str | None, start: str, count: int,
        timeout: str | None, no_ack: bool, redis_url: str | None, namespace: str | None, cluster_id: str | None,
        output: str) -> None:
    """Print messages of TOPIC (a stream key, or a Go-driver subscription URL) in the driver's format.

    Exit 0 after messages were printed, 1 when --timeout passed without any.
    """
    settings = _settings(ctx, redis_url, namespace, cluster_id)
    idle = _duration_option(timeout) if timeout else None
    if topic.startswith("redis://") and "topic=" in topic:
        # A subscription URL, exactly as a Go or Python service would open it: it names
        # the group and the consumer itself.
        if group is not None or consumer is not None or start != "$":
            raise click.UsageError("a subscription URL names its group and consumer: give the URL, or a stream "
                                   "with --group/--consumer (--from is for peeking)")
        from .pubsub import URLError, parse_subscription_url

        try:
            spec = parse_subscription_url(topic)
        except URLError as exc:
            fail(str(exc))
        url, stream, group, name = topic, spec.stream, spec.group, spec.consumer
    else:
        stream = _stream_of(topic, "topic")
        if group is None:
            shown = _peek(settings, stream, start, count, idle, output)
            sys.exit(EXIT_OK if shown else EXIT_FAILED)
        if start != "$":
            raise click.UsageError("--from is for peeking (without --group): a group reads from its own position")
        import os
        import socket
        from urllib.parse import urlencode

        name = consumer or f"redistreams-cli-{socket.gethostname()}-{os.getpid()}"
        url = _plain_key_url(group) + "?" + urlencode({"topic": stream, "consumer": name})
    new_consumer = _check_group(settings, stream, group, name)
    shown = _subscribe(settings, url, count, idle, no_ack, output)
    if new_consumer:
        _remove_own_consumer(settings, stream, group, name)
    sys.exit(EXIT_OK if shown else EXIT_FAILED)


def _check_group(settings: Settings, stream: str, group: str, consumer: str) -> bool:
    """A debugging command creates nothing durable: the group must exist (a typo would
    otherwise become a group that holds retention back for good). True when the consumer
    is new, so it is removed again afterwards."""
    engine = settings.engine()
    state = engine.observe([stream], owners=False, consumer_keys=[stream])[stream]
    if state.failure:
        fail(f"{printable(stream)}: {state.failure.message}", EXIT_FAILED)
    found = state.groups.get(group)
    if found is None:
        where = f'stream "{printable(stream)}"' if state.exists else f'stream "{printable(stream)}" (which does not exist)'
        fail(f'group "{printable(group)}" not found on {where}; sub never creates groups: declare it in a '
             f"ConsumerGroup manifest and apply it, or peek without --group", EXIT_FAILED)
    known = {c.name for c in found.consumer_states or ()}
    return consumer not in known


def _remove_own_consumer(settings: Settings, stream: str, group: str, name: str) -> None:
    """A debugging session leaves no consumer behind unless it holds pending entries."""
    try:
        settings.engine().remove_consumer(stream, group, name)
    except Exception:  # noqa: BLE001 - best effort; the consumer is harmless
        pass


def _subscribe(settings: Settings, url: str, count: int, idle: float | None, no_ack: bool, output: str) -> int:
    from .pubsub import PubSubError, URLError, sync

    shown = 0
    try:
        # Fetch no more than asked for: what is fetched and not printed would stay pending.
        subscription = sync.open_subscription(url, redis_url=settings.redis_url, create_group=False,
                                              timeout=settings.timeout, batch_size=min(count, 100) if count else 100)
        try:
            while not count or shown < count:
                batch = subscription.receive_batch(count - shown if count else 100, timeout=idle)
                if not batch:
                    break
                for message in batch:
                    _print_message(_message_dict(message.id, message.body, message.metadata, message.problem), output)
                if not no_ack:
                    subscription.ack(*batch)
                shown += len(batch)
        finally:
            unsent = subscription.shutdown(timeout=settings.timeout)
        if unsent:
            fail(f"{len(unsent)} messages were printed but Redis did not confirm their acknowledgement: they stay "
                 f"pending and will be delivered again ({', '.join(unsent[:5])}{'…' if len(unsent) > 5 else ''})",
                 EXIT_FAILED)
    except (URLError, ConnectionConfigError) as exc:
        fail(redact(str(exc)))
    except (PubSubError, ValueError) as exc:
        fail(str(exc), EXIT_FAILED)
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # noqa: BLE001
        fail(f"{settings.display_url}: {exc}", EXIT_FAILED)
    return shown


def _peek(settings: Settings, stream: str, start: str, count: int, idle: float | None, output: str) -> int:
    """XREAD without a group: sees what is published, moves no group, creates nothing."""
    import redis as redis_lib

    from .pubsub.wire import decode_fields

    try:
        client = RedisTarget(settings.redis_url, socket_timeout=settings.timeout).client(decode_responses=False)
    except ConnectionConfigError as exc:
        fail(str(exc))
    cursor, shown, key = start, 0, wire(stream)
    deadline = None if idle is None else time.monotonic() + idle
    try:
        if cursor == "$":
            info = client.xinfo_stream(key) if client.exists(key) else None
            cursor = info["last-generated-id"].decode() if info else "0-0"
        while not count or shown < count:
            block = 1000 if deadline is None else max(1, int(min(1.0, deadline - time.monotonic()) * 1000))
            reply = client.xread({key: cursor}, count=min(100, count - shown) if count else 100, block=block)
            for _, entries in reply or []:
                for raw_id, fields in entries:
                    cursor = raw_id.decode()
                    flat = [x for pair in fields.items() for x in pair]
                    decoded = decode_fields(flat)
                    if decoded is not None:
                        _print_message(_message_dict(cursor, decoded.body, decoded.metadata, decoded.problem), output)
                    shown += 1
                if deadline is not None:
                    deadline = time.monotonic() + idle  # type: ignore[operator]
            if deadline is not None and time.monotonic() >= deadline:
                break
    except KeyboardInterrupt:
        pass
    except redis_lib.RedisError as exc:
        fail(f"{settings.display_url}: {exc}", EXIT_FAILED)
    return shown


@cli.command("operator")
@click.option("--namespace", "namespaces", multiple=True, metavar="NS",
              help="Watch only this namespace (repeatable). Default: all namespaces.")
@click.option("-A", "--all-namespaces", is_flag=True, help="Watch all namespaces (the default).")
@click.option("--redis-url", metavar="URL", help="Default Redis (default: $REDIS_URL).")
@click.option("--cluster-id", envvar="REDISTREAMS_CLUSTER_ID", default="default", show_default=True,
              help="Owner identity of this cluster in Redis' ownership records.")
@click.option("--resync-interval", default="60s", show_default=True, help="Drift check period (±10% jitter).")
@click.option("--status-interval", default="30s", show_default=True,
              help="Write changing figures (length, lag…) to status at most this often.")
@click.option("--observe-interval", default="30s", show_default=True,
              help="Read every Topic's stream for metrics and apply retention in bounded steps this often "
                   "(off: no stream metrics; retention then runs with each reconcile).")
@click.option("--liveness", default="http://0.0.0.0:8080/healthz", show_default=True,
              help="Liveness endpoint URL, or empty to disable.")
@click.option("--metrics-port", type=int, default=8081, show_default=True,
              help="Serve Prometheus metrics on this port (0: off).")
@click.option("--log-format", type=click.Choice(["plain", "full", "json"]), default="full", show_default=True)
@click.option("-v", "--verbose", is_flag=True)
def operator_command(namespaces: tuple[str, ...], all_namespaces: bool, redis_url: str | None, cluster_id: str,
                     resync_interval: str, status_interval: str, observe_interval: str, liveness: str,
                     metrics_port: int, log_format: str, verbose: bool) -> None:
    """Run the Kubernetes operator for Topic and ConsumerGroup resources."""
    from .controller.handlers import OperatorConfig
    from .controller.main import run

    if all_namespaces and namespaces:
        fail("give either --namespace or --all-namespaces")
    config = OperatorConfig(
        cluster_id=cluster_id,
        redis_url=redis_url or ctx_url(),
        resync_interval=_duration_option(resync_interval),
        status_interval=_duration_option(status_interval),
        observe_interval=0.0 if observe_interval in ("0", "off") else _duration_option(observe_interval),
    )
    try:  # an unusable default URL is a start-up error, not a status on every Topic
        RedisTarget(config.redis_url).client()
    except ConnectionConfigError as exc:
        fail(str(exc))
    run(config, list(namespaces), liveness or None, verbose, log_format, metrics_port)


def ctx_url() -> str:
    root = click.get_current_context().find_root().params
    return root.get("redis_url") or default_url()


def main() -> None:
    # Last line of defence: a name that is not UTF-8 and escaped no other way is shown
    # escaped instead of ending the command with a traceback.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        cli(prog_name="redistreams")
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
