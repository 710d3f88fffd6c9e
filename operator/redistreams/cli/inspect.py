"""status (and --watch), wait and export: reading what exists, changing nothing."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Container, Mapping
from typing import Any, Protocol

import click

from ..printable import printable_tree, shown
from ..units import rfc3339
from .options import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    connection_options,
    duration_option,
    files_option,
    output_option,
    settings,
)
from .output import echo_lines, fail, print_json, print_manifests, print_yaml, status_tables, stdout_console
from .selector import selection, selector_option


class _Observed(Protocol):
    """What ``wait`` reads of a stream: the engine's StreamState, or the probe's Presence."""

    @property
    def failure(self) -> Any: ...
    @property
    def type(self) -> str: ...
    @property
    def exists(self) -> bool: ...
    @property
    def groups(self) -> Container[str]: ...


@click.command()
@click.argument("streams", nargs=-1)
@files_option(required=False)
@selector_option
@click.option("--match", default=None, help="Glob pattern of stream keys (without STREAM or -f: all streams).")
@click.option("--consumers", "show_consumers", is_flag=True,
              help="Also each group's consumers: name, pending, idle (-o wide implies it).")
@click.option("--no-headers", is_flag=True, help="Tables without their header row (-o table, wide).")
@click.option("-w", "--watch", is_flag=True,
              help="Keep refreshing (a live table; with -o json, one document per line).")
@click.option("--interval", default="2s", show_default=True, metavar="DURATION",
              help="Time between refreshes with --watch.")
@connection_options
@output_option("table", "wide", "json", "yaml", "name")
@click.pass_context
def status(ctx: click.Context, streams: tuple[str, ...], paths: tuple[str, ...], match: str | None,
           show_consumers: bool, no_headers: bool, watch: bool, interval: str, redis_url: str | None,
           namespace: str | None, cluster_id: str | None, output: str) -> None:
    """Length, entry IDs and groups per stream; lag, pending, consumers and owner per group.

    With -n, streams found by listing (no STREAM or -f) or --match are those whose Topic is
    in that namespace; streams named or declared are always shown. -o name prints
    stream/KEY per stream that exists.
    """
    from ..engine import ObservationError
    from ..views import status_dict

    config = settings(ctx, redis_url, namespace, cluster_id)
    declared: dict[str, list[str]] = {s: [] for s in streams}
    if paths:
        for stream, groups in _declared_streams(ctx, config.manifests(paths)).items():
            declared.setdefault(stream, []).extend(groups)
    only_namespace = namespace or ctx.find_root().params.get("namespace")
    show_consumers = show_consumers or output == "wide"
    engine = config.engine()
    if show_consumers:
        engine.observer.consumer_cap = CONSUMERS_LISTED

    def observe() -> list[dict[str, Any]]:
        keys = list(declared)
        if (not keys and not paths) or match:  # -f declaring nothing found is no request for all
            try:
                keys += [k for k in engine.discover(match or "*") if k not in declared]
            except ObservationError as exc:
                return [{"stream": match or "*", "exists": False, "error": exc.failure.message}]
        states = engine.observe(keys, owner_groups=declared, detail_keys=keys, exact_lag=True,
                                consumer_keys=keys if show_consumers else ())
        # Owner records of groups not declared: their names are known only now (as export).
        unnamed = {k: list(s.groups) for k, s in states.items()
                   if not s.failure and any(g not in declared.get(k, ()) for g in s.groups)}
        if unnamed:
            for key, owned in engine.observe(list(unnamed), owner_groups=unnamed).items():
                states[key].group_owners.update(owned.group_owners)
        if only_namespace:
            keys = [k for k in keys if k in declared or _in_namespace(states[k], only_namespace)]
        entries: list[dict[str, Any]] = printable_tree(
            [status_dict(states[k], declared.get(k), show_consumers) for k in keys])
        return entries

    def render(entries: list[dict[str, Any]]) -> Any:
        return status_tables(entries, wide=output == "wide", headers=not no_headers)

    if watch:
        if output in ("yaml", "name"):
            fail(f"--watch prints a table or JSON lines (-o json), not -o {output}")
        _watch(observe, duration_option(interval, "--interval"), output, render)
        return
    entries = observe()
    if output == "json":
        print_json({"streams": entries})
    elif output == "yaml":
        print_yaml({"streams": entries})
    elif output == "name":
        echo_lines([shown(f"stream/{e['stream']}") for e in entries if e["exists"]])
    elif not entries:
        where = f' owned in namespace "{shown(only_namespace)}"' if only_namespace else ""
        click.echo(f"No streams found{where}.", err=True)  # kubectl's "No resources found"
    else:
        stdout_console().print(render(entries))
    errors = list(dict.fromkeys(e["error"] for e in entries if "error" in e))
    if errors:
        for error in errors:
            click.echo(f"error: {shown(error)}", err=True)
        sys.exit(EXIT_INVALID)
    missing = any(not e["exists"] or any(not g["exists"] for g in e.get("groups", [])) for e in entries)
    sys.exit(EXIT_FAILED if missing and declared else EXIT_OK)


# Consumers status lists per group (XINFO CONSUMERS); a group with more is counted only.
CONSUMERS_LISTED = 1000


def _in_namespace(state: Any, namespace: str) -> bool:
    owner = state.topic_owner
    return owner is not None and owner.owner.namespace == namespace


def _declared_streams(ctx: click.Context, manifests: Any) -> dict[str, list[str]]:
    """Stream keys the manifests declare (those -l selects), with their groups' names."""
    topics, groups = selection(ctx, manifests)
    declared: dict[str, list[str]] = {t.stream: [] for t in topics}
    for group in groups:
        declared.setdefault(manifests.topic_for(group).stream, []).append(group.group)
    return declared


def _watch(observe: Callable[[], list[dict[str, Any]]], interval: float, output: str,
           render: Callable[[list[dict[str, Any]]], Any]) -> None:
    """Refresh until interrupted; Redis errors are shown and retried, not fatal."""
    if output == "json":
        try:
            while True:
                entries = observe()
                print_json({"time": rfc3339(), "streams": entries}, None)
                sys.stdout.flush()
                time.sleep(interval)
        except KeyboardInterrupt:
            return
    from rich.console import Group
    from rich.live import Live

    from ..units import format_duration

    console = stdout_console()

    def frame() -> Any:
        stamp = time.strftime("%H:%M:%S")
        header = f"[dim]every {format_duration(interval)} · {stamp} · Ctrl-C to stop[/dim]"
        return Group(header, render(observe()))

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


@click.command(cls=_OrderedCommand)
@files_option(required=False)
@selector_option
@click.option("--stream", "streams", multiple=True, metavar="KEY", help="A stream that must exist. Repeatable.")
@click.option("--group", "groups", multiple=True, metavar="NAME", help="A group on the preceding --stream. Repeatable.")
@click.option("--timeout", default="60s", show_default=True, metavar="DURATION",
              help="Give up after this long (e.g. 90s, 5m).")
@click.option("--interval", default="1s", show_default=True, metavar="DURATION", help="Time between checks.")
@connection_options
@click.pass_context
def wait(ctx: click.Context, paths: tuple[str, ...], streams: tuple[str, ...], groups: tuple[str, ...], timeout: str,
         interval: str, redis_url: str | None, namespace: str | None, cluster_id: str | None) -> None:
    """Wait until streams and groups exist: for a publisher's init container.

    Exit 0 once everything exists, 1 on timeout (naming what is missing).
    """
    from ..probe import Unsure

    config = settings(ctx, redis_url, namespace, cluster_id)
    timeout_s, interval_s = duration_option(timeout, "--timeout"), duration_option(interval, "--interval")
    if not paths and not streams:
        fail("give -f PATH or --stream KEY")
    wanted = _pair_groups(ctx, streams, groups)
    if paths:
        for stream, declared in _declared_streams(ctx, config.manifests(paths)).items():
            wanted.setdefault(stream, []).extend(declared)
    # The probe answers without redis-py (start-up is most of an init container's wait);
    # the engine takes over for a URL the probe does not read and from the first answer
    # it is unsure of (an error), so every failure is worded as the engine words it.
    probe = config.probe()
    engine = config.engine() if probe is None else None
    total_groups = sum(len(g) for g in wanted.values())
    click.echo(f"waiting for {len(wanted)} streams and {total_groups} groups on {config.display_url}", err=True)
    deadline = time.monotonic() + timeout_s
    while True:
        observed: Mapping[str, _Observed] | None = None
        if probe is not None:
            try:
                observed = probe.presence(wanted)
            except Unsure:
                probe = None
        if observed is None:
            engine = engine or config.engine()
            observed = engine.observe(wanted, owners=False)
        missing = [shown(m) for m in _missing(observed, wanted)]
        if not missing:
            click.echo(f"ready: {len(wanted)} streams and {total_groups} groups exist", err=True)
            sys.exit(EXIT_OK)
        if time.monotonic() + interval_s > deadline:
            after = timeout if timeout[-1:].isalpha() else f"{timeout}s"  # a bare number is seconds
            click.echo(f"error: timed out after {after} waiting for: {'; '.join(missing)}", err=True)
            sys.exit(EXIT_FAILED)
        time.sleep(interval_s)


def _missing(states: Mapping[str, _Observed], wanted: dict[str, list[str]]) -> list[str]:
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


@click.command()
@click.option("--match", default="*", show_default=True, help="Glob pattern of stream keys.")
@connection_options
@click.pass_context
def export(ctx: click.Context, match: str, redis_url: str | None, namespace: str | None,
           cluster_id: str | None) -> None:
    """Print Topic and ConsumerGroup manifests for the streams and groups that exist.

    Applying the output adopts them as they are. Names recorded by redistreams are kept.
    """
    from ..engine import ObservationError
    from ..views import manifests_for

    config = settings(ctx, redis_url, namespace, cluster_id)
    engine = config.engine()
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
    # -n after "export" overrides recorded namespaces; the global default only fills in.
    docs, notices = manifests_for(keys, states, namespace, config.namespace)
    for notice in notices:
        click.echo(f"notice: {shown(notice)}", err=True)
    print_manifests(docs)
    click.echo(f"exported {len(keys)} streams", err=True)
