"""The loader's direct construction of anchor-free documents (manifests._construct) gives
exactly what PyYAML's safe constructor gives: the same values, the same errors."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from redistreams import manifests
from redistreams.manifests import Loader, _construct, _documents

ROOT = Path(__file__).parents[2]

TRICKY = [
    "a: 1\nb: 1.5\nc: true\nd: null\ne: ~\nf: 2020-01-02\ng: 2020-01-02T03:04:05Z\nh: 0x1f\ni: 1_000\nj: .inf\n",
    "a: [1, 'x', {b: [c, {d: e}]}]\n'1': quoted\n",
    "1: int key\n",
    "true: bool key\nnull: null key\n",
    "? [a, b]\n: unhashable\n",
    "? {a: b}\n: unhashable\n",
    "<<: {a: 1, b: 2}\nc: 3\n",
    "<<: [{a: 1}, {b: 2}]\n",
    "=: value key\n",
    "s: !!set {a, b}\n",
    "o: !!omap [a: 1, b: 2]\n",
    "p: !!pairs [a: 1, a: 2]\n",
    "b: !!binary aGVsbG8=\n",
    "x: !!str 123\ny: !!int '7'\nz: !!float '1.5'\n",
    "m: !!map {a: 1}\nq: !!seq [1]\n",
    "bad: !!int abc\n",
    "first: !!int abc\nsecond: 2020-13-45\n",
    "nested: {deeper: {bad: 2020-13-45}}\ntop: !!int nope\n",
    "t: !custom thing\n",
    "t: !!python/object:os.system x\n",
    "m: !!str {a: 1}\n",
    "dup: 1\ndup: 2\n",
    "big: " + "9" * 5000 + "\n",
    "",
    "- 1\n- two\n- [3]\n",
    "just a string\n",
    "apiVersion: redistreams.dev/v1alpha1\nkind: Topic\nmetadata: {name: x, labels: {a: 'on', b: yes}}\n",
]


def _both(text: str) -> list[tuple[Any, Any]]:
    """Per document: (direct construction, PyYAML's), each a value or ("error", message)."""

    def attempt(build: Any) -> Any:
        try:
            return build()
        except yaml.YAMLError as exc:
            return ("error", str(exc))

    ours = [attempt(lambda n=node, lo=loader, t=tree: _construct(n, lo, t))
            for node, _, loader, tree in _documents(text)]
    theirs = [attempt(lambda n=node, lo=loader: lo.construct_document(n)) for node, _, loader, _ in _documents(text)]
    return list(zip(ours, theirs, strict=True))


def _same(ours: Any, theirs: Any) -> bool:
    if isinstance(ours, float) and ours != ours:  # nan
        return isinstance(theirs, float) and theirs != theirs
    if isinstance(ours, dict):
        return isinstance(theirs, dict) and list(ours) == list(theirs) and all(_same(ours[k], theirs[k]) for k in ours)
    if isinstance(ours, list):
        return isinstance(theirs, list) and len(ours) == len(theirs) and all(map(_same, ours, theirs))
    return type(ours) is type(theirs) and ours == theirs


@pytest.mark.parametrize("text", TRICKY)
def test_tricky_documents(text: str) -> None:
    pairs = _both(text)
    assert pairs or not text.strip()
    for ours, theirs in pairs:
        assert _same(ours, theirs), (text, ours, theirs)


def test_two_errors_report_pyyaml_s_first() -> None:
    """PyYAML builds nested maps after the top level: its first error is the one reported."""
    [(ours, _)] = _both("nested: {bad: 2020-13-45}\ntop: !!int nope\n")
    assert ours[0] == "error" and '"nope"' in ours[1]


def test_repository_manifests() -> None:
    files = [*ROOT.glob("tests/unit/corpus/**/*.yaml"), *ROOT.glob("examples/**/*.yaml"),
             *ROOT.glob("gitops/**/*.yaml")]
    assert len(files) > 50
    documents = 0
    for file in files:
        if file.name == "invalid-yaml.yaml":
            continue  # does not compose: nothing to construct
        for ours, theirs in _both(file.read_text()):
            documents += 1
            assert _same(ours, theirs), file
    assert documents > 50


def test_anchored_documents_take_pyyaml_s_path() -> None:
    [(node, problem, loader, tree)] = list(_documents("a: &x {b: 1}\nc: *x\n"))
    assert not tree and problem is None
    value = _construct(node, loader, tree)
    assert value == {"a": {"b": 1}, "c": {"b": 1}} and value["a"] is value["c"]


def test_loader_state_does_not_leak_between_documents() -> None:
    """An error in one document leaves nothing behind for the next."""
    loader = Loader()
    loader.add_text("a: !!int x\n---\napiVersion: redistreams.dev/v1alpha1\nkind: Topic\nmetadata: {name: t}\n"
                    "spec: {retention: {maxLength: 5}}\n", "f.yaml")
    result = loader.finish()
    assert result.errors == ['f.yaml: document 1: invalid YAML (line 1, column 4): invalid integer "x" '
                             "(quote it to make it a string)"]
    [loaded] = result.resources
    assert loaded.resource.spec.retention.maxLength == 5  # type: ignore[union-attr]


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20),
    st.dates(), st.datetimes(timezones=st.just(datetime.UTC)),
    st.sampled_from(["yes", "no", "on", "off", "~", "0x10", "0o7", "1e3", "1:20", "<<", "=", "2020-13-45", ""]),
)
_trees = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), inner, max_size=4)),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(_trees, st.booleans())
def test_any_dumped_tree(value: Any, flow: bool) -> None:
    text = yaml.safe_dump(value, default_flow_style=flow, allow_unicode=True)
    for ours, theirs in _both(text):
        assert _same(ours, theirs)


def test_resolver_agrees_with_pyyaml_s() -> None:
    plain = ["", "a", "yes", "No", "ON", "~", "null", "Null", "1", "-1", "+1", "0x1F", "0o17", "0b101", "1_0",
             "1:20", "1.5", ".5", "-.inf", ".NaN", "1e5", "2020-01-02", "2020-01-02 03:04:05", "<<", "=", "!", "&",
             "*", "true", "True", "TRUE", "tRue", "12abc", "-", "."]
    resolver = yaml.resolver.Resolver()
    loader = manifests._Loader("")
    for value in plain:
        for implicit in ((True, False), (False, True), (False, False)):
            assert loader.resolve(yaml.ScalarNode, value, implicit) == \
                resolver.resolve(yaml.ScalarNode, value, implicit), (value, implicit)
    for kind in (yaml.MappingNode, yaml.SequenceNode):
        assert loader.resolve(kind, None, (True, False)) == resolver.resolve(kind, None, (True, False))
