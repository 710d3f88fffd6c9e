"""The console-block reader itself (pure): what it takes as commands, exit codes and
expected lines, and that a line the command did not print is caught."""

from __future__ import annotations

from pathlib import Path

from tests.docs.console import commands, missing_lines

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
