"""The generated CRDs on a real kube-apiserver: it accepts and rejects what the CLI does.

The CLI validates manifests with the pydantic model; the CRDs are generated from the
same model. Here every single-document case of the manifest corpus, the examples and
a list of edge cases go to both, and both must agree: accepted by both, or rejected by
both naming the same field. Objects are created with ``fieldValidation=Strict`` (what
``kubectl apply`` sends by default since 1.27, ``--validate=strict``): without it the
API server drops unknown fields with a warning instead of refusing them.

Also: immutability rules on update, schema defaults, the initial status and the
printer columns.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from redistreams.crds import generate
from redistreams.model import RESOURCE_MODELS
from redistreams.model_status import ConsumerGroupStatus, TopicStatus
from tests.support.controlplane import ApiResponse, Cluster, ControlPlane, cluster_for_tests, install_crds

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "unit" / "corpus"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
API = "redistreams.dev/v1alpha1"
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
PLURALS = {"Topic": "topics", "ConsumerGroup": "consumergroups"}

# Corpus files whose error is not a property of one document, so no schema can catch it.
SKIPPED = {
    "duplicate-topic.yaml": "cross-resource: two Topics with one name in the same set of files",
    "shared-group.yaml": "cross-resource: two ConsumerGroups share one Redis group",
    "shared-stream.yaml": "cross-resource: two Topics share one stream",
    "invalid-yaml.yaml": "not YAML: nothing reaches the API server",
    "not-a-mapping.yaml": "a YAML list, not an object",
    "wrong-version.yaml": "apiVersion redistreams.dev/v1 is not served (a 404, not a schema error)",
    "unknown-kind.yaml": "kind Stream does not exist in redistreams.dev (a 404, not a schema error)",
    # Near misses of our apiVersion: the CLI refuses them; to the API server they are
    # another (unserved) group, no object of ours.
    "apiversion-group-typo.yaml": "apiVersion redistream.dev/v1alpha1 is another group (a 404, not a schema error)",
    "apiversion-missing.yaml": "no apiVersion: no request path to send it to",
    "apiversion-no-group.yaml": "apiVersion v1alpha1 names the core group, which has no Topic (a 404)",
    # Checked separately below (test_invalid_namespace_is_refused): the namespace of a
    # namespaced object comes from the request path, not from the schema.
    "namespace-invalid.yaml": "namespace comes from the request path; see test_invalid_namespace_is_refused",
}
BAD = sorted((CORPUS / "bad").glob("*.yaml"))
CHECKED = [p for p in BAD if p.name not in SKIPPED]

# Server-managed metadata that a create request must not carry (exported manifests have it).
SERVER_MANAGED = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields")


# -- fixtures ----------------------------------------------------------------------


def _crd_conditions(cluster: Cluster, name: str) -> dict[str, dict[str, Any]]:
    body = cluster.get(f"{CRD_PATH}/{name}").raise_for_status().json
    return {c["type"]: c for c in body.get("status", {}).get("conditions", [])}


@pytest.fixture(scope="module")
def env() -> Iterator[tuple[Cluster, ControlPlane | None]]:
    with cluster_for_tests() as pair:
        yield pair


@pytest.fixture(scope="module")
def crd_install(env: tuple[Cluster, ControlPlane | None]) -> dict[str, Any]:
    """Install (or update) the generated CRDs; returns what the API server said."""
    installed = install_crds(env[0], generate())
    return {"warnings": {n: i["warning"] for n, i in installed.items()},
            "conditions": {n: i["conditions"] for n, i in installed.items()}}


@pytest.fixture(scope="module")
def cluster(env: tuple[Cluster, ControlPlane | None], crd_install: dict[str, Any]) -> Cluster:
    return env[0]


@pytest.fixture(scope="module")
def namespaces(cluster: Cluster) -> Iterator[Callable[[], str]]:
    """Factory for fresh namespaces (deleted at the end; without a controller-manager they
    stay Terminating, which is harmless for a throwaway control plane)."""
    made: list[str] = []

    def make() -> str:
        name = f"crd-{uuid.uuid4().hex[:10]}"
        cluster.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
                     ).raise_for_status()
        made.append(name)
        return name

    yield make
    for name in made:
        cluster.delete(f"/api/v1/namespaces/{name}")


@pytest.fixture
def namespace(namespaces: Callable[[], str]) -> str:
    return namespaces()


# -- helpers ------------------------------------------------------------------------


def resource_path(namespace: str, kind: str, name: str | None = None) -> str:
    path = f"/apis/{API}/namespaces/{namespace}/{PLURALS[kind]}"
    return f"{path}/{name}" if name else path


def create(cluster: Cluster, namespace: str, doc: dict[str, Any]) -> ApiResponse:
    doc = copy.deepcopy(doc)
    meta = doc.setdefault("metadata", {})
    if isinstance(meta, dict):
        meta["namespace"] = namespace
        for key in SERVER_MANAGED:
            meta.pop(key, None)
    return cluster.post(resource_path(namespace, doc["kind"]) + "?fieldValidation=Strict", doc)


def merge_patch(cluster: Cluster, namespace: str, kind: str, name: str, patch: dict[str, Any],
                subresource: str = "") -> ApiResponse:
    path = resource_path(namespace, kind, name) + (f"/{subresource}" if subresource else "")
    return cluster.request("PATCH", path + "?fieldValidation=Strict", patch,
                           content_type="application/merge-patch+json")


def pydantic_paths(doc: dict[str, Any]) -> set[str]:
    """Field paths of the CLI's errors for one document ({} when it is valid)."""
    model = RESOURCE_MODELS[doc["kind"]]
    try:
        model.model_validate(doc)
    except ValidationError as exc:
        return {_dotted(err["loc"]) for err in exc.errors()}
    return set()


def _dotted(loc: tuple[Any, ...]) -> str:
    parts = [p for p in loc if not (isinstance(p, str) and p.startswith("function-"))]
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def server_paths(response: ApiResponse) -> set[str]:
    """Field paths named by a refusal: causes of a 422, unknown fields of a strict 400."""
    body = response.json or {}
    if response.status == 400:
        return set(re.findall(r'unknown field "([^"]+)"', body.get("message", "")))
    causes = (body.get("details") or {}).get("causes") or []
    # "<nil>" is the API server's note that CEL rules were skipped after schema errors.
    return {c["field"] for c in causes if c.get("field") and c["field"] != "<nil>"}


def documents(path: Path) -> list[dict[str, Any]]:
    """Our resources in a file (a v1 List is unpacked; other kinds are skipped like the CLI does)."""
    found: list[dict[str, Any]] = []
    for doc in yaml.safe_load_all(path.read_text()):
        if not isinstance(doc, dict):
            continue
        if doc.get("kind") == "List" and doc.get("apiVersion") == "v1":
            found += [item for item in doc.get("items", []) if item.get("apiVersion") == API]
        elif doc.get("apiVersion") == API:
            found.append(doc)
    return found


def agree(cluster: Cluster, namespace: str, doc: dict[str, Any], server_field: str | None = None) -> ApiResponse:
    """Send one document to both validators; assert the same verdict and field."""
    expected = pydantic_paths(doc)
    response = create(cluster, namespace, doc)
    what = json.dumps(doc)[:300]
    if not expected:
        assert response.status == 201, f"CLI accepts, API server refuses {what}: {response.text[:800]}"
        return response
    assert response.status in (400, 422), f"CLI refuses {sorted(expected)}, API server accepts {what}"
    got = server_paths(response)
    if server_field is None:
        assert got == expected, f"{what}: CLI names {sorted(expected)}, API server {response.text[:800]}"
    else:
        assert got == {server_field}, response.text[:800]
    return response


def doc(kind: str, name: str = "x", spec: Any = ..., **metadata: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"apiVersion": API, "kind": kind, "metadata": {"name": name, **metadata}}
    if spec is not ...:
        body["spec"] = spec
    return body


def topic(spec: Any = ..., name: str = "x", **metadata: Any) -> dict[str, Any]:
    return doc("Topic", name, spec, **metadata)


def group(spec: Any = ..., name: str = "x", **metadata: Any) -> dict[str, Any]:
    return doc("ConsumerGroup", name, spec, **metadata)


# -- the CRDs themselves ---------------------------------------------------------------


def test_crds_are_established_and_structural(crd_install: dict[str, Any]) -> None:
    for name, conditions in crd_install["conditions"].items():
        assert conditions["Established"]["status"] == "True", name
        assert conditions["NamesAccepted"]["status"] == "True", name
        assert "NonStructuralSchema" not in conditions, conditions["NonStructuralSchema"]
        assert not any(c.get("reason") == "NonStructural" for c in conditions.values()), conditions
    assert crd_install["warnings"] == {crd["metadata"]["name"]: None for crd in generate()}


def test_served_names(cluster: Cluster) -> None:
    resources = cluster.get(f"/apis/{API}").raise_for_status().json["resources"]
    served = {r["name"]: r for r in resources}
    assert served["topics"]["shortNames"] == ["rstopic"]
    assert served["consumergroups"]["shortNames"] == ["rscg"]
    assert served["topics"]["categories"] == ["redistreams"]
    assert served["consumergroups"]["categories"] == ["redistreams"]
    assert served["topics"]["namespaced"] and served["consumergroups"]["namespaced"]
    assert {"topics/status", "consumergroups/status"} <= set(served)


# -- (a) the bad corpus -----------------------------------------------------------------


def test_skip_list_is_current() -> None:
    assert set(SKIPPED) <= {p.name for p in BAD}, "a skipped corpus file no longer exists"


@pytest.mark.parametrize("path", CHECKED, ids=[p.stem for p in CHECKED])
def test_bad_corpus_is_refused_naming_the_same_field(cluster: Cluster, namespace: str, path: Path) -> None:
    expect = path.read_text().splitlines()[0].removeprefix("# expect: ")
    docs = documents(path)
    refused = [d for d in docs if pydantic_paths(d)]
    assert len(refused) == 1, f"{path.name}: expected exactly one invalid document"
    for field in pydantic_paths(refused[0]):
        assert f"{field}:" in expect, f"{path.name}: CLI error on {field} is not the one in '# expect:'"
    for d in docs:  # in file order: a Topic before the group that refers to it
        agree(cluster, namespace, d)


def test_invalid_namespace_is_refused(cluster: Cluster) -> None:
    """namespace-invalid.yaml: "team.a" is not a DNS label, so no such Namespace can exist
    and nothing can be created in it."""
    path = CORPUS / "bad" / "namespace-invalid.yaml"
    (bad,) = documents(path)
    assert pydantic_paths(bad) == {"metadata.namespace"}
    namespace = bad["metadata"]["namespace"]
    response = cluster.post("/api/v1/namespaces",
                            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    assert response.status == 422 and server_paths(response) == {"metadata.name"}, response.text
    response = cluster.post(resource_path(namespace, "Topic") + "?fieldValidation=Strict", bad)
    assert response.status == 404, response.text


# -- (b) the good corpus and the examples --------------------------------------------


GOOD = sorted((CORPUS / "good").glob("*.yaml")) + EXAMPLES


@pytest.mark.parametrize("path", GOOD, ids=[str(p.relative_to(ROOT)) for p in GOOD])
def test_good_manifests_are_accepted_with_the_same_defaults(cluster: Cluster, namespace: str, path: Path) -> None:
    docs = documents(path)
    assert docs
    for d in docs:
        stored = agree(cluster, namespace, d).json
        # The API server's defaults are the model's defaults.
        model = RESOURCE_MODELS[d["kind"]].model_validate(d)
        assert stored["spec"] == model.spec.model_dump(exclude_none=True), path.name
        # What the API server stores reads back through the model unchanged.
        again = RESOURCE_MODELS[d["kind"]].model_validate({k: v for k, v in stored.items() if k != "status"})
        assert again.spec == model.spec


# -- edge cases beyond the corpus ----------------------------------------------------------


LONG_ID = "18446744073709551615-18446744073709551615"
EDGE_CASES: list[tuple[str, dict[str, Any]]] = [
    # accepted by both
    ("empty spec", topic({})),
    ("no spec", topic()),
    ("largest maxLength", topic({"retention": {"maxLength": 2**63 - 1}})),
    ("duration leading zero", topic({"retention": {"maxAge": "01m"}})),
    ("duration all units", topic({"retention": {"maxAge": "1d2h3m4s"}})),
    ("both limits", topic({"retention": {"maxLength": 1, "maxAge": "1s", "allowTrimmingUnconsumed": True}})),
    ("stream 1024 characters, 2048 bytes", topic({"streamName": "α" * 1024})),
    ("stream with newline", topic({"streamName": "a\nb"})),
    ("null optional fields", topic({"streamName": None, "retention": None, "connection": None})),
    ("secretRef key default", topic({"connection": {"secretRef": {"name": "redis.main"}}})),
    ("dotted name", topic(name="orders.eu")),
    ("name 253", topic(name="a" * 253)),
    ("group 256 characters", group({"topicRef": {"name": "t"}, "groupName": "g" * 256})),
    ("start 0-0", group({"topicRef": {"name": "t"}, "startId": "0-0"})),
    ("start largest ID", group({"topicRef": {"name": "t"}, "startId": LONG_ID})),
    # leading zeros mean the same number to Python, CEL's uint() and Redis
    ("start leading zeros", group({"topicRef": {"name": "t"}, "startId": "0001-01"})),
    ("start leading zeros past 20 digits",
     group({"topicRef": {"name": "t"}, "startId": "0" * 19 + "18446744073709551615-0"})),
    ("delete policy", group({"topicRef": {"name": "t"}, "deletionPolicy": "Delete"})),
    # refused by both
    ("maxLength above int64", topic({"retention": {"maxLength": 2**63}})),
    ("maxLength negative", topic({"retention": {"maxLength": -1}})),
    ("maxLength boolean", topic({"retention": {"maxLength": True}})),
    ("duration empty", topic({"retention": {"maxAge": ""}})),
    ("duration zeros", topic({"retention": {"maxAge": "00s"}})),
    ("duration newline", topic({"retention": {"maxAge": "5m\n"}})),
    ("duration units", topic({"retention": {"maxAge": "1w"}})),
    ("duration too long", topic({"retention": {"maxAge": "1" * 32 + "s"}})),
    ("stream 1025", topic({"streamName": "x" * 1025})),
    ("connection empty", topic({"connection": {}})),
    ("secret name", topic({"connection": {"secretRef": {"name": "Redis"}}})),
    ("secret key", topic({"connection": {"secretRef": {"name": "r", "key": "a/b"}}})),
    ("policy list", topic({"deletionPolicy": ["Retain"]})),
    ("name 254", topic(name="a" * 254)),
    ("name underscore", topic(name="a_b")),
    ("two unknown fields", topic({"maxLen": 1, "retention": {"maxLength": 1, "minLength": 2}})),
    ("group empty name", group({"topicRef": {"name": "t"}, "groupName": ""})),
    ("group 257", group({"topicRef": {"name": "t"}, "groupName": "g" * 257})),
    ("group spec empty", group({})),
    ("topicRef uppercase", group({"topicRef": {"name": "T"}})),
    ("topicRef string", group({"topicRef": "t"})),
    ("topicRef null", group({"topicRef": None})),
    ("start 01", group({"topicRef": {"name": "t"}, "startId": "01"})),
    ("group spec null", group(None)),
    # null means absent on both sides (the API server prunes it, then defaults apply)
    ("topic spec null", topic(None)),
    ("deletionPolicy null", topic({"deletionPolicy": None})),
    ("allowTrimmingUnconsumed null", topic({"retention": {"maxLength": 1, "allowTrimmingUnconsumed": None}})),
    ("startId null", group({"topicRef": {"name": "t"}, "startId": None})),
    ("labels null", topic(labels=None)),
    # metadata is validated like the API server does
    ("start ID too long", group({"topicRef": {"name": "t"}, "startId": LONG_ID + "0"})),
    # past 64 bits: the pattern admits them, CEL's uint() refuses them like the CLI
    ("start ms past 64 bits", group({"topicRef": {"name": "t"}, "startId": "99999999999999999999999-0"})),
    ("start seq past 64 bits", group({"topicRef": {"name": "t"}, "startId": "1-18446744073709551616"})),
    ("start ms 2^64", group({"topicRef": {"name": "t"}, "startId": "18446744073709551616-0"})),
    ("label key with a space", topic(labels={"bad key": "x"})),
    ("unknown metadata field", topic(colour="red")),
]


@pytest.mark.parametrize(("label", "document"), EDGE_CASES, ids=[c[0] for c in EDGE_CASES])
def test_edge_cases_agree(cluster: Cluster, namespace: str, label: str, document: dict[str, Any]) -> None:
    agree(cluster, namespace, document)


def test_whole_float_for_an_integer(cluster: Cluster, namespace: str) -> None:
    """maxLength: 10.0 is refused by both. The CLI names the field; the API server's
    OpenAPI check lets a whole float pass as an integer, and the CEL rule on retention
    then fails on its type, so the server names the parent object."""
    agree(cluster, namespace, topic({"retention": {"maxLength": 10.0}}), server_field="spec.retention")


def test_unknown_fields_without_strict_validation_are_dropped(cluster: Cluster, namespace: str) -> None:
    """Why the tests ask for Strict: the default (Warn) prunes unknown fields with a warning."""
    body = topic({"maxLen": 5}, namespace=namespace)
    response = cluster.post(resource_path(namespace, "Topic"), body)
    assert response.status == 201, response.text
    assert "maxLen" not in response.json["spec"]
    assert 'unknown field \\"spec.maxLen\\"' in response.headers.get("Warning", "")


# -- (c) immutability -----------------------------------------------------------------------


def _refused(response: ApiResponse, field: str, message: str) -> None:
    assert response.status == 422, response.text
    assert field in server_paths(response), response.text
    assert message in response.json["message"], response.text


def test_stream_name_is_immutable(cluster: Cluster, namespace: str) -> None:
    create(cluster, namespace, topic({"streamName": "s1"}, name="named")).raise_for_status()
    _refused(merge_patch(cluster, namespace, "Topic", "named", {"spec": {"streamName": "s2"}}),
             "spec.streamName", "streamName is immutable")
    _refused(merge_patch(cluster, namespace, "Topic", "named", {"spec": {"streamName": None}}),
             "spec", "streamName is immutable")


def test_stream_name_cannot_be_added(cluster: Cluster, namespace: str) -> None:
    create(cluster, namespace, topic(name="plain")).raise_for_status()
    _refused(merge_patch(cluster, namespace, "Topic", "plain", {"spec": {"streamName": "plain"}}),
             "spec", "streamName is immutable")


def test_retention_and_policy_can_change(cluster: Cluster, namespace: str) -> None:
    first = create(cluster, namespace, topic({"streamName": "s", "retention": {"maxLength": 10}}, name="t"))
    first.raise_for_status()
    response = merge_patch(cluster, namespace, "Topic", "t", {
        "spec": {"retention": {"maxLength": None, "maxAge": "1h"}, "deletionPolicy": "Delete", "streamName": "s"}
    })
    assert response.status == 200, response.text
    assert response.json["spec"]["retention"] == {"maxAge": "1h", "allowTrimmingUnconsumed": False}
    assert response.json["metadata"]["generation"] == first.json["metadata"]["generation"] + 1
    # Retention can be dropped altogether; a bad retention is still refused on update.
    assert merge_patch(cluster, namespace, "Topic", "t", {"spec": {"retention": None}}).status == 200
    response = merge_patch(cluster, namespace, "Topic", "t", {"spec": {"retention": {"allowTrimmingUnconsumed": True}}})
    _refused(response, "spec.retention", "set maxLength or maxAge")


def test_group_identity_is_immutable(cluster: Cluster, namespace: str) -> None:
    create(cluster, namespace, group({"topicRef": {"name": "orders"}, "groupName": "billing"}, name="g1")
           ).raise_for_status()
    create(cluster, namespace, group({"topicRef": {"name": "orders"}}, name="g2")).raise_for_status()
    _refused(merge_patch(cluster, namespace, "ConsumerGroup", "g1", {"spec": {"groupName": "other"}}),
             "spec.groupName", "groupName is immutable")
    _refused(merge_patch(cluster, namespace, "ConsumerGroup", "g1", {"spec": {"groupName": None}}),
             "spec", "groupName is immutable")
    _refused(merge_patch(cluster, namespace, "ConsumerGroup", "g2", {"spec": {"groupName": "g2"}}),
             "spec", "groupName is immutable")
    _refused(merge_patch(cluster, namespace, "ConsumerGroup", "g2", {"spec": {"topicRef": {"name": "payments"}}}),
             "spec.topicRef", "topicRef is immutable")
    # startId (used only at creation) and deletionPolicy may change.
    response = merge_patch(cluster, namespace, "ConsumerGroup", "g2",
                           {"spec": {"startId": "0", "deletionPolicy": "Delete"}})
    assert response.status == 200, response.text
    assert response.json["spec"] == {"topicRef": {"name": "orders"}, "startId": "0", "deletionPolicy": "Delete"}


# -- (d) initial status and defaults ------------------------------------------------------


def test_new_objects_read_as_not_yet_observed(cluster: Cluster, namespace: str) -> None:
    created = create(cluster, namespace, topic(name="fresh"))
    assert created.status == 201, created.text
    assert created.json["status"] == {"observedGeneration": -1}
    assert created.json["metadata"]["generation"] == 1
    got = cluster.get(resource_path(namespace, "Topic", "fresh")).raise_for_status().json
    assert got["status"] == {"observedGeneration": -1}
    assert got["spec"] == {"deletionPolicy": "Retain"}
    # A status sent with the object is ignored on create (status subresource).
    body = topic(name="with-status")
    body["status"] = {"observedGeneration": 7, "streamName": "x"}
    assert create(cluster, namespace, body).json["status"] == {"observedGeneration": -1}

    created = create(cluster, namespace, group({"topicRef": {"name": "fresh"}}, name="fresh"))
    assert created.status == 201, created.text
    assert created.json["status"] == {"observedGeneration": -1}
    assert created.json["spec"] == {"topicRef": {"name": "fresh"}, "startId": "$", "deletionPolicy": "Retain"}


def test_schema_defaults(cluster: Cluster, namespace: str) -> None:
    response = create(cluster, namespace, topic({
        "retention": {"maxLength": 5}, "connection": {"secretRef": {"name": "redis"}}
    }, name="defaults"))
    assert response.status == 201, response.text
    assert response.json["spec"] == {
        "retention": {"maxLength": 5, "allowTrimmingUnconsumed": False},
        "connection": {"secretRef": {"name": "redis", "key": "url"}},
        "deletionPolicy": "Retain",
    }


def _operator_status(kind: str, generation: int) -> dict[str, Any]:
    """A status as the operator writes it (conditions from its own code)."""
    from redistreams.controller.conditions import Outcome, conditions

    ready = Outcome(True, "StreamReady" if kind == "Topic" else "GroupReady", "all good")
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": conditions(ready, generation, None),
        "streamName": "orders/eu",
        "lastSyncTime": "2026-01-02T03:04:05Z",
    }
    if kind == "Topic":
        status.update(length=5, lastGeneratedId="1700000000000-3", entriesAdded=9, groups=2)
    else:
        status.update(groupName="billing", lag=3, lagExact=True, pending=1, consumers=2,
                      lastDeliveredId="1700000000000-1")
    return status


@pytest.mark.parametrize(("kind", "model"), [("Topic", TopicStatus), ("ConsumerGroup", ConsumerGroupStatus)])
def test_operator_status_is_stored_whole(cluster: Cluster, namespace: str, kind: str, model: type) -> None:
    spec = {} if kind == "Topic" else {"topicRef": {"name": "orders"}}
    create(cluster, namespace, doc(kind, "s", spec)).raise_for_status()
    status = _operator_status(kind, 1)
    response = merge_patch(cluster, namespace, kind, "s", {"status": status}, subresource="status")
    assert response.status == 200, response.text
    assert response.json["status"] == status  # nothing pruned
    assert response.json["metadata"]["generation"] == 1  # status writes do not bump it
    assert model.model_validate(response.json["status"]).model_dump(mode="json", exclude_none=True) == status
    # The condition schema is enforced on the status too.
    bad = copy.deepcopy(status)
    bad["conditions"][0]["status"] = "Yes"
    bad["conditions"][1]["reason"] = "not a reason"
    response = merge_patch(cluster, namespace, kind, "s", {"status": bad}, subresource="status")
    assert response.status == 422, response.text
    assert server_paths(response) == {"status.conditions[0].status", "status.conditions[1].reason"}
    with pytest.raises(ValidationError):
        model.model_validate(bad)


# -- (e) printer columns --------------------------------------------------------------------


def table(cluster: Cluster, path: str) -> dict[str, Any]:
    request = urllib.request.Request(
        cluster.server.rstrip("/") + path,
        headers={
            "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io",
            "Authorization": f"Bearer {cluster.token}",
        },
    )
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=cluster.ssl_context())
    )
    with opener.open(request, timeout=30) as response:
        return json.loads(response.read())


def _columns(tab: dict[str, Any]) -> list[tuple[str, int]]:
    return [(c["name"], c.get("priority", 0)) for c in tab["columnDefinitions"]]


def test_printer_columns(cluster: Cluster, namespace: str) -> None:
    if cluster.token is None:
        pytest.skip("the table request here authenticates with a bearer token")
    create(cluster, namespace, topic({"streamName": "orders/eu"}, name="orders")).raise_for_status()
    create(cluster, namespace, group({"topicRef": {"name": "orders"}}, name="billing")).raise_for_status()
    tab = table(cluster, resource_path(namespace, "Topic"))
    assert tab["kind"] == "Table"
    assert _columns(tab) == [("Name", 0), ("Stream", 0), ("Length", 0), ("Groups", 0), ("Ready", 0),
                             ("Reason", 1), ("Message", 1), ("Age", 0)]
    (row,) = tab["rows"]
    assert row["cells"][:7] == ["orders", None, None, None, None, None, None]  # nothing observed yet

    merge_patch(cluster, namespace, "Topic", "orders", {"status": _operator_status("Topic", 1)},
                subresource="status").raise_for_status()
    merge_patch(cluster, namespace, "ConsumerGroup", "billing", {"status": _operator_status("ConsumerGroup", 1)},
                subresource="status").raise_for_status()
    (row,) = table(cluster, resource_path(namespace, "Topic"))["rows"]
    assert row["cells"][:7] == ["orders", "orders/eu", 5, 2, "True", "StreamReady", "all good"]
    assert re.fullmatch(r"\d+s", row["cells"][7]), row["cells"]

    tab = table(cluster, resource_path(namespace, "ConsumerGroup"))
    assert _columns(tab) == [("Name", 0), ("Topic", 0), ("Group", 0), ("Lag", 0), ("Pending", 0),
                             ("Consumers", 0), ("Ready", 0), ("Reason", 1), ("Message", 1), ("Age", 0)]
    (row,) = tab["rows"]
    assert row["cells"][:9] == ["billing", "orders", "billing", 3, 1, 2, "True", "GroupReady", "all good"]


def test_kubectl_category_and_short_names(env: tuple[Cluster, ControlPlane | None], cluster: Cluster,
                                          namespace: str, tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed")
    cp = env[1]
    kubeconfig = cp.kubeconfig_path if cp is not None else cluster.kubeconfig_path
    create(cluster, namespace, topic(name="orders")).raise_for_status()
    create(cluster, namespace, group({"topicRef": {"name": "orders"}}, name="billing")).raise_for_status()

    def run(*args: str) -> str:
        result = subprocess.run(
            [kubectl, "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path), "-n", namespace, *args],
            capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    listed = run("get", "redistreams", "-o", "name").split()
    assert sorted(listed) == ["consumergroup.redistreams.dev/billing", "topic.redistreams.dev/orders"]
    assert sorted(run("get", "rstopic,rscg", "-o", "name").split()) == listed
    header = run("get", "rscg", "-o", "wide").splitlines()[0].split()
    assert header == ["NAME", "TOPIC", "GROUP", "LAG", "PENDING", "CONSUMERS", "READY", "REASON", "MESSAGE", "AGE"]
