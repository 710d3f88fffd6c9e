"""version and completion: what this command is, and how a shell completes it."""

from __future__ import annotations

import sys
from typing import Any

import click

from .. import __version__
from ..printable import shown
from .options import EXIT_FAILED, EXIT_OK, connection_options, output_option, settings

SHELLS = ("bash", "zsh", "fish")
COMPLETE_VAR = "_REDISTREAMS_COMPLETE"  # click's protocol: _<PROG>_COMPLETE=<shell>_source


@click.command()
@click.option("--client", "client_only", is_flag=True, help="The client's version only: do not ask Redis.")
@connection_options
@output_option("text", "json", "yaml")
@click.pass_context
def version(ctx: click.Context, client_only: bool, redis_url: str | None, namespace: str | None,
            cluster_id: str | None, output: str) -> None:
    """Print the client version and the Redis (or Valkey) server's.

    As kubectl: the client version is always printed; a server that cannot be asked is an
    error line and exit 1.
    """
    from .output import print_json, print_yaml

    data: dict[str, Any] = {"clientVersion": {"version": __version__, "python": sys.version.split()[0]}}
    problem = None
    if not client_only:
        config = settings(ctx, redis_url, namespace, cluster_id)
        server, problem = _server_version(config.engine())
        if server is not None:
            data["serverVersion"] = server
    if output == "json":
        print_json(data)
    elif output == "yaml":
        print_yaml(data)
    else:
        click.echo(f"Client Version: {__version__}")
        if "serverVersion" in data:
            server = data["serverVersion"]
            click.echo(shown(f"Server Version: {server['name']} {server['version']}"))
    if problem is not None:
        click.echo(f"error: {shown(problem)}", err=True)
        sys.exit(EXIT_FAILED)
    sys.exit(EXIT_OK)


def _server_version(engine: Any) -> tuple[dict[str, str] | None, str | None]:
    """(name and version, None) from INFO server, or (None, why it could not be read)."""
    import redis.exceptions as rex

    from ..engine.errors import describe

    try:
        info = engine.client.info("server")
    except (rex.RedisError, rex.RedisClusterException, OSError) as exc:
        return None, describe(exc, engine.target).message
    finally:
        engine.close()
    return server_version(info), None


def server_version(info: dict[str, Any]) -> dict[str, str]:
    """Name, version and mode from INFO server (of one node, or per node from a cluster client)."""
    if info and all(isinstance(v, dict) for v in info.values()):
        info = next(iter(info.values()))  # a cluster client answers per node: the first one's
    # Valkey says server_name:valkey and valkey_version; it keeps redis_version at 7.2.4.
    name = str(info.get("server_name") or "redis")
    number = info.get(f"{name}_version") or info.get("redis_version") or "unknown"
    pretty = {"redis": "Redis", "valkey": "Valkey"}.get(name, name)
    return {"name": pretty, "version": str(number), "mode": str(info.get("redis_mode", "standalone"))}


@click.command()
@click.argument("shell", type=click.Choice(SHELLS), metavar="SHELL")
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL (bash, zsh or fish).

    \b
    bash: source <(redistreams completion bash)
          (or write it to ~/.local/share/bash-completion/completions/redistreams)
    zsh:  redistreams completion zsh > "${fpath[1]}/_redistreams"
    fish: redistreams completion fish > ~/.config/fish/completions/redistreams.fish
    """
    from click.shell_completion import get_completion_class

    from . import cli

    completer = get_completion_class(shell)
    assert completer is not None  # every one of SHELLS is built into click
    click.echo(completer(cli, {}, "redistreams", COMPLETE_VAR).source(), nl=False)
