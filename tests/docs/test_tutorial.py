"""Every command of docs/tutorial.md run as written: `helm install` of the chart into a real
kube-apiserver (tests/support/controlplane.py) with the real helm and kubectl (built by
hack/helm.sh and hack/kubectl.sh), the examples applied and waited for, the Go service
built from docs/tutorial/go with the real Go driver and the Python service, against a real
redis-server.

The local control plane has no kubelet, so the Deployment `helm install` creates never
runs a pod. Right after `helm install` the test does what the kubelet would: it runs the
operator as a process with the Deployment's own arguments, the Redis URL from the Secret
the chart references, and the chart's ServiceAccount token (so the chart's RBAC is what
the operator has). The rest of the page then runs unchanged: `kubectl wait` sees the
operator's Ready conditions, and the Go and Python services exchange messages through the
groups it created.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docs.console import commands, run
from tests.support.controlplane import Cluster, cluster_for_tests
from tests.support.goclient import GoBuildError, build_go_client
from tests.support.kube import wait_allowed
from tests.support.net import free_port
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
RELEASE_NS, RELEASE = "redistreams-system", "redistreams"


def _tool(script: str, name: str) -> str:
    out = subprocess.run([str(ROOT / "hack" / script), "--print-env"], check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1].split("=", 1)[1]


def _go() -> str:
    try:
        build_go_client()  # the interop tests' build: the module cache and the driver's packages, warm
    except GoBuildError as exc:
        if exc.no_toolchain:
            pytest.skip(str(exc))
        raise
    found = os.environ.get("GO") or shutil.which("go") or "/usr/local/go/bin/go"
    return found


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with cluster_for_tests() as (cluster, control_plane):
        if control_plane is None:
            pytest.skip("the tutorial creates its namespaces and release by name: a fresh local control plane only")
        yield cluster


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The repository as the page uses it; docs/tutorial copied, so the build stays out of the tree."""
    for name in ("charts", "examples"):
        (tmp_path / name).symlink_to(ROOT / name)
    shutil.copytree(ROOT / "docs" / "tutorial", tmp_path / "docs" / "tutorial")
    return tmp_path


def _start_operator(cluster: Cluster, tmp_path: Path) -> subprocess.Popen[bytes]:
    deployment = cluster.get(f"/apis/apps/v1/namespaces/{RELEASE_NS}/deployments/{RELEASE}").json
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = [a for a in container["args"] if not a.startswith(("--liveness=", "--metrics-port="))]
    args += ["--liveness", "", "--metrics-port", str(free_port())]
    (ref,) = [e["valueFrom"]["secretKeyRef"] for e in container["env"] if e["name"] == "REDIS_URL"]
    secret = cluster.get(f"/api/v1/namespaces/{RELEASE_NS}/secrets/{ref['name']}").json
    token = cluster.create_token(RELEASE_NS, pod["serviceAccountName"])
    # The chart's bindings, seen by the RBAC authorizer (an informer) before the operator's
    # first request: a 403 there would be logged and fail the "Forbidden" check.
    wait_allowed(cluster, token, "watch", "topics", "redistreams.dev")
    wait_allowed(cluster, token, "update", "leases", "coordination.k8s.io", namespace=RELEASE_NS)
    env = {**os.environ, "KUBECONFIG": cluster.kubeconfig_for_token(token, tmp_path / "sa"),
           "REDIS_URL": base64.b64decode(secret["data"][ref["key"]]).decode(),
           "POD_NAMESPACE": RELEASE_NS, "POD_NAME": "redistreams-docs-test"}
    log = open(tmp_path / "operator.log", "wb")  # noqa: SIM115  closed with the process
    return subprocess.Popen([sys.executable, "-m", "redistreams.cli", *args], env=env, stdout=log,
                            stderr=subprocess.STDOUT)


def test_tutorial(cluster: Cluster, redis: RedisServer, workdir: Path, tmp_path: Path) -> None:
    page = commands(ROOT / "docs" / "tutorial.md")
    texts = [c.text for c in page]
    assert any(t.startswith("helm install ") for t in texts) and any(t.startswith("kubectl wait ") for t in texts)
    go = _go()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, target in {"helm": _tool("helm.sh", "HELM"), "kubectl": _tool("kubectl.sh", "KUBECTL"), "go": go}.items():
        (bin_dir / name).symlink_to(target)
    venv_bin = Path(sys.executable).parent  # python and redistreams, as after `pip install .`
    kubeconfig = cluster.kubeconfig_path or cluster.kubeconfig_for_token(cluster.token or "", tmp_path / "admin")
    env = {**os.environ, "PATH": os.pathsep.join([str(bin_dir), str(venv_bin), os.environ["PATH"]]),
           "KUBECONFIG": kubeconfig, "REDIS_URL": redis.url,
           # as hack/go-build.sh builds: no toolchain download, the committed go.sum
           "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly", "CGO_ENABLED": "0",
           "GONOSUMDB": "github.com/covrom/redispubsub"}
    operator = None
    outputs: dict[str, str] = {}
    try:
        for command in page:
            outputs[command.text] = run(command, env, workdir, timeout=600 if command.text.startswith("go ") else 180)
            if command.text.startswith("helm install "):
                operator = _start_operator(cluster, tmp_path)
        # Each language received what the other published, in order, once.
        sent = [f'{{"order": {i}, "from": "go"}} from orders-go' for i in (1, 2, 3)] + \
               [f'{{"order": {i}, "from": "python"}} from orders-py' for i in (1, 2)]
        for consume in ("python docs/tutorial/python/service.py consume billing 5",
                        "docs/tutorial/go/orders-go consume audit 5"):
            received = [line.removeprefix("received ") for line in outputs[consume].splitlines()
                        if line.startswith("received ")]
            assert received == sent, (consume, received)
        # Go's three and Python's two reached both groups, acknowledged.
        client = redis.client()
        groups = {g["name"]: g for g in client.xinfo_groups("orders")}
        assert groups["billing"]["pending"] == 0 and groups["audit"]["pending"] == 0
        assert groups["billing"]["lag"] == 0 and groups["audit"]["lag"] == 0
        assert client.xlen("orders") == 5
    finally:
        if operator is not None:
            operator.terminate()
            operator.wait(30)
    assert b"Forbidden" not in (tmp_path / "operator.log").read_bytes()
