"""e2e tests: a real kube-apiserver + etcd (see controlplane.py), or an existing
cluster with REDISTREAMS_E2E_USE_KUBECONFIG=1 and KUBECONFIG set."""

import sys
from pathlib import Path
from typing import Iterator

import pytest

# Make `import controlplane` work under any pytest import mode.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "e2e: needs a real Kubernetes API server (built by hack/control-plane.sh on first use)",
    )


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    """A cluster with the generated CRDs installed (modules may define their own)."""
    from controlplane import cluster_for_tests, install_crds
    from redistreams.crds import generate

    with cluster_for_tests() as (cluster, _):
        install_crds(cluster, generate())
        yield cluster


@pytest.fixture(scope="module")
def redis() -> Iterator[object]:
    """One redis-server for the module."""
    from redis_server import RedisServer

    server = RedisServer().start()
    yield server
    server.close()
