"""A throwaway certificate authority and a redis-server speaking TLS only.

Certificates are made with the ``openssl`` command (Python's ``cryptography`` is not a
dependency): a CA, a server certificate for 127.0.0.1 and localhost, a client
certificate, a second CA that signed none of them (the "wrong CA"), and an expired
client certificate.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import redis

from tests.support.redis_server import RedisServer

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@dataclass(frozen=True)
class Certificates:
    dir: Path

    ca = property(lambda self: self.dir / "ca.crt")
    server_cert = property(lambda self: self.dir / "server.crt")
    server_key = property(lambda self: self.dir / "server.key")
    client_cert = property(lambda self: self.dir / "client.crt")
    client_key = property(lambda self: self.dir / "client.key")
    expired_cert = property(lambda self: self.dir / "expired.crt")
    other_ca = property(lambda self: self.dir / "other-ca.crt")
    misnamed_cert = property(lambda self: self.dir / "misnamed.crt")  # a server certificate for elsewhere.test
    misnamed_key = property(lambda self: self.dir / "misnamed.key")

    @classmethod
    def make(cls, directory: Path | None = None) -> Certificates:
        d = directory or Path(tempfile.mkdtemp(prefix="redistreams-tls-"))
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=redistreams test CA",
                 "-keyout", "ca.key", "-out", "ca.crt", cwd=d)
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=some other CA",
                 "-keyout", "other-ca.key", "-out", "other-ca.crt", cwd=d)
        (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                      "extendedKeyUsage=serverAuth,clientAuth\n")
        (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
        (d / "misnamed.ext").write_text("subjectAltName=DNS:elsewhere.test\nextendedKeyUsage=serverAuth\n")
        for name, subject, ext in (("server", "/CN=localhost", "server.ext"), ("client", "/CN=client", "client.ext"),
                                   ("expired", "/CN=expired client", "client.ext"),
                                   ("misnamed", "/CN=elsewhere.test", "misnamed.ext")):
            _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
                     "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
            # The expired certificate ends a day before it starts (openssl 3.0 has no -not_after).
            dates = ["-days", "-1" if name == "expired" else "2"]
            _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                     "-CAcreateserial", *dates, "-extfile", ext, "-out", f"{name}.crt", cwd=d)
        return cls(d)

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class TLSRedisServer(RedisServer):
    """redis-server on a TLS port only (``--port 0``); ``auth_clients`` is redis'
    ``tls-auth-clients``: ``yes`` (mutual TLS), ``optional`` or ``no``."""

    def __init__(self, certs: Certificates, *extra_args: str, auth_clients: str = "no", misnamed: bool = False,
                 **kwargs: object) -> None:
        super().__init__(*extra_args, **kwargs)  # type: ignore[arg-type]
        self.certs = certs
        self.auth_clients = auth_clients
        self.misnamed = misnamed  # serve the certificate for elsewhere.test

    @property
    def url(self) -> str:
        return self.tls_url()

    def tls_url(self, host: str = "127.0.0.1", *, client_cert: bool | None = None, ca: Path | None = None) -> str:
        """A rediss:// URL trusting ``ca`` (default the fixture's CA), with the client
        certificate when the server asks for one (or ``client_cert``)."""
        options = {"ssl_ca_certs": str(ca or self.certs.ca)}
        if client_cert if client_cert is not None else self.auth_clients == "yes":
            options.update(ssl_certfile=str(self.certs.client_cert), ssl_keyfile=str(self.certs.client_key))
        query = "&".join(f"{k}={quote(v)}" for k, v in options.items())
        return f"rediss://{host}:{self.port}/0?{query}"

    def args(self) -> list[str]:
        args = super().args()
        args[args.index("--port") + 1] = "0"
        return args + [
            "--tls-port", str(self.port),
            "--tls-cert-file", str(self.certs.misnamed_cert if self.misnamed else self.certs.server_cert),
            "--tls-key-file", str(self.certs.misnamed_key if self.misnamed else self.certs.server_key),
            "--tls-ca-cert-file", str(self.certs.ca),
            "--tls-auth-clients", self.auth_clients,
        ]

    def client(self, **kwargs: object) -> redis.Redis:
        options: dict[str, object] = {
            "decode_responses": True, "socket_timeout": 5, "protocol": 2, "password": self.password,
            "ssl": True, "ssl_ca_certs": str(self.certs.ca),
            "ssl_certfile": str(self.certs.client_cert), "ssl_keyfile": str(self.certs.client_key),
        }
        if self.misnamed:
            options["ssl_check_hostname"] = False
        options.update(kwargs)
        return redis.Redis(host="127.0.0.1", port=self.port, **options)  # type: ignore[arg-type]
