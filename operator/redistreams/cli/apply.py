"""apply, plan and delete: manifests in, changes (or the plan of them) out."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from ..printable import shown
from .options import EXIT_FAILED, EXIT_INVALID, EXIT_OK, fail_if_unreachable, manifest_command, planned, settings
from .output import fail, print_plan, print_results, progress
from .selector import selection

if TYPE_CHECKING:
    from ..engine import Engine, GroupIntent, Result, TopicIntent
    from ..manifests import Source


@contextmanager
def _collector_paused() -> Iterator[None]:
    """A command's manifests, intents, plan and results live until it ends and hold no
    cycles: the cyclic collector would only rescan them (at 40,000 resources its full
    collections cost more than planning them). Reference counting frees what is dropped.
    What is left is frozen out of later collections: the interpreter's exit would
    otherwise scan it all once more (0.7 s at 40,000)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if collecting:
            gc.enable()


def _declared(ctx: click.Context, paths: tuple[str, ...], redis_url: str | None, namespace: str | None,
              cluster_id: str | None
              ) -> tuple[Engine, list[TopicIntent], list[GroupIntent], dict[tuple[str, str, str], Source]]:
    """Validated manifests as intents (exit 2 on bad input), an engine, and where each
    resource came from, for -f commands."""
    from ..engine import intents_from

    config = settings(ctx, redis_url, namespace, cluster_id)
    manifests = config.manifests(paths)
    chosen_topics, chosen_groups = selection(ctx, manifests)
    topics, groups = intents_from(
        chosen_topics, [(g, manifests.topic_for(g)) for g in chosen_groups], config.cluster_id
    )
    return config.reached_engine(), topics, groups, manifests.sources()


def _pruned(ctx: click.Context, engine: Engine, topics: list[TopicIntent], groups: list[GroupIntent],
            namespace: str | None, cluster_id: str | None, dry_run: bool) -> list[Result]:
    """Deletes or releases, by their recorded deletionPolicy, what this cluster id owns in
    the namespaces of the input (and -n's) that the input no longer declares: never
    another cluster id's records, nor another namespace's."""
    from ..engine import ObservationError

    namespaces = {t.owner.namespace for t in topics} | {g.owner.namespace for g in groups}
    given = namespace or ctx.find_root().params.get("namespace")
    if given:
        namespaces.add(given)
    if not namespaces:
        click.echo("notice: nothing declared and no -n: no namespace to prune", err=True)
        return []
    cluster = settings(ctx, None, namespace, cluster_id).cluster_id
    try:
        orphans = engine.orphans(cluster, namespaces, topics, groups)
    except ObservationError as exc:
        fail(f"prune: the ownership registry could not be read: {exc.failure.message}", EXIT_FAILED)
    for problem in orphans.unreadable:
        click.echo(shown(f"notice: prune: {problem}"), err=True)
    return engine.prune(orphans, dry_run=dry_run)


@click.command()
@manifest_command
@click.option("--prune", is_flag=True, help="Also delete (deletionPolicy Delete) or release what this --cluster-id "
              "owns in the input's namespaces (and -n's) that the input no longer declares.")
@click.option("--dry-run", is_flag=True, help="With --prune: only show what would be pruned; nothing is applied.")
def apply(ctx: click.Context, paths: tuple[str, ...], redis_url: str | None, namespace: str | None,
          cluster_id: str | None, output: str, prune: bool, dry_run: bool) -> None:
    """Create streams and groups, adopt existing ones, enforce retention."""
    if dry_run and not prune:
        raise click.UsageError("--dry-run previews --prune; plan shows what apply would do")
    with _collector_paused():
        engine, topics, groups, sources = _declared(ctx, paths, redis_url, namespace, cluster_id)
        if dry_run:
            results = _pruned(ctx, engine, topics, groups, namespace, cluster_id, dry_run=True)
            if not results:
                click.echo("nothing to prune", err=True)
            print_results(results, output)
            sys.exit(_plan_exit(results))
        with progress(f"applying {len(topics)} topics and {len(groups)} groups to {engine.target}"):
            results = engine.apply(planned(engine, topics, groups, sources))
        fail_if_unreachable(ctx, [r.failure for r in results])
        if prune:
            results += _pruned(ctx, engine, topics, groups, namespace, cluster_id, dry_run=False)
        print_results(results, output)
    sys.exit(EXIT_FAILED if any(not r.ok for r in results) else EXIT_OK)


def _plan_exit(results: list[Result]) -> int:
    """plan's exit code for a deletion preview: 0 nothing to do, 1 changes, 2 errors."""
    from ..engine.apply import DELETED, PRUNED, RELEASED

    if any(not r.ok for r in results):
        return EXIT_INVALID
    return EXIT_FAILED if any(r.outcome in (DELETED, PRUNED, RELEASED) for r in results) else EXIT_OK


@click.command()
@manifest_command
@click.option("--delete", "deleting", is_flag=True, help="Show what delete would do instead (as delete --dry-run).")
def plan(ctx: click.Context, paths: tuple[str, ...], redis_url: str | None, namespace: str | None,
         cluster_id: str | None, output: str, deleting: bool) -> None:
    """Show what apply would change. Exit 0 in sync, 1 differences, 2 error."""
    with _collector_paused():
        engine, topics, groups, sources = _declared(ctx, paths, redis_url, namespace, cluster_id)
        if deleting:
            results = engine.delete(topics, groups, dry_run=True)
            print_results(results, output)
            sys.exit(_plan_exit(results))
        the_plan = planned(engine, topics, groups, sources)
        fail_if_unreachable(ctx, [p.failure for p in the_plan.topics] + [g.failure for g in the_plan.groups],
                            writes=False)
        print_plan(the_plan, output)
    if the_plan.failures:
        sys.exit(EXIT_INVALID)
    sys.exit(EXIT_FAILED if the_plan.changes else EXIT_OK)


@click.command()
@manifest_command
@click.option("--dry-run", is_flag=True, help="Only show what would be deleted or released; change nothing.")
def delete(ctx: click.Context, paths: tuple[str, ...], redis_url: str | None, namespace: str | None,
           cluster_id: str | None, output: str, dry_run: bool) -> None:
    """Delete (deletionPolicy Delete) or release (Retain) what the manifests declare.

    Only streams and groups that redistreams created and that these resources own are
    ever deleted; everything else is released and left in place.
    """
    with _collector_paused():
        engine, topics, groups, _ = _declared(ctx, paths, redis_url, namespace, cluster_id)
        results = engine.delete(topics, groups, dry_run=dry_run)
        fail_if_unreachable(ctx, [r.failure for r in results])
        print_results(results, output)
    sys.exit(EXIT_FAILED if any(not r.ok for r in results) else EXIT_OK)
