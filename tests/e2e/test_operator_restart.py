"""Killing the operator in the middle of a burst and starting it again converges (its own
module: the operator of test_operator.py is stopped by then)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.controlplane import Cluster, wait_for
from tests.support.kube import condition, create, get, new_namespace, wait_ready
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.e2e


def _operator(redis: RedisServer, ns: str, kubeconfig: str, log) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "redistreams.cli", "operator", "--namespace", ns, "--redis-url", redis.url,
         "--liveness", "", "--metrics-port", "0", "--resync-interval", "2s", "--status-interval", "1s",
         "--cluster-id", "e2e"],
        env={**os.environ, "KUBECONFIG": kubeconfig}, stdout=log, stderr=subprocess.STDOUT)


def test_operator_killed_mid_reconcile_converges(cluster: Cluster, redis: RedisServer, tmp_path) -> None:
    """SIGKILL while a burst is half done; a new process finishes the job: every stream
    and group exists once, every object Ready, ownership records consistent."""
    ns = new_namespace(cluster, "r")
    kubeconfig = cluster.kubeconfig_path or cluster.kubeconfig_for_token(cluster.token or "", tmp_path / "config")
    total = 60
    with open(tmp_path / "operator.log", "wb") as log:
        first = _operator(redis, ns, kubeconfig, log)
        try:
            for i in range(total):
                create(cluster, ns, "Topic", f"t{i}", {"streamName": f"{ns}/t{i}"})
            wait_for(lambda: condition(get(cluster, ns, "Topic", "t0")).get("status") == "True", "first Ready", 60)
            for i in range(total):
                create(cluster, ns, "ConsumerGroup", f"g{i}", {"topicRef": {"name": f"t{i}"}})
        finally:
            first.kill()  # the groups were just created: most are not handled yet
            first.wait(10)
        ready_at_kill = sum(
            1 for kind, prefix in (("Topic", "t"), ("ConsumerGroup", "g")) for i in range(total)
            if condition(get(cluster, ns, kind, f"{prefix}{i}")).get("status") == "True")
        second = _operator(redis, ns, kubeconfig, log)
        try:
            for i in range(total):
                wait_ready(cluster, ns, "ConsumerGroup", f"g{i}", timeout=90)
                wait_ready(cluster, ns, "Topic", f"t{i}", timeout=30)
        finally:
            second.terminate()
            second.wait(30)
    r = redis.client()
    assert all([g["name"] for g in r.xinfo_groups(f"{ns}/t{i}")] == [f"g{i}"] for i in range(total))
    owners = [k for k in r.hkeys("redistreams:owners") if f'"{ns}/' in k]
    assert len(owners) == 2 * total
    assert 0 < ready_at_kill < 2 * total, ready_at_kill  # the kill really landed mid-way
