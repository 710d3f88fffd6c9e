"""status (and --watch), wait and export: reading what exists, changing nothing."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Container, Mapping
from typing import Any, Protocol

import click

from ..printable import printable, printable_tree
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
from .output import fail, print_json, print_manifests, print_yaml, status_tables, stdout_console


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
@click.option("--match", default=None, help="Glob pattern of stream keys (without STREAM or -f: all streams).")
@click.option("-w", "--watch", is_flag=True,
              help="Keep refreshing (a live table; with -o json, one document per line).")
@click.option("--interval", default="2s", show_default=True, metavar="DURATION",
              help="Time between refreshes with --watch.")
@connection_options
@output_option("table", "json", "yaml")
@click.pass_context
def status(ctx: click.Context, streams: tuple[str, ...], paths: tuple[str, ...], match: str | None, watch: bool,
           interval: str, redis_url: str | None, namespace: str | None, cluster_id: str | None, output: str) -> None:
    """Length, entry IDs and groups per stream; lag, pending, consumers per group."""
    from ..engine import ObservationError
    from ..views import status_dict

    config = settings(ctx, redis_url, namespace, cluster_id)
    declared: dict[str, list[str]] = {s: [] for s in streams}
    if paths:
        for stream, groups in config.manifests(paths).streams().items():
            declared.setdefault(stream, []).extend(groups)
    engine = config.engine()

    def observe() -> list[dict[str, Any]]:
        keys = list(declared)
        if not keys or match:
            try:
                keys += [k for k in engine.discover(match or "*") if k not in declared]
            except ObservationError as exc:
                return [{"stream": match or "*", "exists": False, "error": exc.failure.message}]
        states = engine.observe(keys, owner_groups=declared, detail_keys=keys, exact_lag=True)
        entries: list[dict[str, Any]] = printable_tree([status_dict(states[k], declared.get(k)) for k in keys])
        return entries

    if watch:
        if output == "yaml":
            fail("--watch prints a table or JSON lines (-o json), not YAML")
        _watch(observe, duration_option(interval), output)
        return
    entries = observe()
    if output == "json":
        print_json({"streams": entries})
    elif output == "yaml":
        print_yaml({"streams": entries})
    else:
        stdout_console().print(status_tables(entries))
    errors = list(dict.fromkeys(e["error"] for e in entries if "error" in e))
    if errors:
        for error in errors:
            click.echo(f"error: {error}", err=True)
        sys.exit(EXIT_INVALID)
    missing = any(not e["exists"] or any(not g["exists"] for g in e.get("groups", [])) for e in entries)
    sys.exit(EXIT_FAILED if missing and declared else EXIT_OK)


def _watch(observe: Callable[[], list[dict[str, Any]]], interval: float, output: str) -> None:
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
        return Group(header, status_tables(observe()))

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
    timeout_s, interval_s = duration_option(timeout), duration_option(interval)
    if not paths and not streams:
        fail("give -f PATH or --stream KEY")
    wanted = _pair_groups(ctx, streams, groups)
    if paths:
        for stream, declared in config.manifests(paths).streams().items():
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
        missing = [printable(m) for m in _missing(observed, wanted)]
        if not missing:
            click.echo(f"ready: {len(wanted)} streams and {total_groups} groups exist", err=True)
            sys.exit(EXIT_OK)
        if time.monotonic() + interval_s > deadline:
            click.echo(f"error: timed out after {timeout} waiting for: {'; '.join(missing)}", err=True)
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
        click.echo(f"notice: {notice}", err=True)
    print_manifests(docs)
    click.echo(f"exported {len(keys)} streams", err=True)
