"""``python -m redistreams.cli``, as the tests and the demo run it."""

from . import main

main()
