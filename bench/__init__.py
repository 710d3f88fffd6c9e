"""Benchmarks: each prints its figures beside a baseline measured in the same run.

Run them as modules from the repository root, `python -m bench.apply` (what `make bench`
does): the root is then the import root, so they use the test suite's launchers as
`tests.support.*` without editing sys.path, and a bench named like a standard library
module could not shadow it.
"""
