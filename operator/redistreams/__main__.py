"""``python -m redistreams``: the ``redistreams`` command (as ``python -m redistreams.cli``)."""

from .cli import main

main()
