"""The commands of a documentation page, as a test runs them.

A page's ```` ```console ```` blocks hold commands (lines after ``$ ``, continued by a
trailing ``\\``) and what they print. A trailing ``# exits N`` comment on a command is
its expected exit code (default 0). A printed line is expected among the command's
output lines (stdout and stderr, in any order), with runs of spaces equal to any
whitespace and ``…`` matching anything; a command may print more lines than the page
shows.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

_EXITS = re.compile(r"\s+#\s*exits (\d+)\s*$")


@dataclass
class Command:
    page: str
    line: int
    text: str
    exits: int = 0
    expected: list[str] = field(default_factory=list)

    def where(self) -> str:
        return f"{self.page}:{self.line}: $ {self.text}"


def commands(path: Path) -> list[Command]:
    found: list[Command] = []
    in_block = False
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("```"):
            in_block = not in_block and stripped == "```console"
        elif in_block and line.startswith("$ "):
            start, text = i + 1, line[2:]
            while text.endswith("\\") and i + 1 < len(lines):
                i += 1
                text = text[:-1].rstrip() + " " + lines[i].strip()
            exits = _EXITS.search(text)
            if exits:
                text = text[: exits.start()]
            found.append(Command(path.name, start, text.strip(), int(exits.group(1)) if exits else 0))
        elif in_block and stripped and found:
            found[-1].expected.append(stripped)
        i += 1
    return found


def _pattern(expected: str) -> re.Pattern[str]:
    words = [".*".join(re.escape(part) for part in word.split("…")) for word in expected.split()]
    return re.compile(r"\s+".join(words))


def missing_lines(expected: list[str], output: str) -> list[str]:
    """The expected lines that no output line matches."""
    actual = [line.strip() for line in output.splitlines()]
    return [e for e in expected if not any(_pattern(e).fullmatch(a) for a in actual)]


def run(command: Command, env: dict[str, str], cwd: Path, timeout: float = 180) -> str:
    """Runs one command with bash (``export NAME=VALUE`` updates ``env``); asserts its exit
    code and printed lines; returns its output."""
    if command.text.startswith("export "):
        for assignment in shlex.split(command.text[len("export "):]):
            name, _, value = assignment.partition("=")
            env[name] = os.path.expandvars(value)
        return ""
    proc = subprocess.run(["bash", "-c", command.text], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    output = proc.stdout + proc.stderr
    assert proc.returncode == command.exits, \
        f"{command.where()}\nexited {proc.returncode}, the page says {command.exits}:\n{output}"
    missing = missing_lines(command.expected, output)
    assert not missing, f"{command.where()}\nthe page shows lines it did not print: {missing}\nit printed:\n{output}"
    return output
