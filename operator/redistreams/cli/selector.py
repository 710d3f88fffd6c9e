"""kubectl's label selectors (-l/--selector) over the manifests' metadata.labels.

    -l app=orders,tier!=batch     -l 'env in (prod,staging)'     -l 'team,!legacy'

Requirements are ANDed: ``key=value`` (or ``==``), ``key!=value`` (also true without the
label), ``key in (a,b)``, ``key notin (a,b)`` (also true without it), ``key`` (has it),
``!key`` (has it not). Light: ``--help`` and ``wait`` import it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import click

if TYPE_CHECKING:
    from ..manifests import ManifestSet
    from ..model import ConsumerGroup, Topic

_NAME = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_PREFIX = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*"
_KEY = rf"(?:{_PREFIX}/)?{_NAME}"
_VALUE = rf"(?:{_NAME})?"
# Compiled at first use (re caches them): `wait` and --help import this module.
_EXISTS = rf"(!?)\s*({_KEY})"
_EQUALITY = rf"({_KEY})\s*(==|=|!=)\s*({_VALUE})"
_SET = rf"({_KEY})\s+(in|notin)\s*\((.*)\)"


class Requirement(NamedTuple):
    key: str
    operator: str  # "in", "notin", "exists", "!exists" ("=" is "in" of one value)
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "exists":
            return present
        if self.operator == "!exists":
            return not present
        if self.operator == "in":
            return present and labels[self.key] in self.values
        return not present or labels[self.key] not in self.values  # notin, !=


class Selector(NamedTuple):
    text: str
    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)


def parse(text: str) -> Selector:
    """A selector, or ValueError saying which part is wrong."""
    requirements = []
    for part in _split(text):
        requirement = part.strip()
        if not requirement:
            raise ValueError(f'invalid selector "{text}": empty requirement')
        if match := re.fullmatch(_SET, requirement):
            key, op, inner = match.groups()
            values = [v.strip() for v in inner.split(",")]
            if not values or any(not re.fullmatch(_NAME, v) for v in values):
                raise ValueError(f'invalid selector "{text}": bad value list in "{requirement}"')
            requirements.append(Requirement(key, op, frozenset(values)))
        elif match := re.fullmatch(_EQUALITY, requirement):
            key, op, value = match.groups()
            requirements.append(Requirement(key, "notin" if op == "!=" else "in", frozenset([value])))
        elif match := re.fullmatch(_EXISTS, requirement):
            bang, key = match.groups()
            requirements.append(Requirement(key, "!exists" if bang else "exists"))
        else:
            raise ValueError(f'invalid selector "{text}": cannot parse "{requirement}" '
                             "(use key=value, key!=value, key in (a,b), key notin (a,b), key or !key)")
    return Selector(text, tuple(requirements))


def _split(text: str) -> list[str]:
    """Requirements: commas outside parentheses separate them."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise ValueError(f'invalid selector "{text}": unbalanced ")"')
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        raise ValueError(f'invalid selector "{text}": unbalanced "("')
    parts.append(text[start:])
    return parts


META_KEY = "redistreams.selector"


def _remember(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is None:
        return
    try:
        ctx.meta[META_KEY] = parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def selector_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """-l/--selector: acts only on the resources of the input whose labels match (a group
    selected without its Topic still finds the Topic in the input). Kept in ctx.meta."""
    return click.option(
        "-l", "--selector", metavar="SELECTOR", expose_value=False, callback=_remember,
        help="Only the resources whose metadata.labels match, as kubectl: key=value, key!=value, "
             "'key in (a,b)', 'key notin (a,b)', key, !key; comma-separated, all must hold.",
    )(func)


def selected(ctx: click.Context) -> Selector | None:
    selector: Selector | None = ctx.meta.get(META_KEY)
    return selector


def selection(ctx: click.Context, manifests: ManifestSet) -> tuple[list[Topic], list[ConsumerGroup]]:
    """The Topics and ConsumerGroups the command acts on: all, or those -l selects."""
    selector = selected(ctx)
    if selector is None:
        return manifests.topics, manifests.groups
    if ctx.params.get("prune"):
        # Pruning a selection would take every unselected resource of the input for gone.
        raise click.UsageError("--prune acts on the whole input: it cannot be combined with -l/--selector")
    topics = [t for t in manifests.topics if selector.matches(t.metadata.labels)]
    groups = [g for g in manifests.groups if selector.matches(g.metadata.labels)]
    if not topics and not groups:
        click.echo(f'notice: no resources in the input match -l "{selector.text}"', err=True)
    return topics, groups
