"""Tooling. hack/demo.py runs as `python -m hack.demo` from the repository root (`make
run`), so it imports the test suite's launchers as `tests.support.*`."""
