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

from ..printable import printable_tree, shown, terminal_safe
from .options import EXIT_INVALID

if TYPE_CHECKING:
    from rich.console import Console

    from ..engine import GroupPlan, Plan, Result, TopicPlan
    from ..pubsub import ReceivedMessage

PLAN_SYMBOLS = {"create": "+", "configure": "~", "unchanged": " ", "fail": "!"}
PIPE_WIDTH = 200  # columns written to a pipe, wide so that table rows are not wrapped


def fail(message: str, code: int = EXIT_INVALID) -> NoReturn:
    click.echo(f"error: {shown(message)}", err=True)
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


# JSON and YAML show other languages' letters as they are; a document holding a character
# that could drive or spoof a terminal is written again with every non-ASCII one escaped.


def print_json(value: Any, indent: int | None = 2) -> None:
    value = printable_tree(value)
    text = json.dumps(value, indent=indent, ensure_ascii=False)
    click.echo(text if terminal_safe(text) else json.dumps(value, indent=indent))


def print_yaml(value: Any) -> None:
    import yaml

    value = printable_tree(value)
    text = yaml.safe_dump(value, sort_keys=False, allow_unicode=True)
    click.echo(text if terminal_safe(text) else yaml.safe_dump(value, sort_keys=False), nl=False)


def print_manifests(docs: list[dict[str, Any]]) -> None:
    """Manifests as a YAML stream; their names were checked to be text (see ``views``)."""
    import yaml

    text = yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True)
    click.echo(text if terminal_safe(text) else yaml.safe_dump_all(docs, sort_keys=False), nl=False)


def echo_lines(lines: list[str]) -> None:
    """Lines to stdout in one write, then forgotten: click.echo flushes on every call, a
    system call per line of a 40,000-line apply."""
    if lines:
        click.echo("\n".join(lines))
        lines.clear()


# Outcomes in the order the summary line names them; "failed" is always named.
SUMMARY_ORDER = ("created", "configured", "unchanged", "deleted", "pruned", "released", "skipped", "not found",
                 "failed")
API_GROUP = "redistreams.dev"  # model.API's group, without loading the models for -o name


def kube_ref(label: str) -> str:
    """kubectl's -o name for a label: ``topic/orders`` -> ``topic.redistreams.dev/orders``."""
    kind, _, name = label.partition("/")
    return f"{kind}.{API_GROUP}/{name}"


def summary_line(results: list[Result]) -> str:
    """"3 created, 1 configured, 10 unchanged, 0 failed": outcomes that occurred, and failures."""
    counts: dict[str, int] = {}
    for result in results:
        counts[result.outcome] = counts.get(result.outcome, 0) + 1
    counts.setdefault("failed", 0)
    order = [o for o in SUMMARY_ORDER if o in counts] + sorted(o for o in counts if o not in SUMMARY_ORDER)
    line = ", ".join(f"{counts[o]} {o}" for o in order)
    return line + (" (dry run)" if any(r.dry_run for r in results) else "")


def print_results(results: list[Result], output: str) -> None:
    """One line per resource on stdout (text; -o name: the names of those that succeeded),
    errors on stderr; in text, a summary line on stderr so stdout stays one line per
    resource for scripts. JSON and YAML: one document."""
    if output in ("json", "yaml"):
        (print_json if output == "json" else print_yaml)({"results": [r.as_dict() for r in results]})
        return
    lines: list[str] = []
    for result in results:
        if result.failure:
            echo_lines(lines)  # what came before it first, on a terminal showing both streams
            click.echo(shown(f"error: {result.label}: {result.failure.message}"), err=True)
            continue
        if output == "name":
            lines.append(shown(kube_ref(result.label)))
            continue
        line = f"{result.label} {result.outcome}{' (dry run)' if result.dry_run else ''}"  # as kubectl's
        if result.details:
            line += ": " + "; ".join(result.details)
        lines.append(shown(line))
    echo_lines(lines)
    if output == "text" and results:
        click.echo(summary_line(results), err=True)


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


PLAN_COLOURS = {"+": "green", "~": "yellow", "-": "red", "!": "red"}
CHANGE_SYMBOLS = {"add": "+", "change": "~", "remove": "-"}
NAMED_CONSUMER_CHANGES = 5  # consumers removed named one per line in text; the rest counted


def colour_wanted() -> bool:
    """Colour only for a person: stdout a terminal, and NO_COLOR (no-color.org) not set."""
    return not os.environ.get("NO_COLOR") and sys.stdout.isatty()


def change_text(change: dict[str, Any]) -> str:
    """``retention.maxLength``-style field line of a plan: "~ length: 15 -> 10"."""
    symbol = CHANGE_SYMBOLS[change["op"]]
    if change["op"] == "add":
        text = f"{symbol} {change['field']}: {change['to']}"
    elif change["op"] == "remove":
        text = f"{symbol} {change['field']}: {change['from']}"
    else:
        text = f"{symbol} {change['field']}: {change['from']} -> {change['to']}"
    return text + (f" ({change['note']})" if change.get("note") else "")


def print_plan(plan: Plan, output: str) -> None:
    """Text: a line per resource (+ create, ~ configure, ! error, blank in sync), under it
    the fields that change; -o name: the resources that would change; JSON and YAML: all
    of it, ``changes`` being the field-level diff."""
    from ..engine.plan import plan_details
    from ..views import plan_changes

    rows = plan_lines(plan)
    items = _items(plan)
    if output in ("json", "yaml"):
        payload = [
            {
                "resource": label,
                "action": item.verb,
                "summary": text,
                **({"reason": item.failure.reason} if item.failure else {}),
                **plan_details(item),
                "changes": plan_changes(item),
            }
            for (_, label, text), item in zip(rows, items)
        ]
        (print_json if output == "json" else print_yaml)({"inSync": not plan.changes, "plan": payload})
        return
    if output == "name":
        for (_, label, text), item in zip(rows, items):
            if item.failure:
                click.echo(shown(f"error: {label}: {text}"), err=True)
        echo_lines([shown(kube_ref(label)) for (_, label, _), item in zip(rows, items) if item.changes])
        return
    colour = colour_wanted()

    def styled(symbol: str, line: str) -> str:
        return click.style(line, fg=PLAN_COLOURS[symbol]) if colour and symbol in PLAN_COLOURS else line

    lines = []
    for (symbol, label, text), item in zip(rows, items):
        lines.append(styled(symbol, shown(f"{symbol} {label}: {text}")))
        changes = plan_changes(item)
        removed = [c for c in changes if c["field"].startswith("consumers.")]
        unnamed = {id(c) for c in removed[NAMED_CONSUMER_CHANGES:]}
        for change in changes:
            if id(change) in unnamed:
                continue
            lines.append(styled(CHANGE_SYMBOLS[change["op"]], "    " + shown(change_text(change))))
        if len(removed) > NAMED_CONSUMER_CHANGES:
            more = len(removed) - NAMED_CONSUMER_CHANGES
            lines.append(styled("-", f"    - consumers: {more} more idle (-o json lists them)"))
    echo_lines(lines)
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


def _owner_text(owner: dict[str, str] | None, wide: bool) -> str:
    if not owner:
        return "-"
    named = f"{owner['namespace']}/{owner['name']}"
    return f"{owner['cluster']}/{named}" if wide else named


def status_tables(entries: list[dict[str, Any]], wide: bool = False, headers: bool = True) -> Any:
    """Streams, their groups when there are any, and the groups' consumers when they were
    read (``--consumers``, ``-o wide``), from ``views.status_dict`` entries. ``wide``: more
    columns (entries added and read, oldest pending ID, owners with their cluster id)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from ..units import format_duration

    def table(columns: tuple[str, ...], right: tuple[str, ...]) -> Table:
        made = Table(box=None, pad_edge=False, header_style="bold", show_header=headers)
        for column in columns:
            made.add_column(column, overflow="fold", justify="right" if column in right else "left")
        return made

    def age(seconds: float | None) -> str:
        return "-" if seconds is None else format_duration(seconds)

    def add(made: Table, *cells: str) -> None:
        # Text, not a str: a name such as "[/bold]" is shown as it is, never read as markup.
        made.add_row(*(Text(shown(cell)) for cell in cells))

    stream_columns = ("STREAM", "LENGTH", "FIRST ID", "LAST ID", "GROUPS", *(("ENTRIES ADDED",) if wide else ()),
                      "MANAGED BY")
    streams = table(stream_columns, ("LENGTH", "GROUPS", "ENTRIES ADDED"))
    group_columns = ("STREAM", "GROUP", "LAG", "PENDING", "CONSUMERS", "LAST DELIVERED", "OLDEST PENDING",
                     *(("ENTRIES READ", "OLDEST PENDING ID") if wide else ()), "MANAGED BY")
    groups = table(group_columns, ("LAG", "PENDING", "CONSUMERS", "ENTRIES READ"))
    consumers = table(("STREAM", "GROUP", "CONSUMER", "PENDING", "IDLE", *(("INACTIVE",) if wide else ())),
                      ("PENDING",))
    filler = ("-",) * (len(stream_columns) - 2)
    group_rows = consumer_rows = 0
    for entry in entries:
        if "error" in entry:
            add(streams, entry["stream"], *filler, f"error: {entry['error']}")
            continue
        if not entry["exists"]:
            what = f"not a stream ({entry['type']})" if "type" in entry else "missing"
            add(streams, entry["stream"], *filler, what)
        else:
            added = (str(entry["entriesAdded"]) if entry["entriesAdded"] is not None else "-",) if wide else ()
            add(streams,
                entry["stream"],
                str(entry["length"]),
                entry["firstEntryId"] or "-",
                entry["lastEntryId"] or "-",
                str(sum(1 for g in entry["groups"] if g["exists"])),
                *added,
                _owner_text(entry["managedBy"], wide),
            )
        for g in entry.get("groups", []):
            group_rows += 1
            if not g["exists"]:
                add(groups, entry["stream"], g["name"], "-", "-", "-", "missing",
                               *(("-",) * (len(group_columns) - 6)))
                continue
            more = (str(g["entriesRead"]) if g["entriesRead"] is not None else "-", g["oldestPendingId"] or "-") \
                if wide else ()
            add(groups, entry["stream"], g["name"], _lag_text(g), str(g["pending"]), str(g["consumers"]),
                           g["lastDeliveredId"], age(g["oldestPendingAgeSeconds"]), *more,
                           _owner_text(g.get("managedBy"), wide))
            if "consumerDetails" not in g:
                continue
            if g["consumerDetails"] is None:  # more consumers than status reads one by one
                consumer_rows += 1
                add(consumers, entry["stream"], g["name"], f"({g['consumers']} consumers: too many to list)",
                                  "-", "-", *(("-",) if wide else ()))
            for c in g["consumerDetails"] or []:
                consumer_rows += 1
                add(consumers, entry["stream"], g["name"], c["name"], str(c["pending"]), age(c["idleSeconds"]),
                                  *((age(c["inactiveSeconds"]),) if wide else ()))
    parts: list[Any] = [streams]
    if group_rows:
        parts += ["", groups]
    if consumer_rows:
        parts += ["", consumers]
    return Group(*parts) if len(parts) > 1 else streams


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
