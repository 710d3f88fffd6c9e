"""The operator connecting over TLS with the certificates of the Topic's connection
Secret (ca.crt, tls.crt, tls.key): mutual TLS works, and a certificate problem is a
condition on the resource naming the Secret, never showing what it holds."""

from __future__ import annotations

import base64

import pytest

from tests.support.controlplane import Cluster, wait_for
from tests.support.kube import condition, create, events, get, wait_ready
from tests.support.tls import Certificates, TLSRedisServer

pytestmark = pytest.mark.e2e


def tls_secret(cluster: Cluster, ns: str, name: str, url: str, **files: bytes) -> None:
    data = {"url": url.encode(), **{k.replace("_", "."): v for k, v in files.items()}}
    cluster.post(f"/api/v1/namespaces/{ns}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }).raise_for_status()


def shown(cluster: Cluster, ns: str, kind: str, name: str) -> str:
    body = get(cluster, ns, kind, name)
    return repr(body.get("status")) + repr([e["message"] for e in events(cluster, ns, name)])


def test_topic_and_group_over_mutual_tls_from_the_secret(cluster: Cluster, ns: str, mtls: TLSRedisServer,
                                                         certs: Certificates) -> None:
    tls_secret(cluster, ns, "redis-tls", f"rediss://127.0.0.1:{mtls.port}/0", ca_crt=certs.ca.read_bytes(),
               tls_crt=certs.client_cert.read_bytes(), tls_key=certs.client_key.read_bytes())
    key = f"{ns}/over-tls"
    create(cluster, ns, "Topic", "secure", {"streamName": key, "connection": {"secretRef": {"name": "redis-tls"}}})
    create(cluster, ns, "ConsumerGroup", "readers", {"topicRef": {"name": "secure"}})
    wait_ready(cluster, ns, "Topic", "secure")
    wait_ready(cluster, ns, "ConsumerGroup", "readers")
    assert mtls.client().xinfo_groups(key)[0]["name"] == "readers"
    assert "BEGIN" not in shown(cluster, ns, "Topic", "secure")


@pytest.mark.parametrize("case, reason, words", [
    ("wrong CA", "TLSFailed", "the server's certificate is not signed by the CA"),
    ("no client certificate", "TLSFailed", "client certificate"),
    ("a certificate without its key", "InvalidSpec", "tls.crt and tls.key go together"),
    ("certificates with a plain-text URL", "InvalidSpec", "the URL must start with rediss://"),
])
def test_certificate_problems_are_conditions(cluster: Cluster, ns: str, mtls: TLSRedisServer, certs: Certificates,
                                             case: str, reason: str, words: str) -> None:
    url = f"rediss://127.0.0.1:{mtls.port}/0"
    ca, cert, key = certs.ca.read_bytes(), certs.client_cert.read_bytes(), certs.client_key.read_bytes()
    files = {
        "wrong CA": {"ca_crt": certs.other_ca.read_bytes(), "tls_crt": cert, "tls_key": key},
        "no client certificate": {"ca_crt": ca},
        "a certificate without its key": {"ca_crt": ca, "tls_crt": cert},
        "certificates with a plain-text URL": {"ca_crt": ca, "tls_crt": cert, "tls_key": key},
    }[case]
    if case == "certificates with a plain-text URL":
        url = url.replace("rediss://", "redis://")
    tls_secret(cluster, ns, "redis-tls", url, **files)
    create(cluster, ns, "Topic", "probe", {"streamName": f"{ns}/probe",
                                           "connection": {"secretRef": {"name": "redis-tls"}}})
    body = wait_ready(cluster, ns, "Topic", "probe", status="False", reason=reason, timeout=60)
    message = condition(body)["message"]
    assert f'Secret "{ns}/redis-tls"' in message and words in message, message
    wait_for(lambda: events(cluster, ns, "probe"), "a warning event", 60)
    everything = shown(cluster, ns, "Topic", "probe")
    assert "BEGIN" not in everything and "redistreams-tls-" not in everything, everything
