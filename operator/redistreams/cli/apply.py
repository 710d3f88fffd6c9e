"""apply, plan and delete: manifests in, changes (or the plan of them) out."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from .options import EXIT_FAILED, EXIT_INVALID, EXIT_OK, manifest_command, settings
from .output import print_plan, print_results, progress

if TYPE_CHECKING:
    from ..engine import Engine, GroupIntent, TopicIntent


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
              cluster_id: str | None) -> tuple[Engine, list[TopicIntent], list[GroupIntent]]:
    """Validated manifests as intents (exit 2 on bad input) and an engine, for -f commands."""
    from ..engine import intents_from

    config = settings(ctx, redis_url, namespace, cluster_id)
    manifests = config.manifests(paths)
    topics, groups = intents_from(
        manifests.topics, [(g, manifests.topic_for(g)) for g in manifests.groups], config.cluster_id
    )
    return config.engine(), topics, groups


@click.command()
@manifest_command
def apply(ctx: click.Context, paths: tuple[str, ...], redis_url: str | None, namespace: str | None,
          cluster_id: str | None, output: str) -> None:
    """Create streams and groups, adopt existing ones, enforce retention."""
    with _collector_paused():
        engine, topics, groups = _declared(ctx, paths, redis_url, namespace, cluster_id)
        with progress(f"applying {len(topics)} topics and {len(groups)} groups to {engine.target}"):
            results = engine.reconcile(topics, groups)
        print_results(results, output)
    sys.exit(EXIT_FAILED if any(not r.ok for r in results) else EXIT_OK)


@click.command()
@manifest_command
def plan(ctx: click.Context, paths: tuple[str, ...], redis_url: str | None, namespace: str | None,
         cluster_id: str | None, output: str) -> None:
    """Show what apply would change. Exit 0 in sync, 1 differences, 2 error."""
    with _collector_paused():
        engine, topics, groups = _declared(ctx, paths, redis_url, namespace, cluster_id)
        the_plan = engine.plan(topics, groups)
        print_plan(the_plan, output)
    if the_plan.failures:
        sys.exit(EXIT_INVALID)
    sys.exit(EXIT_FAILED if the_plan.changes else EXIT_OK)


@click.command()
@manifest_command
def delete(ctx: click.Context, paths: tuple[str, ...], redis_url: str | None, namespace: str | None,
           cluster_id: str | None, output: str) -> None:
    """Delete (deletionPolicy Delete) or release (Retain) what the manifests declare.

    Only streams and groups that redistreams created and that these resources own are
    ever deleted; everything else is released and left in place.
    """
    with _collector_paused():
        engine, topics, groups = _declared(ctx, paths, redis_url, namespace, cluster_id)
        results = engine.delete(topics, groups)
        print_results(results, output)
    sys.exit(EXIT_FAILED if any(not r.ok for r in results) else EXIT_OK)
