"""`make run` (`python -m hack.demo` from the repository root): the seed's warning
scenario, solved, on a throwaway local Redis.

1. start redis-server on a free loopback port;
2. `redistreams apply -f examples/` provisions streams and groups;
3. a publisher (redistreams.pubsub) sends before any consumer runs, in the Go driver's format;
4. a group created the seed README's way, with `$` after publishing, sees nothing;
5. the consumer of the provisioned group, started last, still receives every message;
6. `redistreams status` shows the result;
7. the operator: a real kube-apiserver and etcd on loopback, the CRDs, the operator,
   `kubectl apply -f examples/`, and the resources becoming Ready.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from redistreams.pubsub import Message, sync
from tests.support.controlplane import ControlPlane  # the test suite's launchers
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent

TOPIC = "topics/1"
GROUP = "group1"


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def redistreams(url: str, *args: str) -> None:
    print("$ redistreams " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "redistreams.cli", "--redis-url", url, *args], check=False, cwd=ROOT)


def main() -> None:
    server = RedisServer().start()
    try:
        url = server.url
        step(f"local redis-server on {url}")
        step("provision the examples before any publisher runs")
        redistreams(url, "apply", "-f", str(ROOT / "examples"))

        r = server.client(decode_responses=False)
        step(f"a publisher sends 3 messages to {TOPIC} (redistreams.pubsub, the Go driver's format); "
             "no consumer is running yet")
        with sync.open_topic(f"redis://{TOPIC}", redis_url=url) as topic:
            for i in range(3):
                print(f"   sent {topic.send(Message(f'Hello, World! #{i}'.encode(), {'n': str(i)}))}")

        step("without provisioning: a group created now with $ (as the seed README shows) sees nothing")
        r.xgroup_create(TOPIC, "created-too-late", "$")
        late = r.xreadgroup("created-too-late", "cons1", {TOPIC: ">"}, count=10)
        print(f"   created-too-late received {sum(len(entries) for _, entries in late)} messages")

        step(f"with provisioning: the consumer of {GROUP} starts last and receives every message")
        # Opens like the Go driver (XGROUP CREATE, BUSYGROUP ignored), then reads and acks.
        with sync.open_subscription(f"redis://{GROUP}?topic={TOPIC}&consumer=cons1", redis_url=url) as sub:
            for message in sub.receive_batch(10, timeout=2):
                print(f"   {GROUP} got {message.id}: {message.body.decode()} metadata={message.metadata}")
                message.ack()
            sub.flush()
        print(f"   the first entry as stored, what a Go service reads: {r.xrange(TOPIC, count=1)[0][1]}")

        step("status")
        redistreams(url, "status")
    finally:
        server.close()
    print("\nstopped the local redis-server", flush=True)
    operator_demo()


def kubectl(kubeconfig: str, *args: str, check: bool = True) -> str:
    print("$ kubectl " + " ".join(args), flush=True)
    out = subprocess.run(["kubectl", "--kubeconfig", kubeconfig, *args], capture_output=True, text=True, check=check)
    print(out.stdout + out.stderr, end="", flush=True)
    return out.stdout


def operator_demo() -> None:
    if not shutil.which("kubectl"):
        print("\n(kubectl not found: skipping the operator part)")
        return
    step("the operator: etcd + kube-apiserver on loopback (built once by hack/control-plane.sh)")
    redis = RedisServer().start()
    with ControlPlane() as cp, tempfile.TemporaryDirectory() as tmp:
        print(f"   kube-apiserver {cp.version} ready in {cp.startup_seconds:.1f}s at {cp.server}")
        kubeconfig = cp.kubeconfig_path
        kubectl(kubeconfig, "apply", "--server-side", "-f", str(ROOT / "crds"))
        kubectl(kubeconfig, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        log = open(Path(tmp) / "operator.log", "w")
        operator = subprocess.Popen(
            [sys.executable, "-m", "redistreams.cli", "operator", "--redis-url", redis.url, "--liveness", "",
             "--metrics-port", "0", "--log-format", "plain"],
            env={**os.environ, "KUBECONFIG": kubeconfig}, stdout=log, stderr=subprocess.STDOUT)
        try:
            step(f"operator running against {redis.url}; apply examples/")
            kubectl(kubeconfig, "apply", "-f", str(ROOT / "examples"))
            kubectl(kubeconfig, "wait", "--for=condition=Ready", "topics,consumergroups", "--all", "--timeout=120s")
            kubectl(kubeconfig, "get", "redistreams")
            step("the same streams and groups, seen from Redis")
            redistreams(redis.url, "status")
            time.sleep(0.5)
        finally:
            operator.terminate()
            operator.wait(30)
            log.close()
            redis.close()
    print("\nstopped the operator, the control plane and redis-server", flush=True)


if __name__ == "__main__":
    main()
