"""e2e tests: a real kube-apiserver + etcd (see tests/support/controlplane.py), or an
existing cluster with REDISTREAMS_E2E_USE_KUBECONFIG=1 and KUBECONFIG set.

``cluster`` and ``redis`` are per module; ``operator`` runs the operator in a thread for
the module under the chart's ClusterRole, ``ns`` gives each test a fresh namespace. A
module that needs another operator configuration defines its own ``operator`` (and
``ns``), which take precedence over these."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.controlplane import Cluster
from tests.support.kube import new_namespace, run_operator
from tests.support.redis_server import RedisServer, acl_from_env


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "e2e: needs a real Kubernetes API server (built by hack/control-plane.sh on first use)",
    )


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    """A cluster with the generated CRDs installed (modules may define their own)."""
    from redistreams.crds import generate
    from tests.support.controlplane import cluster_for_tests, install_crds

    with cluster_for_tests() as (cluster, _):
        install_crds(cluster, generate())
        yield cluster


@pytest.fixture(scope="module")
def redis() -> Iterator[object]:
    """One redis-server for the module (``url``: the documented-rules user under
    REDISTREAMS_TEST_ACL, see tests/support/redis_server.py)."""
    server = RedisServer(acl=acl_from_env()).start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def operator(cluster: Cluster, redis: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    from redistreams.controller.runtime import OperatorConfig

    config = OperatorConfig(cluster_id="e2e", redis_url=redis.url, resync_interval=1.5, status_interval=1.0,
                            retry_delay=1.0)
    yield from run_operator(cluster, tmp_path_factory, config)


@pytest.fixture
def ns(cluster: Cluster, operator: None) -> str:
    return new_namespace(cluster, "t")
