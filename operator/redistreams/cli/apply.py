"""apply, plan and delete: manifests in, changes (or the plan of them) out."""

from __future__ import annotations

import gc
import sys
from typing import TYPE_CHECKING

import click

from .options import EXIT_FAILED, EXIT_INVALID, EXIT_OK, manifest_command, settings
from .output import print_plan, print_results, progress

if TYPE_CHECKING:
    from ..engine import Engine, GroupIntent, TopicIntent


def _declared(ctx: click.Context, paths: tuple[str, ...], redis_url: str | None, namespace: str | None,
              cluster_id: str | None) -> tuple[Engine, list[TopicIntent], list[GroupIntent]]:
    """Validated manifests as intents (exit 2 on bad input) and an engine, for -f commands."""
    from ..engine import intents_from

    config = settings(ctx, redis_url, namespace, cluster_id)
    manifests = config.manifests(paths)
    # They live until the command ends, and what follows (intents, plans, results, lines)
    # holds no cycles: the cyclic collector would only rescan them (at 40,000 resources one
    # full collection costs more than planning them). Reference counting frees the rest.
    gc.freeze()
    gc.disable()
    topics, groups = intents_from(
        manifests.topics, [(g, manifests.topic_for(g)) for g in manifests.groups], config.cluster_id
    )
    return config.engine(), topics, groups


@click.command()
@manifest_command
def apply(ctx: click.Context, paths: tuple[str, ...], redis_url: str | None, namespace: str | None,
          cluster_id: str | None, output: str) -> None:
    """Create streams and groups, adopt existing ones, enforce retention."""
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
    engine, topics, groups = _declared(ctx, paths, redis_url, namespace, cluster_id)
    results = engine.delete(topics, groups)
    print_results(results, output)
    sys.exit(EXIT_FAILED if any(not r.ok for r in results) else EXIT_OK)
