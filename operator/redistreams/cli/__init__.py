"""The ``redistreams`` command: apply the same manifests as the operator, straight to Redis.

Exit codes follow kubectl: apply/delete 0 done, 1 some resources failed, 2 invalid input
(nothing written); plan 0 in sync, 1 differences, 2 invalid input or error; wait 0 ready,
1 timed out; status 1 when a requested stream or group is missing.

One module per command group over ``options`` (settings, shared options, exit codes) and
``output`` (printing): ``apply`` (apply, plan, delete), ``inspect`` (status, wait,
export), ``messages`` (pub, sub), ``operator``. They define commands; this module names
them for the group, so nothing imports back up. Domain work lives below the CLI.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from .. import __version__
from .options import REDIS_TIMEOUT, REGISTRY_KEY, connection_options

# command -> (module in this package, attribute). A command's module is imported when the
# command runs (or --help lists them all): `redistreams wait` in an init container loads
# inspect.py alone, not apply, pub/sub or the operator's command.
COMMANDS = {
    "apply": ("apply", "apply"), "plan": ("apply", "plan"), "delete": ("apply", "delete"),
    "status": ("inspect", "status"), "wait": ("inspect", "wait"), "export": ("inspect", "export"),
    "pub": ("messages", "pub"), "sub": ("messages", "sub"), "operator": ("operator", "operator_command"),
    "acl": ("acl", "acl"),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attribute = COMMANDS[cmd_name]
        command: click.Command = getattr(importlib.import_module(f".{module}", __name__), attribute)
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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
