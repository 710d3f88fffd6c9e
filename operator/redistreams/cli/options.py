"""Settings and the options the commands share.

The global options (--redis-url, -n, --cluster-id) are accepted before or after the
subcommand; the subcommand's value wins. Imports stay light here: ``--help`` loads this
module, so models, Redis and the engine are imported only when a command runs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from .. import DEFAULT_CLUSTER_ID, DEFAULT_REGISTRY_KEY
from ..printable import printable

if TYPE_CHECKING:
    from ..engine import Engine
    from ..manifests import ManifestSet
    from ..probe import Probe

# kubectl's: 0 done (or in sync, ready), 1 some resources failed (or differences, timed
# out, missing), 2 invalid input or an error before anything was done.
EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2

REGISTRY_KEY, CLUSTER_ID = DEFAULT_REGISTRY_KEY, DEFAULT_CLUSTER_ID
REDIS_TIMEOUT = 10.0  # seconds


class Settings:
    def __init__(self, redis_url: str | None, namespace: str | None, cluster_id: str, registry_key: str,
                 timeout: float):
        from ..urltext import default_url  # not connection: that imports redis-py

        self.redis_url = redis_url or default_url()
        self._namespace = namespace
        self.cluster_id = cluster_id
        self.registry_key = registry_key
        self.timeout = timeout

    @property
    def namespace(self) -> str:
        from ..model import DEFAULT_NAMESPACE  # pub and sub never ask: they load no models

        return self._namespace or DEFAULT_NAMESPACE

    def engine(self) -> Engine:
        from ..connection import ConnectionConfigError, RedisTarget
        from ..engine import Engine
        from .output import fail  # output needs the exit codes above: imported late

        target = RedisTarget(self.redis_url, socket_timeout=self.timeout)
        try:
            client = target.client()
        except ConnectionConfigError as exc:
            fail(str(exc))
        return Engine(client, target=target.display, registry_key=self.registry_key)

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
        """The validated manifests; every error printed and exit 2 when there is one."""
        from ..manifests import load

        manifests = load(list(paths), default_namespace=self.namespace)
        for notice in manifests.notices:
            click.echo(f"notice: {printable(notice)}", err=True)
        if manifests.errors:
            for error in manifests.errors:
                click.echo(f"error: {printable(error)}", err=True)
            click.echo(f"{len(manifests.errors)} error(s) in the input; nothing was changed", err=True)
            sys.exit(EXIT_INVALID)
        return manifests


def settings(ctx: click.Context, redis_url: str | None, namespace: str | None, cluster_id: str | None) -> Settings:
    """The subcommand's global options, else the ones given before it, else defaults."""
    parent: dict[str, Any] = ctx.find_root().params
    return Settings(
        redis_url or parent.get("redis_url"),
        namespace or parent.get("namespace"),
        cluster_id or parent.get("cluster_id") or CLUSTER_ID,
        parent.get("registry_key") or REGISTRY_KEY,
        parent.get("redis_timeout") or REDIS_TIMEOUT,
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


def manifest_command(func: Callable[..., Any]) -> Callable[..., Any]:
    """The options of every command that reads manifests and changes or plans."""
    from .selector import selector_option

    for decorator in (click.pass_context, output_option("text", "name", "json", "yaml"), selector_option,
                      connection_options, files_option(True)):
        func = decorator(func)
    return func


def duration_option(value: str) -> float:
    """Seconds from a duration such as 90s or 5m; a usage error (exit 2) otherwise."""
    from ..units import parse_duration

    try:
        return float(parse_duration(value))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc

