"""kubectl's label selector syntax (-l), parsed and matched without Redis."""

from __future__ import annotations

import pytest

from redistreams.cli.selector import parse

LABELS = {"app": "shop", "tier": "front", "example.com/team": "a", "empty": ""}


@pytest.mark.parametrize(("text", "expected"), [
    ("app=shop", True), ("app==shop", True), ("app = shop", True), ("app=ops", False),
    ("app!=ops", True), ("app!=shop", False), ("missing!=x", True),  # != holds without the label
    ("tier in (front,back)", True), ("tier in ( back , side )", False), ("missing in (x)", False),
    ("tier notin (back)", True), ("tier notin (front)", False), ("missing notin (x)", True),
    ("app", True), ("missing", False), ("!missing", True), ("!app", False), ("! app", False),
    ("example.com/team=a", True), ("empty=", True), ("empty", True),
    ("app=shop,tier in (front, back),!legacy", True), ("app=shop,tier=back", False),
])
def test_matches(text: str, expected: bool) -> None:
    assert parse(text).matches(LABELS) is expected


@pytest.mark.parametrize(("text", "why"), [
    ("", "empty requirement"), ("app=shop,", "empty requirement"), ("app in (a", 'unbalanced "("'),
    ("app in a)", 'unbalanced ")"'), ("app=sh op", 'cannot parse "app=sh op"'), ("=x", 'cannot parse "=x"'),
    ("app in ()", 'bad value list in "app in ()"'), ("app in (a,,b)", "bad value list"),
    ("app>1", 'cannot parse "app>1"'), ("-app=x", "cannot parse"), ("app=" + "v" * 64, "cannot parse"),
])
def test_invalid_selectors_name_the_part(text: str, why: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse(text)
    assert str(raised.value).startswith(f'invalid selector "{text}": ')
    assert why in str(raised.value)
