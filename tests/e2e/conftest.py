"""e2e tests: a real kube-apiserver + etcd (see controlplane.py), or an existing
cluster with REDISTREAMS_E2E_USE_KUBECONFIG=1 and KUBECONFIG set."""

import sys
from pathlib import Path

# Make `import controlplane` work under any pytest import mode.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "e2e: needs a real Kubernetes API server (built by hack/control-plane.sh on first use)",
    )
