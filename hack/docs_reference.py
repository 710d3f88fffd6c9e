"""The documentation's reference pages, generated from the code that defines them:

* ``resources.md``: every field of Topic and ConsumerGroup (spec and status) with its type,
  default and validation, read from the CRDs that ``redistreams.crds`` generates from the
  pydantic model (what the API server and the CLI enforce alike);
* ``cli.md``: every ``redistreams`` command's help, walked from the click group.

``make docs`` generates them at build time (hack/mkdocs_hooks.py): nothing generated is
committed, so they cannot go stale. ``python -m hack.docs_reference [--output DIR]`` writes
them out to read or diff.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import click

from redistreams.cli import cli
from redistreams.crds import generate

PAGES = ("resources.md", "cli.md")
# Validation keywords shown, in this order, with the words people read.
_BOUNDS = (("minimum", "≥ {}"), ("maximum", "≤ {}"), ("minLength", "length ≥ {}"),
           ("maxLength", "length ≤ {}"), ("minItems", "items ≥ {}"), ("maxItems", "items ≤ {}"))


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _code(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value).lower() if isinstance(value, bool) else str(value)
    return f"`{_cell(text)}`" if "`" not in text else _cell(text)


def _type(node: dict[str, Any]) -> str:
    kind = node.get("type", "any")
    if kind == "array":
        return f"list of {_type(node.get('items', {}))}"
    if kind == "integer" and node.get("format") == "int64":
        return "integer"
    if node.get("format") == "date-time":
        return "time (RFC 3339)"
    return str(kind)


def _rules(node: dict[str, Any]) -> list[str]:
    rules = [f"one of {', '.join(_code(v) for v in node['enum'])}"] if "enum" in node else []
    rules += [template.format(node[key]) for key, template in _BOUNDS if key in node]
    if "pattern" in node:
        rules.append(f"matches {_code(node['pattern'])}")
    rules += [f"{_cell(v['message'])} (CEL {_code(v['rule'])})" for v in node.get("x-kubernetes-validations", [])]
    return rules


def _fields(node: dict[str, Any], prefix: str, rows: list[str]) -> None:
    required = set(node.get("required", []))
    for name, child in node.get("properties", {}).items():
        path = f"{prefix}.{name}"
        default = _code(child["default"]) if "default" in child else ""
        rows.append(f"| `{path}` | {_type(child)} | {'yes' if name in required else ''} | {default} | "
                     f"{_cell(child.get('description', ''))} | {'<br>'.join(_rules(child))} |")
        target = child.get("items", {}) if child.get("type") == "array" else child
        if target.get("properties"):
            _fields(target, f"{path}[]" if child.get("type") == "array" else path, rows)


def resources_page() -> str:
    out = ["# Resource reference", "",
           "Generated from the model (`redistreams.model`, through the CRDs `redistreams.crds` writes) when "
           "the site is built: the CLI and the API server accept and reject the same documents. Unknown "
           "fields are errors. *CEL* rules are checked by the API server; the CLI checks the same rules "
           "itself.", ""]
    for crd in generate():
        names = crd["spec"]["names"]
        (version,) = crd["spec"]["versions"]
        schema = version["schema"]["openAPIV3Schema"]
        out += [f"## {names['kind']}", "",
                f"`apiVersion: {crd['spec']['group']}/{version['name']}`, `kind: {names['kind']}`, "
                f"plural `{names['plural']}`, short names "
                f"{', '.join(f'`{s}`' for s in names.get('shortNames', []))}; namespaced.", ""]
        if schema.get("description"):
            out += [_cell(schema["description"]), ""]
        columns = version.get("additionalPrinterColumns", [])
        if columns:
            out += ["`kubectl get` columns: " + ", ".join(f"{c['name']} (`{c['jsonPath']}`)" for c in columns), ""]
        for part in ("spec", "status"):
            node = schema["properties"].get(part)
            if not node:
                continue
            rows = ["| field | type | required | default | description | validation |",
                    "|---|---|---|---|---|---|"]
            _fields(node, part, rows)
            out += [f"### {names['kind']} `{part}`", "", *rows, ""]
    return "\n".join(out)


def _commands(group: click.Group, ctx: click.Context) -> list[tuple[str, click.Command, click.Context]]:
    found = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        sub = click.Context(command, info_name=name, parent=ctx)
        found.append((ctx.command_path + " " + name, command, sub))
        if isinstance(command, click.Group):
            found += _commands(command, sub)
    return found


def cli_page() -> str:
    root = click.Context(cli, info_name="redistreams", max_content_width=100, terminal_width=100)
    out = ["# CLI reference", "",
           "Generated from the command itself (its `--help`, walked from the click group) when the site "
           "is built. Global options go before or after the subcommand.", "",
           "## redistreams", "", "```text", cli.get_help(root), "```", ""]
    for path, command, ctx in _commands(cli, root):
        out += [f"## {path}", "", "```text", command.get_help(ctx), "```", ""]
    return "\n".join(out)


def pages() -> dict[str, str]:
    return {"resources.md": resources_page(), "cli.md": cli_page()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, help="folder to write the pages to (default: print them)")
    args = parser.parse_args(argv)
    for name, text in pages().items():
        if args.output:
            args.output.mkdir(parents=True, exist_ok=True)
            (args.output / name).write_text(text)
        else:
            sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
