"""TLS to Redis (rediss://): the engine, the CLI and the client through a TLS-only
redis-server, mutual TLS, and a clear error for every certificate problem."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from redistreams.connection import RedisTarget
from redistreams.engine import Engine, GroupIntent, Owner, TopicIntent
from redistreams.pubsub import Message
from redistreams.tls import TLSMaterial, with_options
from tests.support.aio import run, send_and_receive
from tests.support.manifests import TOPICS, write
from tests.support.redis_server import RedisServer
from tests.support.tls import Certificates, TLSRedisServer

pytestmark = pytest.mark.integration


def assert_clean(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr


def test_engine_over_mutual_tls(mtls: TLSRedisServer) -> None:
    owner = Owner("c", "ns", "t")
    engine = Engine(RedisTarget(mtls.url).client(), target=RedisTarget(mtls.url).display)
    topic = TopicIntent("topic/t", owner, "tls/engine")
    group = GroupIntent("consumergroup/g", Owner("c", "ns", "g"), owner, "tls/engine", "g")
    assert {r.outcome for r in engine.reconcile([topic], [group])} == {"created"}
    assert {r.outcome for r in engine.reconcile([topic], [group])} == {"unchanged"}
    assert mtls.client().xinfo_groups("tls/engine")[0]["name"] == "g"


def test_cli_apply_and_status_over_mutual_tls(cli, mtls: TLSRedisServer, tmp_path: Path) -> None:
    path = write(tmp_path, TOPICS)
    applied = cli("apply", "-f", path, url=mtls.url)
    assert applied.returncode == 0, applied.stderr
    # The host name is checked against the certificate (SAN localhost and 127.0.0.1).
    again = cli("apply", "-f", path, url=mtls.tls_url("localhost"))
    assert again.returncode == 0, again.stderr
    assert "unchanged" in again.stdout
    status = cli("status", "-f", path, "-o", "json", url=mtls.url)
    assert status.returncode == 0, status.stderr
    assert '"billing"' in status.stdout


@pytest.mark.parametrize("case, expected", [
    ("wrong CA", "the server's certificate is not signed by the CA"),
    # The server's alert or, when it closes first, the closed connection: both name the certificate.
    ("no client certificate", "client certificate"),
    ("expired client certificate", "client certificate"),
    ("plain text to a TLS port", "if the server only accepts TLS, use rediss://"),
])
def test_certificate_problems_are_clear_errors(cli, mtls: TLSRedisServer, certs: Certificates, tmp_path: Path,
                                               case: str, expected: str) -> None:
    url = {
        "wrong CA": mtls.tls_url(ca=certs.other_ca),
        "no client certificate": mtls.tls_url(client_cert=False),
        "expired client certificate": with_options(mtls.url, {"ssl_certfile": str(certs.expired_cert),
                                                              "ssl_keyfile": str(certs.dir / "expired.key")}),
        "plain text to a TLS port": f"redis://127.0.0.1:{mtls.port}/0",
    }[case]
    result = cli("--redis-timeout", "3", "apply", "-f", write(tmp_path, TOPICS), url=url)
    assert result.returncode == 2, result.stderr  # refused before planning: one error, nothing done
    assert_clean(result)
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and expected in line and line.endswith("; nothing was done"), line
    if "client" in case:
        assert ("expired" if case.startswith("expired") else "requires a client certificate") in result.stderr \
            or "(missing, expired, or not issued by a CA it trusts)" in result.stderr
    status = cli("--redis-timeout", "3", "status", url=url)
    assert status.returncode == 2
    assert expected in status.stderr
    assert_clean(status)


def test_the_host_name_is_checked_unless_turned_off(cli, certs: Certificates, tmp_path: Path) -> None:
    """The certificate names elsewhere.test; the URL says 127.0.0.1 (also the SNI name)."""
    server = TLSRedisServer(certs, misnamed=True).start()
    try:
        path = write(tmp_path, TOPICS)
        refused = cli("--redis-timeout", "3", "apply", "-f", path, url=server.url)
        assert refused.returncode == 2  # refused before planning: one error, nothing done
        assert_clean(refused)
        assert "the server's certificate does not name the host in the URL" in refused.stderr, refused.stderr
        unchecked = with_options(server.url, {"ssl_check_hostname": "false"})
        assert cli("apply", "-f", path, url=unchecked).returncode == 0
        # The chain is still verified without the name check.
        untrusted = with_options(server.tls_url(ca=certs.other_ca), {"ssl_check_hostname": "false"})
        result = cli("--redis-timeout", "3", "apply", "-f", path, url=untrusted)
        assert result.returncode == 2 and "not signed by the CA" in result.stderr
    finally:
        server.close()


def test_tls_to_a_plain_text_server_is_a_clear_error(cli, redis_server: RedisServer, certs: Certificates,
                                                     tmp_path: Path) -> None:
    url = f"rediss://127.0.0.1:{redis_server.port}/0?ssl_ca_certs={certs.ca}&socket_connect_timeout=1"
    result = cli("--redis-timeout", "1", "apply", "-f", write(tmp_path, TOPICS), url=url)
    assert result.returncode == 2
    assert_clean(result)
    assert "is the server speaking plain text on this port? (then use redis://)" in result.stderr


def test_material_from_pem_text_is_written_privately(mtls: TLSRedisServer, certs: Certificates) -> None:
    material = TLSMaterial(certs.ca.read_bytes(), certs.client_cert.read_bytes(), certs.client_key.read_bytes())
    assert material.problem() is None
    assert "BEGIN" not in repr(material)
    options = material.url_options()
    assert material.url_options() == options  # written once
    directory = Path(options["ssl_ca_certs"]).parent
    assert directory.stat().st_mode & 0o077 == 0
    assert directory.parent.stat().st_mode & 0o077 == 0
    assert all(Path(p).stat().st_mode & 0o777 == 0o600 for p in options.values())
    client = RedisTarget(with_options(f"rediss://127.0.0.1:{mtls.port}/0", options)).client()
    assert client.ping()
    assert TLSMaterial(cert=b"x").problem() == "tls.crt and tls.key go together: the Secret holds only one of them"
    assert TLSMaterial(ca=b"not pem").problem() == "ca.crt is not a PEM certificate"


def test_pubsub_client_over_mutual_tls(mtls: TLSRedisServer) -> None:
    sent = [Message(b"one", {"k": "v"}), Message(b"two")]
    assert run(lambda: send_and_receive(mtls.url, "tls/pubsub", sent)) == [b"one", b"two"]
    assert mtls.client().xpending("tls/pubsub", "g")["pending"] == 0
