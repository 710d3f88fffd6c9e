"""What the commands print: errors, results, plans, status tables, JSON and YAML.

Names from Redis reach the terminal only through ``redistreams.printable``. rich, yaml
and the engine are imported inside the functions that use them, to keep ``--help`` fast.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, NoReturn

import click

from ..printable import printable, printable_tree
from .options import EXIT_INVALID

if TYPE_CHECKING:
    from rich.console import Console

    from ..engine import GroupPlan, Plan, Result, TopicPlan
    from ..pubsub import ReceivedMessage

PLAN_SYMBOLS = {"create": "+", "configure": "~", "unchanged": " ", "fail": "!"}
PIPE_WIDTH = 200  # columns written to a pipe, wide so that table rows are not wrapped


def fail(message: str, code: int = EXIT_INVALID) -> NoReturn:
    click.echo(f"error: {printable(message)}", err=True)
    sys.exit(code)


def stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def stdout_console() -> Console:
    from rich.console import Console

    return Console(highlight=False, width=None if sys.stdout.isatty() else PIPE_WIDTH)


def progress(message: str) -> Any:
    """A spinner on an interactive terminal, nothing otherwise."""
    if not _may_be_terminal():
        return nullcontext()
    console = stderr_console()
    return console.status(message) if console.is_terminal else nullcontext()


def _may_be_terminal() -> bool:
    """False where rich's Console.is_terminal is surely False (stderr not a TTY and
    neither TTY_COMPATIBLE=1 nor FORCE_COLOR set): rich is then not imported at all."""
    stderr = sys.stderr
    try:
        if stderr is not None and stderr.isatty():
            return True
    except ValueError:  # closed
        return False
    return os.environ.get("TTY_COMPATIBLE") == "1" or bool(os.environ.get("FORCE_COLOR"))


def print_json(value: Any, indent: int | None = 2) -> None:
    click.echo(json.dumps(printable_tree(value), indent=indent, ensure_ascii=False))


def print_yaml(value: Any) -> None:
    import yaml

    click.echo(yaml.safe_dump(printable_tree(value), sort_keys=False, allow_unicode=True), nl=False)


def print_manifests(docs: list[dict[str, Any]]) -> None:
    """Manifests as a YAML stream; their names were checked to be text (see ``views``)."""
    import yaml

    click.echo(yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True), nl=False)


def echo_lines(lines: list[str]) -> None:
    """Lines to stdout in one write, then forgotten: click.echo flushes on every call, a
    system call per line of a 40,000-line apply."""
    if lines:
        click.echo("\n".join(lines))
        lines.clear()


def print_results(results: list[Result], output: str) -> None:
    if output == "json":
        print_json({"results": [r.as_dict() for r in results]})
        return
    lines: list[str] = []
    for result in results:
        if result.failure:
            echo_lines(lines)  # what came before it first, on a terminal showing both streams
            click.echo(printable(f"error: {result.label}: {result.failure.message}"), err=True)
            continue
        line = f"{result.label} {result.outcome}{' (dry run)' if result.dry_run else ''}"  # as kubectl's
        if result.details:
            line += ": " + "; ".join(result.details)
        lines.append(printable(line))
    echo_lines(lines)


def _items(plan: Plan) -> list[TopicPlan | GroupPlan]:
    return [*plan.topics, *plan.groups]


def plan_lines(plan: Plan) -> list[tuple[str, str, str]]:
    """(symbol, resource, text) per resource."""
    from ..engine import GroupPlan, TopicPlan

    rows = []
    for item in _items(plan):
        notes = list(item.notes)
        if item.failure:
            text = item.failure.message
        elif isinstance(item, TopicPlan) and item.create_stream:
            text = f'create stream "{item.intent.stream}"'
        elif isinstance(item, GroupPlan) and item.create_at is not None:
            where = "the end of the stream" if item.intent.start_id == "$" else item.create_at
            text = f'create group "{item.intent.group}" on "{item.intent.stream}" at {where}'
        elif item.changes:
            text = ""  # the notes say what changes (ownership, trim)
        else:
            text = "in sync"
        if isinstance(item, GroupPlan) and item.start_id_note:
            notes.append(item.start_id_note)
        if item.record is not None and not item.failure:
            notes.append("record ownership" if item.record_is_new else "update the ownership record")
        text = "; ".join(t for t in [text, *notes] if t)
        rows.append((PLAN_SYMBOLS[item.verb], item.intent.label, text))
    return rows


def print_plan(plan: Plan, output: str) -> None:
    from ..engine.plan import plan_details

    rows = plan_lines(plan)
    items = _items(plan)
    if output == "json":
        payload = [
            {
                "resource": label,
                "action": item.verb,
                "summary": text,
                **({"reason": item.failure.reason} if item.failure else {}),
                **plan_details(item),
            }
            for (_, label, text), item in zip(rows, items)
        ]
        print_json({"inSync": not plan.changes, "plan": payload})
        return
    echo_lines([printable(f"{symbol} {label}: {text}") for symbol, label, text in rows])
    changed = sum(1 for p in items if p.changes)
    failed = sum(1 for p in items if p.failure)
    summary = f"{changed} to change, {len(rows) - changed - failed} in sync"
    if failed:
        summary += f", {failed} with errors"
    click.echo(summary, err=True)


def _lag_text(group: dict[str, Any]) -> str:
    lag = group.get("lag")
    if lag is None:
        return "?"
    if group.get("lagExact"):
        return str(lag)
    return f"≥{lag}"


def status_tables(entries: list[dict[str, Any]]) -> Any:
    """Streams, and their groups when there are any, from ``views.status_dict`` entries."""
    from rich.console import Group
    from rich.table import Table

    from ..units import format_duration

    def table(columns: tuple[str, ...], right: tuple[str, ...]) -> Table:
        made = Table(box=None, pad_edge=False, header_style="bold")
        for column in columns:
            made.add_column(column, overflow="fold", justify="right" if column in right else "left")
        return made

    streams = table(("STREAM", "LENGTH", "FIRST ID", "LAST ID", "GROUPS", "MANAGED BY"), ("LENGTH", "GROUPS"))
    groups = table(("STREAM", "GROUP", "LAG", "PENDING", "CONSUMERS", "LAST DELIVERED", "OLDEST PENDING"),
                   ("LAG", "PENDING", "CONSUMERS"))
    group_rows = 0
    for entry in entries:
        if "error" in entry:
            streams.add_row(entry["stream"], "-", "-", "-", "-", f"error: {entry['error']}")
            continue
        if not entry["exists"]:
            what = f"not a stream ({entry['type']})" if "type" in entry else "missing"
            streams.add_row(entry["stream"], "-", "-", "-", "-", what)
        else:
            owner = entry["managedBy"]
            streams.add_row(
                entry["stream"],
                str(entry["length"]),
                entry["firstEntryId"] or "-",
                entry["lastEntryId"] or "-",
                str(sum(1 for g in entry["groups"] if g["exists"])),
                f"{owner['namespace']}/{owner['name']}" if owner else "-",
            )
        for g in entry.get("groups", []):
            group_rows += 1
            if not g["exists"]:
                groups.add_row(entry["stream"], g["name"], "-", "-", "-", "missing", "-")
                continue
            age = g["oldestPendingAgeSeconds"]
            groups.add_row(entry["stream"], g["name"], _lag_text(g), str(g["pending"]), str(g["consumers"]),
                           g["lastDeliveredId"], "-" if age is None else format_duration(age))
    return Group(streams, "", groups) if group_rows else streams


def message_dict(message: ReceivedMessage) -> dict[str, Any]:
    """A received message as JSON: the body as text, or base64 when it is not UTF-8."""
    data: dict[str, Any] = {"id": message.id, "metadata": message.metadata}
    try:
        data["body"] = message.body.decode("utf-8")
    except UnicodeDecodeError:
        import base64

        data["bodyBase64"] = base64.b64encode(message.body).decode()
    if message.problem:
        data["problem"] = message.problem
    return data


def print_message(message: ReceivedMessage, output: str) -> None:
    data = message_dict(message)
    if output == "json":
        # Bodies and headers are data, not names: shown as they are (main() escapes
        # whatever the terminal cannot take).
        click.echo(json.dumps(data, ensure_ascii=False))
        return
    meta = " ".join(f"{k}={v}" for k, v in sorted(data["metadata"].items()))
    encoded = data.get("bodyBase64", "")
    body = data["body"] if "body" in data else f"<{len(encoded) * 3 // 4} bytes, base64> {encoded}"
    click.echo(f"{data['id']}  {meta + '  ' if meta else ''}{body}")
