"""The console-block reader itself (pure): what it takes as commands, exit codes and
expected lines, and that a line the command did not print is caught."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.docs.console import Command, commands, missing_lines, run

PAGE = """\
Text.

```console
$ redistreams plan -f examples/    # exits 1
+ topic/orders: create stream "orders"
1 to change, 0 in sync
$ redistreams pub orders \\
    hello
```

```sh
not a command
```
"""


def test_reads_commands_exit_codes_and_output(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(PAGE)
    plan, pub = commands(page)
    assert (plan.text, plan.exits, plan.line) == ("redistreams plan -f examples/", 1, 4)
    assert plan.expected == ['+ topic/orders: create stream "orders"', "1 to change, 0 in sync"]
    assert (pub.text, pub.exits, pub.expected) == ("redistreams pub orders hello", 0, [])


def test_expected_lines_match_loosely_but_not_anything() -> None:
    output = "STREAM  LENGTH\norders       1  1795929665986-0\n"
    assert missing_lines(["orders 1 …"], output) == []
    assert missing_lines(["orders 2 …"], output) == ["orders 2 …"]
    assert missing_lines(["orders"], output) == ["orders"]  # whole lines, not substrings


def test_run_fails_on_another_exit_code_or_a_missing_line(tmp_path: Path) -> None:
    env = dict(os.environ)
    assert run(Command("p.md", 1, "echo hello; exit 1", exits=1, expected=["hello"]), env, tmp_path) == "hello\n"
    with pytest.raises(AssertionError, match="exited 3, the page says 0"):
        run(Command("p.md", 1, "exit 3"), env, tmp_path)
    with pytest.raises(AssertionError, match="lines it did not print"):
        run(Command("p.md", 1, "echo hullo", expected=["hello"]), env, tmp_path)
    run(Command("p.md", 1, "export GREETING=hi"), env, tmp_path)
    assert env["GREETING"] == "hi"
