"""The ``redistreams`` command: apply the same manifests as the operator, straight to Redis.

Exit codes follow kubectl: 0 done, 1 some resources failed (or differences, timed out,
missing, unreachable), 2 invalid input or an error before anything was done. Each command's
own meanings are in ``EXIT_CODES`` below, shown at the end of its ``--help``.

One module per command group over ``options`` (settings, shared options, exit codes) and
``output`` (printing): ``apply`` (apply, plan, delete), ``inspect`` (status, wait,
export), ``messages`` (pub, sub), ``operator``, ``about`` (version, completion). They
define commands; this module names them for the group, so nothing imports back up.
Domain work lives below the CLI.
"""

from __future__ import annotations

import functools
import gc
import importlib
import os
import sys
from typing import Any

import click

from .. import __version__
from ..printable import shown
from .options import REDIS_TIMEOUT, REGISTRY_KEY, connection_options, seconds_option

# command -> (module in this package, attribute). A command's module is imported when the
# command runs (or --help lists them all): `redistreams wait` in an init container loads
# inspect.py alone, not apply, pub/sub or the operator's command.
COMMANDS = {
    "apply": ("apply", "apply"), "plan": ("apply", "plan"), "delete": ("apply", "delete"),
    "status": ("inspect", "status"), "wait": ("inspect", "wait"), "export": ("inspect", "export"),
    "pub": ("messages", "pub"), "sub": ("messages", "sub"), "operator": ("operator", "operator_command"),
    "acl": ("acl", "acl"), "version": ("about", "version"), "completion": ("about", "completion"),
}

# pydantic looks for plugins in every installed distribution's metadata when it builds its
# first model (a scan of site-packages at each start). No command of the CLI has a use for
# them; pydantic's own switch turns the scan off, unless the user has set it (set empty, it
# brings plugins back). The operator, long-running, keeps pydantic's default.
PYDANTIC_PLUGINS = "PYDANTIC_DISABLE_PLUGINS"
KEEPS_PYDANTIC_PLUGINS = {"operator"}

# What each exit code of a command means, listed at the end of its --help. Usage errors
# (an unknown option, a bad value) are 2 everywhere, as click and kubectl have it.
EXIT_CODES: dict[str, tuple[str, ...]] = {
    "apply": ("0  every resource applied", "1  some resources failed (the others were applied)",
              "2  invalid input or selector (nothing written)"),
    "plan": ("0  in sync", "1  differences", "2  invalid input or an error"),
    "delete": ("0  every resource deleted or released", "1  some resources failed",
               "2  invalid input or selector (nothing changed)"),
    "status": ("0  shown", "1  a requested stream or group is missing", "2  invalid input or an error"),
    "wait": ("0  everything exists", "1  timed out (what is missing is named)", "2  invalid input"),
    "export": ("0  exported", "2  invalid input or an error"),
    "pub": ("0  published", "1  Redis refused or is unreachable", "2  invalid input"),
    "sub": ("0  messages printed", "1  none before --timeout", "2  invalid input"),
    "operator": ("0  stopped", "1  stopped on an error (lost leadership, Redis or the API unusable)",
                 "2  invalid options"),
    "acl": ("0  printed", "2  invalid options"),
    "version": ("0  client and server versions printed", "1  Redis unreachable (the client version is printed)",
                "2  invalid options"),
    "completion": ("0  script printed", "2  unknown shell"),
}


def _exit_codes_epilog(name: str) -> str:
    # \b keeps click from rewrapping the list into one paragraph.
    return "\b\nExit codes:\n" + "\n".join(f"  {line}" for line in EXIT_CODES[name])


def _show_usage_error(error: click.UsageError, file: Any = None) -> None:
    """kubectl's one error style: "error: …" and where to look, instead of click's usage block."""
    command = error.ctx.command_path if error.ctx is not None else "redistreams"
    click.echo(f"error: {shown(error.format_message())}", err=True)
    click.echo(f"See '{command} --help' for usage.", err=True)


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        if cmd_name not in KEEPS_PYDANTIC_PLUGINS:  # before the command imports any model
            os.environ.setdefault(PYDANTIC_PLUGINS, "__all__")
        module, attribute = COMMANDS[cmd_name]
        command: click.Command = getattr(importlib.import_module(f".{module}", __name__), attribute)
        if not command.epilog:
            command.epilog = _exit_codes_epilog(cmd_name)
        return command

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as error:
            error.show = functools.partial(_show_usage_error, error)  # type: ignore[method-assign]
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as error:  # a subcommand's options, or a BadParameter of its own
            error.show = functools.partial(_show_usage_error, error)  # type: ignore[method-assign]
            raise


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog="\b\nExit codes (each command's --help lists its own):\n"
                    "  0  done\n  1  some resources failed, differences, timed out or missing\n"
                    "  2  invalid input or an error before anything was done")
@click.version_option(__version__, prog_name="redistreams")
@connection_options
@click.option("--registry-key", default=REGISTRY_KEY, show_default=True, help="Hash holding ownership records.")
@click.option("--redis-timeout", default=f"{REDIS_TIMEOUT:g}s", show_default=True, metavar="DURATION",
              callback=lambda _ctx, _param, value: seconds_option(value),
              help="How long to wait for Redis (e.g. 10s, 1m; a bare number is seconds).")
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
    finally:
        # The interpreter's last collection would walk every object the command made (the
        # models' schemas, parsed manifests): ~30 ms of a short command, for memory the
        # exit frees anyway. Frozen objects are skipped; files are still flushed and closed.
        gc.freeze()
