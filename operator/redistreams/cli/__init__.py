"""The ``redistreams`` command: apply the same manifests as the operator, straight to Redis.

Exit codes follow kubectl: apply/delete 0 done, 1 some resources failed, 2 invalid input
(nothing written); plan 0 in sync, 1 differences, 2 invalid input or error; wait 0 ready,
1 timed out; status 1 when a requested stream or group is missing.

One module per command group over ``options`` (settings, shared options, exit codes) and
``output`` (printing): ``apply`` (apply, plan, delete), ``inspect`` (status, wait,
export), ``messages`` (pub, sub), ``operator``. They define commands; this module adds
them to the group, so nothing imports back up. Domain work lives below the CLI.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from .. import __version__
from . import acl, apply, inspect, messages, operator
from .options import REDIS_TIMEOUT, REGISTRY_KEY, connection_options


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="redistreams")
@connection_options
@click.option("--registry-key", default=REGISTRY_KEY, show_default=True, help="Hash holding ownership records.")
@click.option("--redis-timeout", type=float, default=REDIS_TIMEOUT, show_default=True,
              help="Seconds to wait for Redis.")
def cli(**_: Any) -> None:
    """Declarative Redis Streams topics and consumer groups.

    Applies Topic and ConsumerGroup manifests (redistreams.dev/v1alpha1) straight to Redis:
    streams and groups exist before any publisher runs.
    """


for _command in (apply.apply, apply.plan, apply.delete, inspect.status, inspect.wait, inspect.export,
                 messages.pub, messages.sub, operator.operator_command, acl.acl):
    cli.add_command(_command)


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
