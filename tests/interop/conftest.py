"""The real Go driver (github.com/covrom/redispubsub, through gocloud.dev/pubsub) as a
subprocess: ``hack/go-interop.sh`` builds tests/interop/goclient once into a cache
outside the repository, the ``go_client`` fixture runs it with REDIS_URL set (the
wrapper: tests/support/goclient.py). No Go toolchain: the interop tests are skipped."""

from __future__ import annotations

import pytest

from tests.support.goclient import GoBuildError, GoClient, build_go_client


@pytest.fixture(scope="session")
def go_client() -> GoClient:
    try:
        return GoClient(build_go_client())
    except GoBuildError as exc:
        if exc.no_toolchain:
            pytest.skip(str(exc))
        pytest.fail(str(exc), pytrace=False)
