"""The import contract: layers point down, never back (an AST walk over every module).

    cli, controller  ->  engine, pubsub, manifests  ->  model, connection, printable, units

The engine knows no Kubernetes, CLI or client; the model knows no engine; the client
knows no engine or operator; the CLI loads the operator (kopf) only for `operator`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "redistreams"

# module prefix -> imports it must never make (module prefixes, third-party names too)
FORBIDDEN = {
    "redistreams.engine": ("redistreams.controller", "redistreams.cli", "redistreams.pubsub", "kopf", "click",
                           "rich", "aiohttp", "kubernetes"),
    "redistreams.model": ("redistreams.engine", "redistreams.controller", "redistreams.cli", "redistreams.pubsub"),
    "redistreams.model_status": ("redistreams.engine", "redistreams.controller", "redistreams.cli",
                                 "redistreams.pubsub"),
    "redistreams.manifests": ("redistreams.engine", "redistreams.controller", "redistreams.cli", "redistreams.pubsub",
                              "redistreams.model_status"),  # reading manifests builds no status model (issue 14)
    "redistreams.crds": ("redistreams.engine", "redistreams.controller", "redistreams.cli", "redistreams.pubsub"),
    "redistreams.connection": ("redistreams.engine", "redistreams.controller", "redistreams.cli", "redistreams.pubsub"),
    "redistreams.sentinel": ("redistreams.engine", "redistreams.controller", "redistreams.cli", "redistreams.pubsub"),
    "redistreams.cluster": ("redistreams.engine", "redistreams.controller", "redistreams.cli", "redistreams.pubsub"),
    # Read by `redistreams wait` and --help, which start without redis-py (issue 14).
    "redistreams.probe": ("redistreams.engine", "redistreams.controller", "redistreams.cli", "redistreams.pubsub",
                          "redistreams.connection", "redistreams.model", "redis", "pydantic"),
    "redistreams.urltext": ("redistreams.engine", "redistreams.controller", "redistreams.cli", "redistreams.pubsub",
                            "redistreams.connection", "redis"),
    "redistreams.tls": ("redistreams",),
    "redistreams.printable": ("redistreams",),
    "redistreams.units": ("redistreams",),
    "redistreams.pubsub": ("redistreams.engine", "redistreams.controller", "redistreams.cli", "kopf", "click"),
    "redistreams.controller": ("redistreams.cli",),
}
# The one place the CLI may load the operator: inside the `operator` command's module,
# within a function (so every other command starts without kopf).
CLI_MAY_LOAD_CONTROLLER = "redistreams.cli.operator"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, bool]]:
    """(absolute module, imported at module level) for every import in the file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            found += [(t, id(node) in top_level) for t in targets]
    return found


def within(target: str, prefix: str) -> bool:
    prefix = prefix.rstrip(".")
    return target == prefix or target.startswith(prefix + ".")


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_the_walk_sees_every_layer() -> None:
    names = {module_name(p) for p in MODULES}
    assert {"redistreams.engine", "redistreams.model", "redistreams.pubsub", "redistreams.controller",
            "redistreams.cli"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_imports_point_down(path: Path) -> None:
    name = module_name(path)
    for layer, forbidden in FORBIDDEN.items():
        if name != layer and not name.startswith(layer + "."):
            continue
        for target, _ in imports(path):
            bad = [f for f in forbidden if within(target, f)]
            assert not bad, f"{name} imports {target}: {layer} must not import {bad[0]}"
    if name.startswith("redistreams.cli"):
        for target, top_level in imports(path):
            if within(target, "redistreams.controller"):
                assert name == CLI_MAY_LOAD_CONTROLLER and not top_level, (
                    f"{name} imports {target}: only {CLI_MAY_LOAD_CONTROLLER} may, inside the command")


# The `operator` extra (pyproject.toml): only the operator's modules may import it, so
# `pip install redistreams` (without the extra) gives a CLI and a client that work.
OPERATOR_EXTRA = ("kopf", "aiohttp", "prometheus_client")
MAY_IMPORT_OPERATOR_EXTRA = ("redistreams.controller", "redistreams.metrics")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_only_the_operator_imports_its_extra(path: Path) -> None:
    name = module_name(path)
    if any(within(name, allowed) for allowed in MAY_IMPORT_OPERATOR_EXTRA):
        return
    for target, top_level in imports(path):
        if name == CLI_MAY_LOAD_CONTROLLER and not top_level:
            continue  # inside the command, after its check that the extra is installed
        extra = [m for m in (*OPERATOR_EXTRA, "redistreams.metrics") if within(target, m)]
        assert not extra, f"{name} imports {target}, which needs `pip install 'redistreams[operator]'`"
