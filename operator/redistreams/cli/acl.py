"""acl: print the ACL SETUSER line of the documented rule sets (redistreams/acl.py) for
given key patterns. Prints only; sends nothing to Redis."""

from __future__ import annotations

import click

from .options import REGISTRY_KEY


@click.command("acl")
@click.argument("roles", nargs=-1, required=True,
                type=click.Choice(["manager", "reader", "publisher", "consumer", "dead-letter"]))
@click.option("--key", "keys", multiple=True, required=True, metavar="PATTERN",
              help="Key pattern the user may touch, e.g. 'team-a/*' (repeatable; the registry key is added "
                   "for manager and reader).")
@click.option("--user", default="redistreams", show_default=True, help="The ACL user's name.")
@click.option("--password", default="SECRET", show_default=True,
              help="Placeholder written after '>'; replace it (or pipe through your secret tooling).")
@click.option("--minimal", is_flag=True, help="Leave out what is used only when granted (+time, +client|setname…).")
@click.option("--cluster", is_flag=True,
              help="Redis Cluster: the registry is one hash per slot (<key>{tag}); +cluster|slots +command +info.")
@click.pass_context
def acl(ctx: click.Context, roles: tuple[str, ...], keys: tuple[str, ...], user: str, password: str, minimal: bool,
        cluster: bool) -> None:
    """Print the ACL SETUSER line for ROLES (one user with all of them): manager (operator,
    apply/plan/delete), reader (status/wait/export, sub without a group), publisher,
    consumer, dead-letter (added to consumer)."""
    from ..acl import RULE_SETS, combined

    registry_key = ctx.find_root().params.get("registry_key") or REGISTRY_KEY
    for role in dict.fromkeys(roles):
        click.echo(f"# {role}: {RULE_SETS[role].summary}")
    click.echo(combined(dict.fromkeys(roles)).setuser(user, keys, password, registry_key, not minimal, cluster))
