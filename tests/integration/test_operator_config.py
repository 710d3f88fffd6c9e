"""`redistreams operator` where it cannot reach Kubernetes: one line saying what is missing
and exit 2, never a traceback nor minutes of retries."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.net import ReservedPort

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def operator(home: Path, kubeconfig: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    env["HOME"] = str(home)
    if kubeconfig is not None:
        env["KUBECONFIG"] = kubeconfig
    command = [sys.executable, "-m", "redistreams.cli", "operator", "--metrics-port", "0", "--liveness", ""]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=home)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def kubeconfig(path: Path, server: str) -> str:
    path.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "{server}", insecure-skip-tls-verify: true}}}}]
users: [{{name: u, user: {{token: abc}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u}}}}]
current-context: x
""")
    return str(path)


@pytest.mark.skipif(os.path.exists("/var/run/secrets/kubernetes.io/serviceaccount/token"),
                    reason="runs inside a Kubernetes pod: a service account is there")
def test_outside_a_cluster_without_a_kubeconfig(tmp_path: Path) -> None:
    line = one_error_line(operator(tmp_path))
    assert "no Kubernetes configuration" in line and "KUBERNETES_SERVICE_HOST unset" in line
    assert f"no kubeconfig at {tmp_path}/.kube/config" in line and "set KUBECONFIG" in line


@pytest.mark.skipif(os.path.exists("/var/run/secrets/kubernetes.io/serviceaccount/token"),
                    reason="runs inside a Kubernetes pod: a service account is there")
def test_a_kubeconfig_that_is_missing_broken_or_names_an_unreachable_server(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert f"KUBECONFIG names {missing}, which does not exist" in one_error_line(operator(tmp_path, str(missing)))
    broken = tmp_path / "broken.yaml"
    broken.write_text("clusters: [\n")
    assert f"kubeconfig {broken} cannot be used" in one_error_line(operator(tmp_path, str(broken)))
    with ReservedPort() as port:  # nothing listens there, nor starts to meanwhile
        server = f"https://127.0.0.1:{port}"
        line = one_error_line(operator(tmp_path, kubeconfig(tmp_path / "config.yaml", server)))
        assert f"Kubernetes API server {server}" in line and "is unreachable" in line
        # ~/.kube/config is read when KUBECONFIG is unset, and checked the same way.
        (tmp_path / ".kube").mkdir()
        kubeconfig(tmp_path / ".kube" / "config", server)
        assert "is unreachable" in one_error_line(operator(tmp_path))
