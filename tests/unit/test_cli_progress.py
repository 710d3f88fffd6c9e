"""progress() leaves rich unimported only where rich would see no terminal anyway."""

from __future__ import annotations

import io
import itertools
import sys

import pytest
from rich.console import Console

from redistreams.cli import output


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("tty", "compatible", "force"), list(itertools.product(
    (False, True), (None, "", "0", "1", "x"), (None, "", "0", "1"))))
def test_agrees_with_rich(monkeypatch: pytest.MonkeyPatch, tty: bool, compatible: str | None,
                          force: str | None) -> None:
    for name, value in (("TTY_COMPATIBLE", compatible), ("FORCE_COLOR", force)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    stderr = _Tty() if tty else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    rich_says = Console(stderr=True).is_terminal
    assert output._may_be_terminal() or not rich_says
    assert output._may_be_terminal() == (tty or compatible == "1" or bool(force))


def test_closed_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = io.StringIO()
    stderr.close()
    monkeypatch.setattr(sys, "stderr", stderr)
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    assert not output._may_be_terminal()
    assert output.progress("x").__class__.__name__ == "nullcontext"
