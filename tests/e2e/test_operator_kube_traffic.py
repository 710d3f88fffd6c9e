"""What the operator asks of the API server: connection Secrets come from a watch (never a
GET per pass) and Events are aggregated, posted many at a time. Counted on the real API
server's own apiserver_request_total, with a resync far longer than the tests, so only the
Secret watch can make a rotation take effect."""

from __future__ import annotations

import base64
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.controlplane import Cluster, wait_for
from tests.support.kube import (
    API,
    PLURALS,
    create,
    get,
    new_namespace,
    operator_kubeconfig,
    run_operator,
    wait_allowed,
    wait_ready,
)
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.e2e

RESYNC = 600.0  # longer than the module: nothing here waits for a resync


@pytest.fixture(scope="module")
def operator(cluster: Cluster, redis: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    from redistreams.controller.runtime import OperatorConfig

    # No periodic pass during the module (observe_interval would make it run that often):
    # reconciles read the Secret through the same cache the pass does.
    config = OperatorConfig(cluster_id="e2e", redis_url=redis.url, resync_interval=RESYNC, status_interval=1.0,
                            retry_delay=1.0, observe_interval=0)
    yield from run_operator(cluster, tmp_path_factory, config)


@pytest.fixture
def ns(cluster: Cluster, operator: None) -> str:
    return new_namespace(cluster, "kt")


def requests(cluster: Cluster, resource: str, verb: str, group: str = "", subresource: str = "",
             code: str | None = None) -> int:
    """Requests the API server has served for this resource and verb (any answer, or only
    those answered with HTTP ``code``)."""
    total = 0
    for line in cluster.get("/metrics").text.splitlines():
        if line.startswith("apiserver_request_total{") and f'resource="{resource}"' in line \
                and f'verb="{verb}"' in line and f'group="{group}"' in line \
                and f'subresource="{subresource}"' in line and (code is None or f'code="{code}"' in line):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def settled(count: Callable[[], int], quiet: float = 3.0) -> int:
    """The count once it has stayed the same for ``quiet`` seconds."""
    value, since = count(), time.monotonic()
    while time.monotonic() - since < quiet:
        time.sleep(0.5)
        if (now := count()) != value:
            value, since = now, time.monotonic()
    return value


def put_secret(cluster: Cluster, ns: str, name: str, url: str) -> None:
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns},
            "data": {"url": base64.b64encode(url.encode()).decode()}}
    # No GET to see whether it exists: the tests count the GETs of Secrets.
    if cluster.post(f"/api/v1/namespaces/{ns}/secrets", body).status == 409:
        cluster.request("PUT", f"/api/v1/namespaces/{ns}/secrets/{name}", body).raise_for_status()


def test_a_rotated_secret_takes_effect_from_the_watch(cluster: Cluster, ns: str, redis: RedisServer) -> None:
    other = RedisServer().start()
    try:
        put_secret(cluster, ns, "conn", redis.url)
        create(cluster, ns, "Topic", "t", {"streamName": f"{ns}/t", "connection": {"secretRef": {"name": "conn"}}})
        create(cluster, ns, "ConsumerGroup", "g", {"topicRef": {"name": "t"}})
        wait_ready(cluster, ns, "ConsumerGroup", "g", timeout=60)
        assert [g["name"] for g in redis.client().xinfo_groups(f"{ns}/t")] == ["g"]

        # Three reconciles (spec changes), each reading the connection: no GET.
        gets = requests(cluster, "secrets", "GET")
        for length in (100, 200, 300):
            cluster.request("PATCH", f"{API}/namespaces/{ns}/topics/t", {"spec": {"retention": {"maxLength": length}}},
                            content_type="application/merge-patch+json").raise_for_status()
            wait_for(lambda: get(cluster, ns, "Topic", "t")["status"].get("observedGeneration")
                     == get(cluster, ns, "Topic", "t")["metadata"]["generation"], "the change reconciled", 60)
        time.sleep(3)
        assert requests(cluster, "secrets", "GET") == gets

        # Rotated: the stream and its group are made on the new server at once (the resync
        # is minutes away), and the value came with the watch, not from another GET.
        put_secret(cluster, ns, "conn", other.url)
        wait_for(lambda: other.client().exists(f"{ns}/t")
                 and [g["name"] for g in other.client().xinfo_groups(f"{ns}/t")] == ["g"],
                 "the Topic and its group on the rotated URL", 60)
        assert requests(cluster, "secrets", "GET") == gets

        # Deleted: noticed; created again: Ready again.
        cluster.delete(f"/api/v1/namespaces/{ns}/secrets/conn").raise_for_status()
        wait_ready(cluster, ns, "Topic", "t", status="False", reason="SecretNotFound", timeout=60)
        put_secret(cluster, ns, "conn", other.url)
        wait_ready(cluster, ns, "Topic", "t", timeout=60)
        # Its group too, before `other` stops: a reconcile of it still running then would fail
        # and post Warnings into the next test's Event counts.
        wait_ready(cluster, ns, "ConsumerGroup", "g", timeout=60)
    finally:
        other.close()


def test_a_burst_gets_one_event_per_object_and_reason(cluster: Cluster, ns: str) -> None:
    topics = 100
    items = [("Topic", f"t{i}", {"streamName": f"{ns}/t{i}"}) for i in range(topics)]
    items += [("ConsumerGroup", f"t{i}-g{j}", {"topicRef": {"name": f"t{i}"}, "groupName": f"g{j}"})
              for i in range(topics) for j in range(2)]
    posts = settled(lambda: requests(cluster, "events", "POST"))  # the Events of earlier tests all out
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda item: create(cluster, ns, *item), items))

    def ready() -> int:
        count = 0
        for kind in ("Topic", "ConsumerGroup"):
            for item in cluster.get(f"{API}/namespaces/{ns}/{PLURALS[kind]}").json["items"]:
                count += any(c["type"] == "Ready" and c["status"] == "True"
                             for c in (item.get("status") or {}).get("conditions", []))
        return count

    wait_for(lambda: ready() == len(items), "every object Ready", 120, interval=0.5)
    last_ready = time.monotonic()

    def created() -> set[str]:
        items = cluster.get(f"/api/v1/namespaces/{ns}/events").json["items"]
        return {e["involvedObject"]["name"] for e in items if e["reason"] == "Created"}

    wait_for(lambda: len(created()) == len(items), "a Created event for every object", 60, interval=0.2)
    # Soon after the last Ready (a 1 s lull, then 24 posts at a time: ~2 s here), far from the
    # 120 s a routine Event may wait during a burst; the margin is for a loaded machine.
    assert time.monotonic() - last_ready <= 30
    events = cluster.get(f"/api/v1/namespaces/{ns}/events").json["items"]
    per_object = Counter((e["involvedObject"]["name"], e["reason"]) for e in events)
    assert [k for k, n in per_object.items() if n > 1] == []
    assert all(e["source"]["component"] == "redistreams-operator" and e["count"] >= 1 for e in events)
    assert requests(cluster, "events", "POST") - posts == len(events)


def test_a_delete_object_costs_its_finalizer_and_one_status_write(cluster: Cluster, ns: str) -> None:
    """deletionPolicy Delete: kopf's finalizer PATCH and our status PATCH. kopf's diff-base
    annotation was a third write per object, and its finalizer PATCH crossing our status
    write made a reconcile write the status twice."""
    topics = 15
    items = [("Topic", f"t{i}", {"streamName": f"{ns}/t{i}", "deletionPolicy": "Delete"}) for i in range(topics)]
    items += [("ConsumerGroup", f"t{i}-g{j}", {"topicRef": {"name": f"t{i}"}, "groupName": f"g{j}",
                                               "deletionPolicy": "Delete"})
              for i in range(topics) for j in range(2)]

    def patches(subresource: str, code: str | None = None) -> int:
        return sum(requests(cluster, plural, "PATCH", "redistreams.dev", subresource, code)
                   for plural in ("topics", "consumergroups"))

    main, refused = settled(lambda: patches("")), settled(lambda: patches("", "422"))
    status = settled(lambda: patches("status"))
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda item: create(cluster, ns, *item), items))
    for kind, name, _ in items:
        body = wait_ready(cluster, ns, kind, name, timeout=60)
        assert "redistreams.dev/finalizer" in body["metadata"]["finalizers"]
        assert not any(a.endswith("last-handled-configuration") for a in body["metadata"].get("annotations") or {})
    # A finalizer PATCH refused on a conflict (kopf's JSON patch tests the resourceVersion, 422
    # when our status write crossed it) is sent again; how many cross depends on timing (more
    # on a loaded machine), so the refused ones are counted apart: one accepted PATCH per
    # object, the finalizer's.
    sent, conflicts = settled(lambda: patches("")) - main, settled(lambda: patches("", "422")) - refused
    print(f"finalizer PATCHes: {sent} sent, {conflicts} refused on a conflict, {len(items)} objects")
    assert sent - conflicts <= len(items) and conflicts <= len(items), (sent, conflicts)
    assert settled(lambda: patches("status")) - status <= len(items) * 1.1


def test_repeats_raise_the_count_of_one_event(cluster: Cluster, ns: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The recorder itself, on the real API server: repeats within a burst are one Event with
    a count; a repeat after it was posted is a PATCH of that Event, not a new one."""
    import asyncio

    import kopf

    from redistreams.controller import events as events_module
    from redistreams.controller.kube import KubeAPI

    monkeypatch.setenv("KUBECONFIG", operator_kubeconfig(cluster, tmp_path / "config"))  # the chart's rules
    # Paused by its annotation (a spec field "paused" does not exist: it was pruned, and the
    # module's operator reconciled the Topic and posted a Created Event among the counted ones).
    topic = create(cluster, ns, "Topic", "r", {"streamName": f"{ns}/r"},
                   annotations={"redistreams.dev/paused": "true"})
    patches = requests(cluster, "events", "PATCH")

    async def record() -> None:
        info = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings())
        assert info is not None
        kube = KubeAPI(info)
        recorder = events_module.EventRecorder(kube, lambda: 0.0)
        for _ in range(5):
            recorder.record(topic, "Warning", "RedisUnavailable", "Redis at 127.0.0.1:1 refused the connection")
        recorder.record(topic, "Normal", "DriftRepaired", "stream re-created")
        await wait_posted(recorder)
        recorder.record(topic, "Warning", "RedisUnavailable", "Redis at 127.0.0.1:1 refused the connection")
        await wait_posted(recorder)
        await recorder.close()
        await kube.close()

    async def wait_posted(recorder: events_module.EventRecorder) -> None:
        while recorder.pending() or recorder._task is not None:  # noqa: SLF001 - the test waits for the posts
            await asyncio.sleep(0.05)

    asyncio.run(record())
    items = cluster.get(f"/api/v1/namespaces/{ns}/events").json["items"]
    counts = {e["reason"]: e["count"] for e in items}
    assert len(items) == 2, items
    assert counts == {"RedisUnavailable": 6, "DriftRepaired": 1}
    assert requests(cluster, "events", "PATCH") - patches == 1
    unavailable = next(e for e in items if e["reason"] == "RedisUnavailable")
    assert unavailable["type"] == "Warning" and unavailable["involvedObject"]["uid"] == topic["metadata"]["uid"]


def test_chart_rules_allow_watching_one_secret_but_not_listing(cluster: Cluster, ns: str, tmp_path: Path) -> None:
    token = Cluster.from_kubeconfig(operator_kubeconfig(cluster, tmp_path / "config")).token
    watch = f"/api/v1/namespaces/{ns}/secrets?watch=1&fieldSelector=metadata.name%3Dconn&timeoutSeconds=1"
    assert cluster.request("GET", watch, token=token, timeout=10).status == 200
    assert cluster.request("GET", f"/api/v1/namespaces/{ns}/secrets", token=token).status == 403  # never list


def test_without_the_watch_verb_secrets_are_read_on_every_pass(cluster: Cluster, ns: str, tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """An older chart's Role (get only): the cache says so once and reads every time, so a
    rotation still takes effect; nothing fails."""
    import asyncio
    import uuid

    import kopf

    from redistreams.controller.kube import KubeAPI
    from redistreams.controller.secrets import SecretCache

    name = f"get-only-{uuid.uuid4().hex[:6]}"
    cluster.post(f"/api/v1/namespaces/{ns}/serviceaccounts",
                 {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}).raise_for_status()
    cluster.post(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": name},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}).raise_for_status()
    cluster.post(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]}).raise_for_status()
    token = cluster.create_token(ns, name, expiration_seconds=600)
    wait_allowed(cluster, token, "get", "secrets", namespace=ns)  # the binding just made, seen by RBAC
    config = cluster.kubeconfig_for_token(token, tmp_path / "c")
    put_secret(cluster, ns, "conn", "redis://first:6379/0")

    async def read_twice() -> tuple[bytes, bytes, bool]:
        info = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings())
        assert info is not None
        kube = KubeAPI(info)
        cache = SecretCache(kube)
        first = await cache.data(ns, "conn")
        # The watch is refused in the background; wait until the cache has given up on it.
        for _ in range(600):
            if not cache.watching:
                break
            await asyncio.sleep(0.1)
        put_secret(cluster, ns, "conn", "redis://second:6379/0")
        second = await cache.data(ns, "conn")
        await cache.close()
        await kube.close()
        assert first is not None and second is not None
        return first["url"], second["url"], cache.watching

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KUBECONFIG", config)
        first, second, watching = asyncio.run(read_twice())
    assert (first, second, watching) == (b"redis://first:6379/0", b"redis://second:6379/0", False)
    assert any("cannot watch Secrets (403)" in r.getMessage() for r in caplog.records)
